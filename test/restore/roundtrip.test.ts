/**
 * Round trips of a rich tree (every entry type, non-UTF-8 names, 0-byte, multi-chunk, sparse and
 * identical files, hard links across directories), backed up by the real `vaultik backup`,
 * through the local store and through S3 (s3rver, and radosgw when installed), compared with
 * the independent tree comparer; --overwrite replacing only what differs; a sparse file larger
 * than 4 GiB.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { closeSync, copyFileSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openStorage } from '../../src/storage/index.js';
import type { Storage } from '../../src/storage/types.js';
import { runRestore, type RestoreEvent } from '../../src/restore/index.js';
import { SnapshotWriter, listSnapshots, makeSnapshotId } from '../../src/snapshot/index.js';
import { BlobWriter, blobKey } from '../../src/blob/index.js';
import { compressFrame } from '../../src/compress/zstd.js';
import { createHash } from 'node:crypto';
import { buildRichTree, compareTrees, pseudoRandom, type RichTree, type TypeName } from '../helpers/tree.js';
import { makeTempDir } from '../helpers/tmp.js';
import { s3Servers } from '../helpers/s3servers.js';
import { cliBackup, makeKey, snapshotTree, type TestKey } from './helpers.js';

const tmp = makeTempDir('vaultik-restore-rt-');
afterAll(tmp.cleanup);
const key: TestKey = makeKey();
let tree: RichTree;
let src: string;

/** Restore skips sockets (like tar) and, when not root, devices. */
const ignore = (_rel: Buffer, type: TypeName): boolean => type === 'socket' || (process.getuid?.() !== 0 && (type === 'chardev' || type === 'blockdev'));

beforeAll(async () => {
  src = join(tmp.dir, 'src');
  mkdirSync(src);
  tree = await buildRichTree(src);
  // Identical files (deduplicated chunks written at several places) and a multi-chunk copy.
  writeFileSync(join(src, 'dup1.bin'), pseudoRandom(200_000, 9));
  writeFileSync(join(src, 'dup2.bin'), pseudoRandom(200_000, 9));
  copyFileSync(join(src, 'big.bin'), join(src, 'a/big-copy.bin'));
  const t = 1_600_000_000.25;
  for (const f of ['dup1.bin', 'dup2.bin', 'a/big-copy.bin']) utimesSync(join(src, f), t, t);
  utimesSync(join(src, 'a'), t, t);
  utimesSync(src, t, t);
});

/** The restored copy of the source dir inside `target`. */
const inTarget = (target: string): string => join(target, src);

/** Backs `src` up with the real `vaultik backup` (small chunks and blobs), restores, compares. */
async function roundTrip(storage: Storage, storeYaml: string, label: string): Promise<void> {
  const work = join(tmp.dir, `work-${label}`);
  mkdirSync(work);
  const b = await cliBackup({ src, storeYaml, recipient: key.recipient, work, chunkSize: '64KiB', blobSizeLimit: '1MiB' });
  expect(b.code, b.stderr).toBe(0);
  const snaps = await listSnapshots(storage, 'index/');
  expect(snaps).toHaveLength(1);
  const target = join(tmp.dir, `restore-${label}`);
  const events: RestoreEvent[] = [];
  const summary = await runRestore({ storage, identities: key.identities, snapshotId: 'latest', target, onEvent: (e) => events.push(e) });
  expect(summary.failed).toBe(0);
  expect(summary.snapshotId).toBe(snaps[0]!.id);
  // Several blobs were read, with merged ranges: far fewer requests than chunks.
  expect(summary.requests).toBeGreaterThan(3);
  expect(compareTrees(src, inTarget(target), { ignore, owners: true })).toEqual([]);
  // The ancestors of the source dir come back too (as the walker recorded them).
  expect(lstatSync(join(target, src.split('/')[1]!)).isDirectory()).toBe(true);
  // Sparse: zero chunks are holes, not writes.
  const sparse = statSync(join(inTarget(target), 'sparse.bin'));
  expect(sparse.blocks * 512).toBeLessThan(1024 * 1024);
  expect(summary.hardLinks).toBe(2);
  expect(events.some((e) => e.type === 'totals')).toBe(true);
  const last = events.filter((e) => e.type === 'progress').pop();
  expect(last?.type === 'progress' && last.progress.bytes).toBe(summary.bytes);
  if (tree.hasSocket) expect(events.some((e) => e.type === 'warning' && e.message.includes('socket'))).toBe(true);
}

describe('restore round trip', () => {
  it('local store: every entry type, byte for byte, with metadata and hard links', async () => {
    const store = join(tmp.dir, 'store');
    mkdirSync(store); // vaultik never creates the store directory itself.
    const storage = openStorage({ type: 'local', path: store, prefix: 'host1/' });
    await roundTrip(storage, `local: {path: ${JSON.stringify(store)}, prefix: host1}`, 'local');
  });

  for (const server of s3Servers()) {
    it.skipIf(server.missing)(`S3 (${server.name}): the same tree${server.label}`, async () => {
      const s3 = await server.start();
      try {
        const storage = openStorage(s3.spec('backups/'));
        await roundTrip(storage, s3.yaml('backups'), server.name);
        await storage.close();
      } finally {
        await s3.stop();
      }
    });
  }

  it('--overwrite replaces only what differs and leaves the rest alone', async () => {
    mkdirSync(join(tmp.dir, 'store-ow'));
    const storage = openStorage({ type: 'local', path: join(tmp.dir, 'store-ow'), prefix: '' });
    await snapshotTree(storage, src, { recipients: key.recipients, tmp: tmp.dir });
    const target = join(tmp.dir, 'restore-ow');
    await runRestore({ storage, identities: key.identities, snapshotId: 'latest', target });
    const root = inTarget(target);
    // Without --overwrite a non-empty target is refused.
    await expect(runRestore({ storage, identities: key.identities, snapshotId: 'latest', target })).rejects.toThrow(/not empty/);
    const inode = (rel: string): number => lstatSync(join(root, rel)).ino;
    const untouched = inode('one.bin');
    writeFileSync(join(root, 'text.txt'), 'changed!'); // content and mtime differ
    rmSync(join(root, 'a/x'));
    rmSync(join(root, 'links/rel'));
    symlinkSync('elsewhere', join(root, 'links/rel'));
    writeFileSync(join(root, 'extra.txt'), 'not in the snapshot');
    const summary = await runRestore({ storage, identities: key.identities, snapshotId: 'latest', target, overwrite: true });
    expect(summary.failed).toBe(0);
    expect(compareTrees(src, root, { ignore: (rel, type) => ignore(rel, type) || rel.toString() === 'extra.txt' })).toEqual([]);
    expect(inode('one.bin')).toBe(untouched);
    expect(readFileSync(join(root, 'extra.txt'), 'utf8')).toBe('not in the snapshot');
    // Rewritten: text.txt, a/x, links/rel, and the hard-link group (files with nlink > 1 are never trusted).
    expect(summary.unchanged).toBeGreaterThan(20);
    expect(summary.files + summary.symlinks).toBeLessThan(10);
  });

  it('a sparse file larger than 4 GiB (positions past 2^32, holes kept)', async () => {
    // Built by hand: one zero chunk repeated (as FastCDC would cut a run of zeros) plus data at the end.
    mkdirSync(join(tmp.dir, 'store-sparse'));
    const storage = openStorage({ type: 'local', path: join(tmp.dir, 'store-sparse'), prefix: '' });
    const zero = Buffer.alloc(4 * 1024 * 1024);
    const tail = pseudoRandom(12345, 5);
    const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
    const bw = new BlobWriter({ recipients: key.recipients });
    const zLoc = bw.addFrame(compressFrame(zero), zero.length);
    const tLoc = bw.addFrame(compressFrame(tail), tail.length);
    const blob = await bw.finish();
    await storage.put(blobKey(blob.hash), blob.body);
    const count = 1100; // 1100 × 4 MiB = 4.3 GiB
    const size = count * zero.length + tail.length;
    const zeroId = sha(zero);
    const dbPath = join(tmp.dir, 'sparse.db');
    const w = new SnapshotWriter(dbPath);
    const t = 1_700_000_000_000_000_000n;
    w.addEntry({ path: Buffer.from('big'), type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: t, size: 0 });
    w.addEntry({ path: Buffer.from('big/huge.img'), type: 'file', mode: 0o600, uid: 0, gid: 0, mtimeNs: t, size }, [
      ...Array.from({ length: count }, () => zeroId),
      sha(tail),
    ]);
    w.addChunk({ id: sha(zero), blob: blob.hash, ...zLoc, plainLength: zero.length });
    w.addChunk({ id: sha(tail), blob: blob.hash, ...tLoc, plainLength: tail.length });
    w.addBlob(blob.hash, blob.size);
    const when = new Date('2026-11-27T05:00:00.000Z');
    const id = makeSnapshotId('sparse', when);
    await w.publish(
      storage,
      { id, startTime: when, endTime: when, toolVersion: 't', sourceDirs: ['/big'], excludes: [], chunkSize: 1 << 20, blobSizeLimit: 1 << 30, compressionLevel: 3 },
      { indexPrefix: 'index/', recipients: key.recipients },
    );
    const target = join(tmp.dir, 'restore-sparse');
    const summary = await runRestore({ storage, identities: key.identities, snapshotId: id, target });
    expect(summary.failed).toBe(0);
    const st = statSync(join(target, 'big/huge.img'));
    expect(st.size).toBe(size);
    expect(st.blocks * 512).toBeLessThan(16 * 1024 * 1024);
    // The data past 4 GiB is right, and a sample of the holes reads as zeros.
    const fd = openSync(join(target, 'big/huge.img'), 'r');
    try {
      const back = Buffer.alloc(tail.length);
      readSync(fd, back, 0, back.length, size - tail.length);
      expect(back.equals(tail)).toBe(true);
      const hole = Buffer.alloc(4096, 1);
      readSync(fd, hole, 0, hole.length, 2 ** 32 + 123);
      expect(hole.every((b) => b === 0)).toBe(true);
    } finally {
      closeSync(fd);
    }
  });
});
