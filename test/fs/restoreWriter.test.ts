import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import type { Entry } from '../../src/snapshot/types.js';
import { UsageError } from '../../src/errors.js';
import { UnsafePathError } from '../../src/fs/paths.js';
import { RestoreError, TargetWriter, type RestoreWarning, type TargetWriterOptions } from '../../src/fs/restoreWriter.js';
import { openSourceFile } from '../../src/fs/sourceFile.js';
import { walk } from '../../src/fs/walk.js';
import { makeTempDir } from '../helpers/tmp.js';
import { buildRichTree, compareTrees, listTree, mtimeUs, pseudoRandom, type RichTree } from '../helpers/tree.js';

const isRoot = process.getuid?.() === 0;
const canMount =
  isRoot && spawnSync('sh', ['-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs "$d" && umount "$d"; r=$?; rmdir "$d"; exit $r']).status === 0;

const b = (s: string): Buffer => Buffer.from(s);

function entry(path: string | Buffer, type: Entry['type'], extra: Partial<Entry> = {}): Entry {
  return { path: Buffer.from(path), type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtimeNs: 1_650_000_000_123_456_000n, size: 0, ...extra };
}

/**
 * A miniature restore: walks `src` and writes every entry through the TargetWriter in the
 * order the real restorer will (dirs, then content, links, special files; finish() last).
 * All-zero reads are declared with writeZeros, so holes stay holes.
 */
async function copyThroughWriter(src: string, target: string, options: TargetWriterOptions = {}): Promise<void> {
  const writer = await TargetWriter.open(target, options);
  for await (const w of walk([src], { onWarning: (warning) => expect.fail(warning.message) })) {
    const { entry: e } = w;
    if (e.type === 'dir') {
      await writer.prepareDir(e.path);
      await writer.applyMetadata(e);
    } else if (e.type === 'file' && w.hardLinkTo) {
      await writer.createHardLink(e.path, w.hardLinkTo);
      await writer.applyMetadata(e);
    } else if (e.type === 'file') {
      const out = await writer.createFile(e.path, e.size);
      const input = await openSourceFile(w.absPath, w.stat, { readSize: 256 * 1024 });
      try {
        let offset = 0;
        for await (const chunk of input.chunks()) {
          if (chunk.equals(Buffer.alloc(chunk.length))) out.writeZeros(offset, chunk.length);
          else await out.write(chunk, offset);
          offset += chunk.length;
        }
        expect((await input.finish()).changed).toBe(false);
      } finally {
        await input.close();
      }
      await out.finish(e);
    } else if (e.type === 'symlink') {
      await writer.createSymlink(e.path, e.target!);
      await writer.applyMetadata(e);
    } else if (await writer.createSpecial(e)) {
      await writer.applyMetadata(e);
    }
  }
  await writer.finish();
}

describe('TargetWriter', () => {
  let tmp: ReturnType<typeof makeTempDir>;
  let n = 0;
  /** A fresh path for a target directory (not created). */
  const fresh = (label = 'target'): string => join(tmp.dir, `${label}-${++n}`);

  beforeAll(() => {
    tmp = makeTempDir();
  });
  afterAll(() => tmp.cleanup());

  describe('round trip of the rich tree', () => {
    let src: string;
    let tree: RichTree;
    let target: string;
    const warnings: RestoreWarning[] = [];

    beforeAll(async () => {
      src = join(tmp.dir, 'src');
      fs.mkdirSync(src);
      tree = await buildRichTree(src);
      if (isRoot) {
        fs.lchownSync(join(src, 'a0'), 1234, 5678);
        fs.lchownSync(join(src, 'links/rel'), 4321, 8765);
        fs.utimesSync(join(src, 'a0'), 1_600_000_000.000123, 1_600_000_000.000123); // chown touched ctime only, but be explicit
      }
      target = fresh();
      await copyThroughWriter(src, target, { onWarning: (w) => warnings.push(w) });
    });

    it('restores content, types, modes, µs mtimes, link targets, hard links and owners', () => {
      const restored = join(target, src);
      const diffs = compareTrees(src, restored, {
        owners: isRoot,
        mtime: 'us',
        // Sockets are reported and skipped (see createSpecial).
        ignore: (_rel, type) => type === 'socket',
      });
      expect(diffs).toEqual([]);
      expect(listTree(restored).length).toBe(listTree(src).length - (tree.hasSocket ? 1 : 0));
      if (tree.hasDevice) expect(fs.lstatSync(join(restored, 'special/null')).isCharacterDevice()).toBe(isRoot);
    });

    it('warns about the socket, which it does not recreate', () => {
      expect(warnings.map((w) => w.message)).toEqual(tree.hasSocket ? [expect.stringMatching(/socket .*special\/socket.* not restored/)] : []);
    });

    it('recreates the source ancestors with their own modes', () => {
      expect(fs.statSync(join(target, 'tmp')).mode & 0o7777).toBe(fs.statSync('/tmp').mode & 0o7777);
    });

    it('keeps holes: the sparse file is restored sparse', () => {
      const st = fs.statSync(join(target, src, 'sparse.bin'));
      expect(st.size).toBe(5 * 1024 * 1024);
      expect(st.blocks * 512).toBeLessThan(st.size / 2);
    });

    it('sets mtimes exact to the microsecond (the nanosecond part is lost)', () => {
      expect(mtimeUs(join(target, src, 'text.txt'))).toBe(1_234_567_890_123_456n);
      expect(mtimeUs(join(target, src, 'links/rel'))).toBe(1_500_000_000_987_654n);
    });
  });

  describe('refuses paths that could leave the target', () => {
    const bad: [string, Buffer][] = [
      ['parent', b('../x')],
      ['absolute', b('/abs')],
      ['parent inside', b('a/../../x')],
      ['dot', b('./x')],
      ['NUL', Buffer.from('a\0b')],
      ['empty', Buffer.alloc(0)],
      ['double slash', b('a//b')],
      ['trailing slash', b('a/')],
      ['just dots', b('..')],
    ];
    let target: string;
    let writer: TargetWriter;
    beforeAll(async () => {
      target = fresh();
      writer = await TargetWriter.open(target);
    });
    afterAll(async () => {
      await writer.close();
    });

    it.each(bad)('%s', async (_label, path) => {
      const ops: [string, () => Promise<unknown>][] = [
        ['prepareDir', () => writer.prepareDir(path)],
        ['createFile', () => writer.createFile(path, 1)],
        ['createSymlink', () => writer.createSymlink(path, b('x'))],
        ['createHardLink', () => writer.createHardLink(path, b('ok'))],
        ['createHardLink source', () => writer.createHardLink(b('ok'), path)],
        ['createSpecial', () => writer.createSpecial(entry(path, 'fifo'))],
        ['applyMetadata', () => writer.applyMetadata(entry(path, 'file'))],
        ['needsWrite', () => writer.needsWrite(entry(path, 'file'))],
      ];
      for (const [op, run] of ops) {
        const err = await run().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err, op).toBeInstanceOf(UnsafePathError);
      }
      expect(fs.readdirSync(target)).toEqual([]);
      expect(fs.existsSync(join(tmp.dir, 'x'))).toBe(false);
      expect(fs.existsSync('/abs')).toBe(false);
    });
  });

  describe('never writes through a symlink', () => {
    let sentinel: string;
    beforeAll(() => {
      sentinel = join(tmp.dir, 'sentinel');
      fs.mkdirSync(sentinel);
      fs.writeFileSync(join(sentinel, 'passwd'), 'original');
    });
    afterEach(() => {
      // Whatever a test did, nothing outside its target may have changed.
      expect(fs.readdirSync(sentinel)).toEqual(['passwd']);
      expect(fs.readFileSync(join(sentinel, 'passwd'), 'utf8')).toBe('original');
      expect(fs.statSync(join(sentinel, 'passwd')).mode & 0o7777).toBe(0o644);
    });

    it('rejects every entry under a restored symlink (snapshot: "a" → sentinel, then "a/passwd")', async () => {
      const target = fresh();
      const writer = await TargetWriter.open(target);
      await writer.createSymlink(b('a'), b(sentinel));
      await writer.createSymlink(b('up'), b('..'));
      for (const [op, run] of [
        ['file', () => writer.createFile(b('a/passwd'), 3)],
        ['new file', () => writer.createFile(b('a/new'), 3)],
        ['dir', () => writer.prepareDir(b('a/sub'))],
        ['symlink', () => writer.createSymlink(b('a/l'), b('x'))],
        ['fifo', () => writer.createSpecial(entry('a/fifo', 'fifo'))],
        ['metadata', () => writer.applyMetadata(entry('a/passwd', 'file', { mode: 0o777 }))],
        ['relative', () => writer.createFile(b('up/escaped'), 3)],
        ['hard link from', () => writer.createHardLink(b('stolen'), b('a/passwd'))],
      ] as const) {
        // A problem of the target (RestoreError, exit 1), not an unsafe snapshot path (exit 5).
        await expect(run(), op).rejects.toThrow(RestoreError);
        await expect(run(), op).rejects.toThrow(/is a symlink; not written through/);
      }
      await writer.finish();
      expect(fs.existsSync(join(tmp.dir, 'escaped'))).toBe(false);
      expect(fs.readdirSync(target).sort()).toEqual(['a', 'up']);
    });

    it('replaces planted symlinks and hard links in overwrite mode instead of following them', async () => {
      const target = fresh();
      fs.mkdirSync(target);
      fs.symlinkSync(sentinel, join(target, 'd')); // planted: directory symlink
      fs.symlinkSync(join(sentinel, 'passwd'), join(target, 'f')); // planted: file symlink
      fs.linkSync(join(sentinel, 'passwd'), join(target, 'h')); // planted: hard link to an outside file
      fs.symlinkSync(sentinel, join(target, 'e'));
      const writer = await TargetWriter.open(target, { overwrite: true });
      expect(await writer.needsWrite(entry('h', 'file', { size: 8 }))).toBe(true); // nlink > 1: never trusted
      await writer.prepareDir(b('d'));
      const inD = await writer.createFile(b('d/passwd'), 5);
      await inD.write(b('inner'), 0);
      await inD.finish(entry('d/passwd', 'file', { size: 5, mode: 0o600 }));
      for (const name of ['f', 'h']) {
        const file = await writer.createFile(b(name), 6);
        await file.write(b('hacked'), 0);
        await file.finish(entry(name, 'file', { size: 6, mode: 0o777 }));
      }
      // No directory entry for "e" in this snapshot: the planted symlink is refused, not replaced.
      await expect(writer.createFile(b('e/passwd'), 1)).rejects.toThrow(/'e' in the target is a symlink/);
      await writer.finish();
      expect(fs.lstatSync(join(target, 'd')).isDirectory()).toBe(true);
      expect(fs.readFileSync(join(target, 'd/passwd'), 'utf8')).toBe('inner');
      expect(fs.lstatSync(join(target, 'f')).isFile()).toBe(true);
      expect(fs.lstatSync(join(target, 'h')).nlink).toBe(1);
      expect(fs.readFileSync(join(target, 'h'), 'utf8')).toBe('hacked');
    });

    it('replacing a directory in overwrite mode removes its tree without descending into symlinks', async () => {
      const target = fresh();
      fs.mkdirSync(join(target, 'x/deeper'), { recursive: true });
      fs.writeFileSync(join(target, 'x/deeper/file'), 'old');
      fs.symlinkSync(sentinel, join(target, 'x/link'));
      fs.symlinkSync(sentinel, join(target, 'x/deeper/link'));
      const writer = await TargetWriter.open(target, { overwrite: true });
      const f = await writer.createFile(b('x'), 3);
      await f.write(b('new'), 0);
      await f.finish(entry('x', 'file', { size: 3 }));
      await writer.finish();
      expect(fs.readFileSync(join(target, 'x'), 'utf8')).toBe('new');
    });

    it('refuses to hard-link to a symlink, and metadata on a path that is now a symlink', async () => {
      const target = fresh();
      const writer = await TargetWriter.open(target);
      await writer.createSymlink(b('s'), b(join(sentinel, 'passwd')));
      await expect(writer.createHardLink(b('l'), b('s'))).rejects.toThrow(/not a regular file/);
      await expect(writer.applyMetadata(entry('s', 'file', { mode: 0o777 }))).rejects.toThrow(RestoreError);
      await writer.finish();
    });
  });

  it('refuses a non-empty target unless overwrite; overwrite replaces only what differs', async () => {
    const target = fresh();
    fs.mkdirSync(target);
    fs.writeFileSync(join(target, 'keep'), 'old');
    await expect(TargetWriter.open(target)).rejects.toThrow(UsageError);
    await expect(TargetWriter.open(target)).rejects.toThrow(/not empty.*--overwrite/);

    const writer = await TargetWriter.open(target, { overwrite: true });
    const meta = entry('keep', 'file', { size: 3, mtimeNs: 1_650_000_000_123_456_789n });
    expect(await writer.needsWrite(meta)).toBe(true); // mtime differs
    const f = await writer.createFile(b('keep'), 3);
    await f.write(b('new'), 0);
    await f.finish(meta);
    expect(await writer.needsWrite(meta)).toBe(false); // same size and µs mtime
    expect(await writer.needsWrite({ ...meta, size: 4 })).toBe(true);
    expect(await writer.needsWrite({ ...meta, mtimeNs: meta.mtimeNs + 1000n })).toBe(true);
    expect(await writer.needsWrite(entry('keep', 'dir'))).toBe(true); // type
    expect(await writer.needsWrite(entry('missing', 'file'))).toBe(true);
    expect(await writer.needsWrite(entry('missing/deeper', 'file'))).toBe(true);
    await writer.createSymlink(b('s'), b('t1'));
    expect(await writer.needsWrite(entry('s', 'symlink', { target: b('t1') }))).toBe(false);
    expect(await writer.needsWrite(entry('s', 'symlink', { target: b('t2') }))).toBe(true);
    await writer.createSymlink(b('s'), b('t2')); // overwrite replaces it
    await writer.prepareDir(b('dir'));
    expect(await writer.needsWrite(entry('dir', 'dir'))).toBe(false);
    await writer.finish();
    expect(fs.readFileSync(join(target, 'keep'), 'utf8')).toBe('new');
    expect(fs.readlinkSync(join(target, 's'))).toBe('t2');

    // Without overwrite, a name created twice is an error, not a silent replacement.
    const strict = await TargetWriter.open(fresh());
    await strict.createSymlink(b('s'), b('t'));
    await expect(strict.createSymlink(b('s'), b('u'))).rejects.toThrow(/EEXIST/);
    await strict.close();
  });

  it('sets directory modes and mtimes after their contents, deepest first', async () => {
    const target = fresh();
    const writer = await TargetWriter.open(target);
    const outer = entry('outer', 'dir', { mode: 0o555, mtimeNs: 1_111_111_111_111_111_000n });
    const inner = entry('outer/inner', 'dir', { mode: 0o500, mtimeNs: 1_222_222_222_222_222_000n });
    await writer.prepareDir(outer.path);
    await writer.applyMetadata(outer);
    await writer.prepareDir(inner.path);
    await writer.applyMetadata(inner);
    // Contents created after the directories' metadata was given would bump their mtimes.
    for (const name of ['outer/f', 'outer/inner/g']) {
      const f = await writer.createFile(b(name), 1);
      await f.write(b('x'), 0);
      await f.finish(entry(name, 'file', { size: 1 }));
    }
    await writer.createSymlink(b('outer/inner/l'), b('f'));
    expect(fs.statSync(join(target, 'outer')).mode & 0o7777).toBe(0o700); // private while restoring
    await writer.finish();
    for (const e of [outer, inner]) {
      const st = fs.lstatSync(join(target, e.path.toString()), { bigint: true });
      expect((st.mtimeNs / 1000n) * 1000n).toBe(e.mtimeNs); // to the µs (see mtimeUs)
      expect(Number(st.mode & 0o7777n)).toBe(e.mode);
    }
  });

  it('reports errors with the path and removes a partial file on abort (write past size)', async () => {
    const writer = await TargetWriter.open(fresh());
    const f = await writer.createFile(b('dir/partial'), 4);
    await f.write(b('ab'), 0);
    const err = await f.write(b('abc'), 2).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RestoreError);
    expect((err as RestoreError).code).toBe('ERANGE');
    expect((err as RestoreError).path.toString()).toBe('dir/partial');
    await f.abort();
    await f.abort();
    expect(fs.readdirSync(join(writer.root, 'dir'))).toEqual([]);
    await writer.close();
  });

  it.skipIf(!canMount)('disk full (real tmpfs of 256 KiB): ENOSPC names the file, abort removes it', async () => {
    const target = fresh('small');
    fs.mkdirSync(target);
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', target]).status).toBe(0);
    try {
      const writer = await TargetWriter.open(target);
      const f = await writer.createFile(b('big.bin'), 2 * 1024 * 1024);
      const err = await f.write(pseudoRandom(2 * 1024 * 1024), 0).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RestoreError);
      expect((err as RestoreError).code).toBe('ENOSPC');
      expect((err as RestoreError).message).toBe("cannot write 'big.bin': ENOSPC: no space left on device");
      await f.abort();
      expect(fs.readdirSync(target)).toEqual([]);
      await writer.close();
    } finally {
      spawnSync('umount', [target]);
    }
  });

  it('recreates FIFOs and (as root) devices; names need not be UTF-8', async () => {
    const target = fresh();
    const warnings: RestoreWarning[] = [];
    const writer = await TargetWriter.open(target, { onWarning: (w) => warnings.push(w) });
    const name = Buffer.from([0x70, 0xff, 0x0a]);
    const fifo = entry(name, 'fifo', { mode: 0o640 });
    expect(await writer.createSpecial(fifo)).toBe(true);
    await writer.applyMetadata(fifo);
    const dev = entry('null', 'chardev', { rdev: Number(fs.statSync('/dev/null').rdev), mode: 0o666 });
    expect(await writer.createSpecial(dev)).toBe(isRoot);
    expect(await writer.createSpecial(entry('sock', 'socket'))).toBe(false);
    await writer.finish();
    const st = fs.lstatSync(Buffer.concat([b(`${target}/`), name]), { bigint: true });
    expect(st.isFIFO()).toBe(true);
    expect(Number(st.mode & 0o7777n)).toBe(0o640);
    expect((st.mtimeNs / 1000n) * 1000n).toBe(fifo.mtimeNs); // to the µs (see mtimeUs)
    if (isRoot) expect(fs.lstatSync(join(target, 'null')).rdev).toBe(fs.statSync('/dev/null').rdev);
    expect(fs.readdirSync(target).filter((n) => n.startsWith('.vaultik-tmp'))).toEqual([]);
    expect(warnings.map((w) => w.path.toString())).toEqual(isRoot ? ['sock'] : ['null', 'sock']);
  });

  it('handles many directories concurrently (descriptor cache eviction under load)', async () => {
    const target = fresh();
    const writer = await TargetWriter.open(target);
    const names = Array.from({ length: 300 }, (_, i) => `d${i % 150}/sub${i % 7}/f${i}`);
    await Promise.all(
      names.map(async (name, i) => {
        const f = await writer.createFile(b(name), 8);
        await f.write(Buffer.from(String(i).padStart(8, '0')), 0);
        await f.finish();
      }),
    );
    await writer.finish();
    for (const [i, name] of names.entries()) expect(fs.readFileSync(join(target, name), 'utf8')).toBe(String(i).padStart(8, '0'));
    // Every cached directory descriptor was closed.
    const open = fs.readdirSync('/proc/self/fd').map((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`);
      } catch {
        return '';
      }
    });
    expect(open.filter((p) => p.startsWith(target))).toEqual([]);
  });

  it('reopens a file created earlier for more writes, then finishes it', async () => {
    const writer = await TargetWriter.open(fresh());
    const first = await writer.createFile(b('f'), 6);
    await first.write(b('abc'), 0);
    await first.close();
    const again = await writer.reopenFile(b('f'), 6);
    await again.write(b('def'), 3);
    await again.finish();
    expect(fs.readFileSync(join(writer.root, 'f'), 'utf8')).toBe('abcdef');
    await writer.createSymlink(b('s'), b('f'));
    await expect(writer.reopenFile(b('s'), 6)).rejects.toThrow(RestoreError);
    await writer.finish();
  });
});
