/**
 * fetch: one small file out of a snapshot whose blob is large downloads only the segments that
 * hold it (counted by the fault proxy in front of s3rver, and of radosgw when installed); where fetched entries land (cp's
 * rule); subtrees, hard links whose content lives under another name, include/exclude, and
 * refusing to replace an existing destination without --overwrite.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { linkSync, mkdirSync, readFileSync, readdirSync, writeFileSync, existsSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { blobKey } from '../../src/blob/index.js';
import { runFetch, snapshotPathArg } from '../../src/restore/index.js';
import { openStorage } from '../../src/storage/index.js';
import type { Storage } from '../../src/storage/types.js';
import { compareTrees, mtimeUs, pseudoRandom } from '../helpers/tree.js';
import { makeTempDir } from '../helpers/tmp.js';
import { s3Servers, type S3Server } from '../helpers/s3servers.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy.js';
import { CountingStorage, makeKey, snapshotTree, type SnapshotTreeResult } from './helpers.js';

const tmp = makeTempDir('vaultik-restore-fetch-');
const key = makeKey();
const src = join(tmp.dir, 'src');
let local: CountingStorage;

beforeAll(async () => {
  mkdirSync(join(src, 'docs', 'deep'), { recursive: true });
  // 24 MiB of incompressible data around the small file, all in one blob.
  writeFileSync(join(src, 'a-big.bin'), pseudoRandom(12 * 1024 * 1024, 1));
  writeFileSync(join(src, 'docs', 'note.txt'), 'the one file we want\n');
  writeFileSync(join(src, 'docs', 'deep', 'x.log'), 'log');
  writeFileSync(join(src, 'docs', 'deep', 'y.txt'), 'y');
  writeFileSync(join(src, 'z-big.bin'), pseudoRandom(12 * 1024 * 1024, 2));
  writeFileSync(join(src, 'h1'), 'linked content');
  linkSync(join(src, 'h1'), join(src, 'docs', 'h2'));
  const t = 1_650_000_000.5;
  for (const p of ['a-big.bin', 'docs/note.txt', 'docs/deep/x.log', 'docs/deep/y.txt', 'z-big.bin', 'h1', 'docs/deep', 'docs', '']) utimesSync(join(src, p), t, t);
  mkdirSync(join(tmp.dir, 'store')); // vaultik never creates the store directory itself
  local = new CountingStorage(openStorage({ type: 'local', path: join(tmp.dir, 'store'), prefix: '' }));
  await snapshotTree(local, src, { recipients: key.recipients, tmp: tmp.dir });
}, 120_000);

afterAll(() => tmp.cleanup());

for (const server of s3Servers()) {
  describe.skipIf(server.missing)(`fetch on S3 (${server.name})${server.label}`, () => {
    let s3: S3Server;
    let proxy: FaultProxy;
    let s3store: Storage;
    let snap: SnapshotTreeResult;
    beforeAll(async () => {
      s3 = await server.start();
      proxy = await startFaultProxy(s3.endpoint);
      s3store = openStorage(s3.spec('fetch/', { endpoint: proxy.endpoint }));
      // One entry per shard: a fetch of one file must read only the shard that holds it.
      snap = await snapshotTree(s3store, src, {
        recipients: key.recipients,
        tmp: tmp.dir,
        chunkSize: 1024 * 1024,
        shardLimits: { boundaryBits: 0, minEntries: 1, maxEntries: 1, maxBytes: 2 ** 40 },
      });
    }, 120_000);
    afterAll(async () => {
      await s3store?.close();
      await proxy?.close();
      await s3?.stop();
    });

    it('one small file from a 24 MiB blob downloads a few segments only (S3, counted by the proxy)', async () => {
      expect(snap.blobs).toHaveLength(1);
      const blobSize = snap.blobs[0]!.size;
      expect(blobSize).toBeGreaterThan(24 * 1024 * 1024);
      proxy.resetStats();
      const out = join(tmp.dir, `one-${server.name}`);
      mkdirSync(out);
      const s = await runFetch({ storage: s3store, identities: key.identities, snapshotId: 'latest', path: snapshotPathArg(join(src, 'docs/note.txt')), target: out });
      expect(s.failed).toBe(0);
      expect(readFileSync(join(out, 'note.txt'), 'utf8')).toBe('the one file we want\n');
      expect(mtimeUs(join(out, 'note.txt'))).toBe(1_650_000_000_500_000n);
      const gets = proxy.requests.filter((r) => r.op === 'GetObject');
      const dataGets = gets.filter((r) => r.key === `fetch/${blobKey(snap.blobs[0]!.hash)}`).length;
      expect(dataGets).toBe(2); // the header, then one range
      // The metadata: the root, then only the shard that holds the file, of one per entry.
      expect(snap.shards.length).toBeGreaterThan(8);
      const shardGets = gets.filter((r) => snap.shards.some((sh) => r.key === `fetch/${blobKey(sh.hash)}`)).length;
      expect(shardGets).toBe(1);
      expect(gets.filter((r) => r.key?.startsWith('fetch/index/') && r.key.endsWith('.db.zst.age'))).toHaveLength(1);
      expect(gets).toHaveLength(dataGets + shardGets + 1);
      // Downloaded from the data blob: ≤ 2 segments and the 4 KiB header read, ≪ the blob; in
      // all, with the root and the shard, still ≪ the blob.
      expect(s.downloaded).toBeLessThan(3 * 65552 + 4096);
      expect(proxy.bytesDownloaded).toBeLessThan(blobSize / 50);
    });
  });
}


describe('fetch', () => {
  it('into a directory by name, or to a file name; never over an existing file without --overwrite', async () => {
    const dir = join(tmp.dir, 'names');
    mkdirSync(dir);
    const path = snapshotPathArg(`${src}/docs/note.txt`);
    const opts = { storage: local, identities: key.identities, snapshotId: 'latest', path };
    await runFetch({ ...opts, target: join(dir, 'renamed.txt') });
    expect(readFileSync(join(dir, 'renamed.txt'), 'utf8')).toBe('the one file we want\n');
    await expect(runFetch({ ...opts, target: join(dir, 'renamed.txt') })).rejects.toThrow(/already exists; use --overwrite/);
    writeFileSync(join(dir, 'renamed.txt'), 'local edit');
    await runFetch({ ...opts, target: join(dir, 'renamed.txt'), overwrite: true });
    expect(readFileSync(join(dir, 'renamed.txt'), 'utf8')).toBe('the one file we want\n');
    // A target ending in '/' is a directory, created if needed.
    await runFetch({ ...opts, target: join(dir, 'newdir') + '/' });
    expect(readFileSync(join(dir, 'newdir', 'note.txt'), 'utf8')).toBe('the one file we want\n');
    // The snapshot-relative spelling of the path works too.
    await runFetch({ ...opts, path: snapshotPathArg(`${src.slice(1)}/docs/note.txt/`), target: join(dir, 'rel.txt') });
    expect(readFileSync(join(dir, 'rel.txt'), 'utf8')).toBe('the one file we want\n');
    await expect(runFetch({ ...opts, path: snapshotPathArg(`${src}/nope`), target: dir })).rejects.toThrow(/is not in snapshot/);
  });

  it('a directory: its subtree, at the target or inside an existing directory', async () => {
    const opts = { storage: local, identities: key.identities, snapshotId: 'latest', path: snapshotPathArg(`${src}/docs`) };
    const at = join(tmp.dir, 'docs-copy');
    const s = await runFetch({ ...opts, target: at });
    expect(s.failed).toBe(0);
    expect(compareTrees(join(src, 'docs'), at, { ignore: (rel) => rel.toString() === 'h2' })).toEqual([]);
    expect(mtimeUs(at)).toBe(1_650_000_000_500_000n);
    // docs/h2 is a hard link whose content is carried by h1, outside the subtree.
    expect(readFileSync(join(at, 'h2'), 'utf8')).toBe('linked content');
    const into = join(tmp.dir, 'into');
    mkdirSync(into);
    await runFetch({ ...opts, target: into });
    expect(readdirSync(into)).toEqual(['docs']);
    expect(compareTrees(join(src, 'docs'), join(into, 'docs'), { ignore: (rel) => rel.toString() === 'h2' })).toEqual([]);
  });

  it('include and exclude patterns select part of a subtree', async () => {
    const opts = { storage: local, identities: key.identities, snapshotId: 'latest', path: snapshotPathArg(src) };
    const a = join(tmp.dir, 'pat-a');
    await runFetch({ ...opts, target: a, exclude: ['*.bin', 'deep/'] });
    expect(readdirSync(a).sort()).toEqual(['docs', 'h1']);
    expect(readdirSync(join(a, 'docs')).sort()).toEqual(['h2', 'note.txt']);
    const b = join(tmp.dir, 'pat-b');
    local.blobBytes = 0;
    await runFetch({ ...opts, target: b, include: ['*.txt'] });
    expect(readdirSync(b)).toEqual(['docs']);
    expect(readdirSync(join(b, 'docs')).sort()).toEqual(['deep', 'note.txt']);
    expect(readdirSync(join(b, 'docs', 'deep'))).toEqual(['y.txt']);
    // Unselected directories above selected files come back with their metadata.
    expect(mtimeUs(join(b, 'docs', 'deep'))).toBe(1_650_000_000_500_000n);
    expect(local.blobBytes).toBeLessThan(1024 * 1024);
    expect(existsSync(join(b, 'a-big.bin'))).toBe(false);
  });
});
