/**
 * The engine's file table on its own (with a real TargetWriter): files written piecewise in any
 * order with fewer descriptors than files, finished exactly when their last byte arrives, failed
 * files removed and their later chunks dropped, disk full rethrown; and an interrupted restore
 * that removes its partial files and completes when run again with overwrite.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TargetWriter, RestoreError } from '../../src/fs/restoreWriter.js';
import type { Entry } from '../../src/snapshot/types.js';
import { FileTable, isAllZero, isFatalWriteError } from '../../src/restore/files.js';
import { runRestore } from '../../src/restore/index.js';
import { openStorage } from '../../src/storage/index.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { compareTrees, mtimeUs, pseudoRandom } from '../helpers/tree.js';
import { makeTempDir } from '../helpers/tmp.js';
import { makeKey, snapshotTree } from './helpers.js';

const tmp = makeTempDir('vaultik-restore-files-');
afterAll(tmp.cleanup);
let n = 0;

function fileEntry(name: string, size: number): Entry {
  return { path: Buffer.from(name), type: 'file', mode: 0o640, uid: 0, gid: 0, mtimeNs: 1_600_000_000_123_456_000n, size };
}

async function table(entries: Entry[], extra: { maxOpen?: number } = {}) {
  const target = join(tmp.dir, `t${n++}`);
  const writer = await TargetWriter.open(target);
  const done: string[] = [];
  const failed: string[] = [];
  const byPath = new Map(entries.map((e) => [e.path.toString(), e]));
  const t = new FileTable({
    writer,
    lookup: (p) => byPath.get(p.toString()),
    skipUnchanged: false,
    maxOpen: extra.maxOpen,
    onDone: (e) => done.push(e.path.toString()),
    onBytes: () => undefined,
    onFailed: (p, m) => failed.push(`${p.toString()}: ${m}`),
  });
  return { t, writer, target, done, failed };
}

describe('FileTable', () => {
  it('writes files piecewise, interleaved, with one descriptor for five files', async () => {
    const contents = Array.from({ length: 5 }, (_, i) => pseudoRandom(10_000 + i, i + 1));
    const entries = contents.map((c, i) => fileEntry(`f${i}`, c.length));
    const { t, writer, target, done } = await table(entries, { maxOpen: 1 });
    // Pieces of 1000 bytes, round-robin over the files, last pieces first for some.
    const pieces: [number, number][] = [];
    for (let off = 0; off < 11_000; off += 1000) for (let i = 0; i < 5; i++) if (off < contents[i]!.length) pieces.push([i, off]);
    pieces.reverse();
    await Promise.all(pieces.map(([i, off]) => t.write(Buffer.from(`f${i}`), off, contents[i]!.subarray(off, off + 1000))));
    expect(done.sort()).toEqual(['f0', 'f1', 'f2', 'f3', 'f4']);
    expect(t.pending).toBe(0);
    await writer.finish();
    for (let i = 0; i < 5; i++) {
      expect(readFileSync(join(target, `f${i}`)).equals(contents[i]!)).toBe(true);
      const st = statSync(join(target, `f${i}`));
      expect(st.mode & 0o7777).toBe(0o640);
      expect(mtimeUs(join(target, `f${i}`))).toBe(1_600_000_000_123_456n);
    }
  });

  it('a failed file is removed, reported once, and its later chunks are dropped', async () => {
    const { t, writer, target, failed } = await table([fileEntry('a', 3000), fileEntry('b', 10)]);
    await t.write(Buffer.from('a'), 0, Buffer.alloc(1000, 1));
    expect(existsSync(join(target, 'a'))).toBe(true);
    await t.fail(Buffer.from('a'), 'blob missing');
    await t.fail(Buffer.from('a'), 'again');
    await t.write(Buffer.from('a'), 1000, Buffer.alloc(1000, 1));
    expect(existsSync(join(target, 'a'))).toBe(false);
    // A chunk list longer than the file is refused, not written past the size.
    await t.write(Buffer.from('b'), 0, Buffer.alloc(11, 1));
    expect(failed).toEqual(['a: blob missing', 'b: chunks overlap or exceed the file size 10']);
    await t.failIncomplete();
    await writer.finish();
    expect(readdirSync(target)).toEqual([]);
  });

  it('a large zero chunk becomes a hole; disk full is fatal', async () => {
    const { t, writer, target } = await table([fileEntry('z', 1 << 20)]);
    const zero = Buffer.alloc(1 << 20);
    expect(isAllZero(zero)).toBe(true);
    expect(isAllZero(Buffer.from([0, 1, 0]))).toBe(false);
    await t.write(Buffer.from('z'), 0, zero, true);
    await writer.finish();
    const st = statSync(join(target, 'z'));
    expect(st.size).toBe(1 << 20);
    expect(st.blocks).toBe(0);
    expect(isFatalWriteError(new RestoreError(Buffer.from('x'), 'ENOSPC', 'no space'))).toBe(true);
    expect(isFatalWriteError(new RestoreError(Buffer.from('x'), 'EACCES', 'denied'))).toBe(false);
  });
});

describe('interrupted restore', () => {
  it('stops on the signal, removes partial files, and a rerun with overwrite completes', async () => {
    const key = makeKey();
    const src = join(tmp.dir, 'src');
    mkdirSync(src);
    for (let i = 0; i < 30; i++) writeFileSync(join(src, `f${i}`), pseudoRandom(100_000, i + 1));
    mkdirSync(join(tmp.dir, 'store'), { recursive: true }); // vaultik never creates the store directory itself.
    const storage = openStorage({ type: 'local', path: join(tmp.dir, 'store'), prefix: '' });
    await snapshotTree(storage, src, { recipients: key.recipients, tmp: tmp.dir, blobSizeLimit: 400_000 });
    const target = join(tmp.dir, 'interrupted');
    const controller = new AbortController();
    let ranges = 0;
    const err = await runRestore({
      storage,
      identities: key.identities,
      snapshotId: 'latest',
      target,
      signal: controller.signal,
      concurrency: 1,
      plan: { maxRangeSize: 64 * 1024 },
      onEvent: (e) => {
        if (e.type === 'progress' && e.progress.bytes > 0 && ++ranges === 1) controller.abort(new VaultikError('interrupted by SIGINT', ExitCode.INTERRUPTED));
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VaultikError);
    expect((err as VaultikError).exitCode).toBe(ExitCode.INTERRUPTED);
    // What is there is complete; nothing partial.
    const left = readdirSync(join(target, src));
    expect(left.length).toBeLessThan(30);
    for (const name of left) expect(readFileSync(join(target, src, name)).equals(readFileSync(join(src, name)))).toBe(true);
    const s = await runRestore({ storage, identities: key.identities, snapshotId: 'latest', target, overwrite: true });
    expect(s.failed).toBe(0);
    expect(compareTrees(src, join(target, src))).toEqual([]);
  });
});
