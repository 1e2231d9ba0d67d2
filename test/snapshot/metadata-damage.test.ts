/**
 * Damaged and hostile metadata objects (issue 16, items 7 and 11), through the real CLI:
 * - a root with a flipped byte anywhere (in a stanza, where age cannot tell it from another
 *   recipient's, in the MAC, in the payload) is "damaged or replaced", exit 5, never "no identity
 *   matches" (exit 4); a root encrypted to another key, intact, is exit 4;
 * - a zstd bomb (a small object that decompresses to far more than the format allows) is refused
 *   as "damaged or forged", exit 5, once its output passes the reader's cap: the temp directory
 *   never holds more than the cap.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundedDecompress, compressFrame } from '../../src/compress/zstd.js';
import { decrypt, encrypt } from '../../src/crypto/index.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { listSnapshots, makeSnapshotId, metadataKey } from '../../src/snapshot/index.js';
import { metadataSizeLimit, openShard } from '../../src/snapshot/open.js';
import { openStorage } from '../../src/storage/index.js';
import { cleanEnv, ensureBuilt, runCli } from '../backup/cli.js';
import { makeTempDir } from '../helpers/tmp.js';
import { makeKey, snapshotTree, writeKeyFile } from '../restore/helpers.js';

const tmp = makeTempDir('vaultik-metadata-damage-');
afterAll(tmp.cleanup);
const key = makeKey();
const keyFile = writeKeyFile(key, join(tmp.dir, 'key.txt'));
const store = join(tmp.dir, 'store');
const url = `file://${store}`;
let rootKey = '';
let rootBytes: Buffer;
let id = '';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** `vaultik ls` of snapshot `id` with the test key; TMPDIR is `tmpDir` when given. */
function ls(snapshot: string, tmpDir?: string): ReturnType<typeof runCli> {
  return runCli(['ls', url, 'pc', snapshot], cleanEnv({ VAULTIK_PRIVATE_KEY: keyFile, ...(tmpDir ? { TMPDIR: tmpDir } : {}) }));
}

/** Puts `bytes` as the root of snapshot `id`, named by their hash, in place of any other. */
function placeRoot(snapshotId: string, bytes: Buffer): string {
  const dir = join(store, 'pc', 'index');
  for (const name of readdirSync(dir)) if (name.startsWith(`${snapshotId}.`) && name.endsWith('.db.zst.age')) execFileSync('rm', [join(dir, name)]);
  const k = metadataKey('index/', snapshotId, sha256(bytes));
  writeFileSync(join(store, 'pc', k), bytes);
  return `pc/${k}`;
}

/** A zstd stream of `size` zero bytes: a few KB (zstd's longest matches cost a few bits). */
function zeros(size: number): Buffer {
  const frames: Buffer[] = [];
  const block = Buffer.alloc(16 * 1024 * 1024);
  for (let n = 0; n < size; n += block.length) frames.push(compressFrame(block.subarray(0, Math.min(block.length, size - n)), 19));
  return Buffer.concat(frames);
}

beforeAll(async () => {
  ensureBuilt();
  const src = join(tmp.dir, 'src');
  mkdirSync(src);
  for (let i = 0; i < 4; i++) writeFileSync(join(src, `f${i}`), `file ${i}\n`);
  mkdirSync(store);
  const storage = openStorage({ type: 'local', path: store, prefix: 'pc/' });
  await snapshotTree(storage, src, { recipients: key.recipients, tmp: tmp.dir, host: 'laptop' });
  const [listing] = await listSnapshots(storage, 'index/');
  id = listing!.id;
  rootKey = `pc/${listing!.root.key}`;
  rootBytes = readFileSync(join(store, rootKey));
  await storage.close();
}, 120_000);

describe('a damaged root is not a wrong key', () => {
  it('the intact root lists', async () => {
    placeRoot(id, rootBytes);
    const r = await ls(id);
    expect(r.code, r.stderr).toBe(0);
  });

  // 30: the stanza type ("X25519"); 40 and 60: the ephemeral share; 100: the wrapped file key;
  // then the MAC line, and the payload.
  it.each([30, 40, 60, 100, -10])('byte %i flipped: exit 5, damaged or replaced, naming the object', async (at) => {
    const bad = Buffer.from(rootBytes);
    const i = at < 0 ? bad.length + at : at;
    bad[i]! ^= 0x01;
    // Still under the original name: the bytes no longer hash to it.
    const k = placeRoot(id, rootBytes);
    writeFileSync(join(store, k), bad);
    const r = await ls(id);
    expect(r.stderr).not.toMatch(/no identity matches/);
    expect(r.stderr).toMatch(/damaged or replaced \(the stored object hashes to [0-9a-f]{64}, not its name\)/);
    expect(r.stderr).toContain(k.slice('pc/'.length));
    expect(r.code, r.stderr).toBe(ExitCode.DATA);
  });

  it('a byte of the header MAC flipped: the stanza unwraps, the MAC fails: exit 5', async () => {
    const bad = Buffer.from(rootBytes);
    const macLine = bad.indexOf('\n---') + 6; // inside the MAC's base64
    bad[macLine] = bad[macLine] === 0x41 ? 0x42 : 0x41;
    const k = placeRoot(id, rootBytes);
    writeFileSync(join(store, k), bad);
    const r = await ls(id);
    expect(r.stderr).not.toMatch(/no identity matches/);
    expect(r.code, r.stderr).toBe(ExitCode.DATA);
  });

  it('a root encrypted to another key, intact and named by its hash: exit 4, no identity matches', async () => {
    const other = makeKey();
    const reencrypted = encrypt(decrypt(rootBytes, key.identities), other.recipients);
    placeRoot(id, reencrypted);
    const r = await ls(id);
    expect(r.stderr).toMatch(/no identity matches this backup/);
    expect(r.code, r.stderr).toBe(ExitCode.NO_IDENTITY);
    placeRoot(id, rootBytes);
  });
});

describe('a metadata zstd bomb', () => {
  it('decompression stops once the output passes the cap, one buffer past it at most', async () => {
    const bomb = zeros(64 * 1024 * 1024);
    let produced = 0;
    const run = async (): Promise<void> => {
      for await (const b of boundedDecompress(1024 * 1024, () => new VaultikError('too large', ExitCode.DATA))((async function* () { yield bomb; })())) produced += b.length;
    };
    await expect(run()).rejects.toThrow('too large');
    expect(produced).toBeLessThanOrEqual(1024 * 1024);
  });

  it('a root that expands 30,000 times: exit 5 "damaged or forged", naming it; TMPDIR never holds more than the cap', async () => {
    const size = 512 * 1024 * 1024;
    const bomb = encrypt(zeros(size), key.recipients);
    const bombId = makeSnapshotId('laptop', new Date(Date.now() - 1000));
    const k = placeRoot(bombId, bomb);
    const cap = metadataSizeLimit(bomb.length);
    expect(cap).toBeLessThan(size / 8);
    const t = join(tmp.dir, 'tmpdir');
    mkdirSync(t);
    // Watch the temp directory's size while ls runs.
    let peak = 0;
    const du = (dir: string): number => readdirSync(dir, { withFileTypes: true, recursive: true }).reduce((n, d) => (d.isFile() ? n + statSync(join(d.parentPath, d.name), { throwIfNoEntry: false })!.size : n), 0);
    const timer = setInterval(() => {
      try {
        peak = Math.max(peak, du(t));
      } catch {
        // a file vanished between readdir and stat
      }
    }, 5);
    const r = await ls(bombId, t);
    clearInterval(timer);
    execFileSync('rm', [join(store, k)]);
    console.log(`[bomb] ${bomb.length} stored bytes of ${size}: cap ${cap}, TMPDIR peak seen ${peak}; exit ${r.code}`);
    expect(r.stderr).toMatch(/damaged or forged: it decompresses to more than \d+ bytes, more than the format allows/);
    expect(r.stderr).toContain(k.slice('pc/'.length));
    expect(r.code, r.stderr).toBe(ExitCode.DATA);
    expect(peak).toBeLessThanOrEqual(cap);
  }, 60_000);

  it('a shard bomb: refused at the cap its root listing allows (entries and stored size)', async () => {
    const bomb = encrypt(zeros(256 * 1024 * 1024), key.recipients);
    const hash = sha256(bomb);
    const storage = openStorage({ type: 'local', path: store, prefix: 'pc/' });
    await storage.put(`blobs/${hash.slice(0, 2)}/${hash.slice(2, 4)}/${hash}`, bomb);
    const work = join(tmp.dir, 'shard-work');
    mkdirSync(work);
    const ref = { firstPath: Buffer.from('a'), lastPath: Buffer.from('a'), hash, size: bomb.length, entryCount: 1, fileCount: 1, dirCount: 0, symlinkCount: 0, otherCount: 0 };
    await expect(openShard(storage, ref, key.identities, work)).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(new RegExp(`shard ${hash}: blobs/.*${hash} is damaged or forged: it decompresses to more than ${metadataSizeLimit(bomb.length, 1)} bytes`)) as unknown,
    });
    expect(readdirSync(work)).toEqual([]);
    await storage.close();
  });
});
