/**
 * Restore against a damaged store or with the wrong key: a wrong key writes nothing (exit 4); a
 * deleted, truncated or corrupted blob fails exactly the files that need it (reported by path,
 * absent from the target) while every other file is restored (exit 5); deleted metadata and
 * unknown ids name the closest ids (exit 2); a full disk stops with a clear error and leaves no
 * partial file.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { runRestore } from '../../src/restore/index.js';
import { openStorage } from '../../src/storage/index.js';
import type { Storage } from '../../src/storage/types.js';
import { compareTrees, pseudoRandom } from '../helpers/tree.js';
import { captureIO } from '../helpers/io.js';
import { makeTempDir } from '../helpers/tmp.js';
import { jsonSummary, makeKey, snapPath, snapshotTree, writeKeyFile, type SnapshotTreeResult } from './helpers.js';
import { localIndexFile } from '../helpers/snapshots.js';

const tmp = makeTempDir('vaultik-restore-faults-');

/** Whether this process can mount a tmpfs (the full-disk test fills one). */
function canMountTmpfs(): boolean {
  const probe = mkdtempSync(join(tmpdir(), 'vaultik-tmpfs-probe-'));
  try {
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe]).status !== 0) return false;
    spawnSync('umount', [probe]);
    return true;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}
const TMPFS = canMountTmpfs();
afterAll(tmp.cleanup);
const key = makeKey();
const keyFile = writeKeyFile(key, join(tmp.dir, 'key.txt'));
const src = join(tmp.dir, 'src');
let n = 0;

beforeAll(() => {
  mkdirSync(join(src, 'd'), { recursive: true });
  // 24 files of 40-120 KiB, incompressible, packed into ~256 KiB blobs: several files per blob.
  for (let i = 0; i < 24; i++) writeFileSync(join(src, i % 2 ? 'd' : '', `f${i}.bin`), pseudoRandom(40_000 + i * 3500, i + 1));
  writeFileSync(join(src, 'empty'), '');
});

interface Fixture {
  dir: string;
  storage: Storage;
  snap: SnapshotTreeResult;
  target: string;
  /** Snapshot paths (latin1) of the files with a chunk in `blob`. */
  usersOf(blob: string): Set<string>;
  blobFile(blob: string): string;
}

async function fixture(): Promise<Fixture> {
  const dir = join(tmp.dir, `case${n++}`);
  mkdirSync(join(dir, 'store'), { recursive: true }); // vaultik never creates the store directory itself.
  const storage = openStorage({ type: 'local', path: join(dir, 'store'), prefix: '' });
  const snap = await snapshotTree(storage, src, { recipients: key.recipients, tmp: tmp.dir, blobSizeLimit: 256 * 1024 });
  return {
    dir,
    storage,
    snap,
    target: join(dir, 'target'),
    usersOf: (blob) => new Set([...snap.chunksOf].filter(([, cs]) => cs.some((c) => c.blob === blob)).map(([p]) => p)),
    blobFile: (blob) => join(dir, 'store', 'blobs', blob.slice(0, 2), blob.slice(2, 4), blob),
  };
}

/** Restores with the CLI (in process) and checks: failures = `expected` paths, the rest intact. */
async function expectPartial(f: Fixture, expected: Set<string>, exact = true): Promise<void> {
  const c = captureIO({ VAULTIK_PRIVATE_KEY: keyFile });
  const code = await main(['restore', `file://${join(f.dir, 'store')}`, '', 'latest', f.target, '--json'], c.io);
  expect(code, c.err()).toBe(ExitCode.DATA);
  const out = jsonSummary(c.out());
  const failed = new Set(out.failures.map((x) => x.path));
  expect(failed.size).toBeGreaterThan(0);
  if (exact) expect([...failed].sort()).toEqual([...expected].sort());
  else for (const p of failed) expect(expected.has(p)).toBe(true);
  // Each failure is reported on stderr by path.
  for (const p of failed) expect(c.err()).toContain(p);
  // Failed files are absent; everything else is identical to the source.
  for (const p of failed) expect(existsSync(join(f.target, p))).toBe(false);
  const rel = (r: Buffer): string => join(snapPath(src).toString(), r.toString());
  expect(compareTrees(src, join(f.target, src), { ignore: (r) => failed.has(rel(r)) })).toEqual([]);
  expect(readdirCount(join(f.target, src))).toBeGreaterThan(10);
}

function readdirCount(dir: string): number {
  return spawnSync('find', [dir, '-type', 'f']).stdout.toString().split('\n').filter(Boolean).length;
}

describe('restore with a damaged store', () => {
  it('a deleted blob fails exactly the files that use it', async () => {
    const f = await fixture();
    const blob = f.snap.blobs[1]!.hash;
    rmSync(f.blobFile(blob));
    await expectPartial(f, f.usersOf(blob));
  });

  it('a flipped byte fails only the chunks of the segment it is in', async () => {
    const f = await fixture();
    const blob = f.snap.blobs[0]!;
    const fd = openSync(f.blobFile(blob.hash), 'r+');
    const at = Math.floor(blob.size / 2);
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0] = b[0]! ^ 0x40;
    writeSync(fd, b, 0, 1, at);
    closeSync(fd);
    // The file(s) with a frame in that 64 KiB segment fail, not every user of the blob.
    const users = f.usersOf(blob.hash);
    await expectPartial(f, users, false);
    const c = captureIO({ VAULTIK_PRIVATE_KEY: keyFile });
    rmSync(f.target, { recursive: true });
    await main(['restore', `file://${join(f.dir, 'store')}`, '', 'latest', f.target, '--json'], c.io);
    const failed = jsonSummary(c.out()).failed;
    expect(failed).toBeLessThan(users.size);
    expect(c.err()).toMatch(/failed authentication/);
  });

  it('a flipped byte in a blob header (stanza type, wrapped key, MAC): exit 5 naming damage, never "not encrypted to this key"', async () => {
    for (const at of [30, 100, 130]) {
      const f = await fixture();
      const blob = f.snap.blobs[0]!;
      const file = f.blobFile(blob.hash);
      const bytes = readFileSync(file);
      if (at === 130) expect(bytes.indexOf('\n---') + 5).toBeLessThan(at); // in the MAC
      bytes[at] = bytes[at]! ^ 0x01;
      writeFileSync(file, bytes);
      const c = captureIO({ VAULTIK_PRIVATE_KEY: keyFile });
      expect(await main(['restore', `file://${join(f.dir, 'store')}`, '', 'latest', f.target], c.io)).toBe(ExitCode.DATA);
      // The metadata opened with this key: a blob it cannot open is damaged (or replaced).
      expect(c.err()).not.toMatch(/not encrypted to this key/);
      // Depending on the byte: malformed (non-canonical base64), the MAC, or no stanza opens.
      expect(c.err()).toMatch(/damaged, or replaced|malformed age header|header MAC mismatch/);
    }
  });

  it('a truncated blob fails the files past the cut; the chunks before it are restored', async () => {
    const f = await fixture();
    const blob = f.snap.blobs[0]!;
    truncateSync(f.blobFile(blob.hash), blob.size - 100_000);
    const users = f.usersOf(blob.hash);
    await expectPartial(f, users, false);
    const c = captureIO({ VAULTIK_PRIVATE_KEY: keyFile });
    rmSync(f.target, { recursive: true });
    await main(['restore', `file://${join(f.dir, 'store')}`, '', 'latest', f.target, '--json'], c.io);
    expect(jsonSummary(c.out()).failed).toBeLessThan(users.size);
  });

  it('a wrong key: "no identity matches this backup", exit 4, nothing written', async () => {
    const f = await fixture();
    const other = makeKey();
    await expect(runRestore({ storage: f.storage, identities: other.identities, snapshotId: 'latest', target: f.target })).rejects.toSatisfy(
      (err: unknown) => err instanceof VaultikError && err.exitCode === ExitCode.NO_IDENTITY && /no identity matches this backup/.test(err.message),
    );
    expect(existsSync(f.target)).toBe(false);
    const c = captureIO({ VAULTIK_PRIVATE_KEY: other.identity });
    expect(await main(['restore', `file://${join(f.dir, 'store')}`, '', 'latest', f.target], c.io)).toBe(ExitCode.NO_IDENTITY);
    expect(c.err()).toContain('no identity matches this backup');
    expect(existsSync(f.target)).toBe(false);
  });

  it('deleted metadata or a mistyped id: the closest ids are named (exit 2)', async () => {
    const f = await fixture();
    const second = await snapshotTree(f.storage, src, { recipients: key.recipients, tmp: tmp.dir });
    rmSync(localIndexFile(join(f.dir, 'store'), second.id));
    const c = captureIO({ VAULTIK_PRIVATE_KEY: keyFile });
    expect(await main(['restore', `file://${join(f.dir, 'store')}`, '', second.id, f.target], c.io)).toBe(ExitCode.USAGE);
    expect(c.err()).toContain(`unknown snapshot '${second.id}'; closest: ${f.snap.id}`);
    const typo = f.snap.id.replace('testhost', 'testhots');
    const c2 = captureIO({ VAULTIK_PRIVATE_KEY: keyFile });
    expect(await main(['restore', `file://${join(f.dir, 'store')}`, '', typo, f.target], c2.io)).toBe(ExitCode.USAGE);
    expect(c2.err()).toContain(`closest: ${f.snap.id}`);
    expect(existsSync(f.target)).toBe(false);
    // `latest` falls back to the newest snapshot that still exists.
    const s = await runRestore({ storage: f.storage, identities: key.identities, snapshotId: 'latest', target: f.target });
    expect(s.snapshotId).toBe(f.snap.id);
  });

  // Needs a tmpfs to fill (root; CI runs as root): skipped visibly otherwise, never passed silently.
  it.skipIf(!TMPFS)(`a full disk: clear error, no partial file left, complete files kept${TMPFS ? '' : ' (skipped: cannot mount a tmpfs, not root)'}`, async () => {
    const f = await fixture();
    const mnt = join(f.dir, 'small');
    mkdirSync(mnt);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
    expect(mounted.status, String(mounted.stderr)).toBe(0);
    try {
      const err = await runRestore({ storage: f.storage, identities: key.identities, snapshotId: 'latest', target: mnt }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(VaultikError);
      expect((err as Error).message).toMatch(/no space left on the restore target .*partly written files were removed/);
      const files = spawnSync('find', [mnt, '-type', 'f']).stdout.toString().split('\n').filter(Boolean);
      for (const file of files) {
        const orig = join(src, file.slice(join(mnt, src).length));
        expect(readFileSync(file).equals(readFileSync(orig)), file).toBe(true);
      }
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});


