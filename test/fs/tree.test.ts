// The tree builder and comparer are the oracle of every round-trip test: prove that the tree
// really holds what it promises and that the comparer sees each kind of difference.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { makeTempDir } from '../helpers/tmp.js';
import { NON_UTF8_DIR, NON_UTF8_FILE, buildRichTree, compareTrees, listTree, type RichTree } from '../helpers/tree.js';

describe('test tree helpers', () => {
  let tmp: ReturnType<typeof makeTempDir>;
  let tree: RichTree;
  let src: string;

  beforeAll(async () => {
    tmp = makeTempDir();
    src = join(tmp.dir, 'src');
    fs.mkdirSync(src);
    tree = await buildRichTree(src);
  });
  afterAll(() => tmp.cleanup());

  it('builds every entry type, odd names and exact mtimes', () => {
    const types = new Set(listTree(src).map((n) => (n.stat.isFile() ? 'file' : n.stat.isDirectory() ? 'dir' : n.stat.isSymbolicLink() ? 'symlink' : 'special')));
    expect([...types].sort()).toEqual(['dir', 'file', 'special', 'symlink']);
    expect(tree.hasFifo).toBe(true);
    expect(tree.hasSocket).toBe(true);
    expect(fs.existsSync(Buffer.concat([Buffer.from(`${src}/names/`), NON_UTF8_FILE]))).toBe(true);
    expect(fs.existsSync(Buffer.concat([Buffer.from(`${src}/names/`), NON_UTF8_DIR, Buffer.from('/inside')]))).toBe(true);
    expect(fs.lstatSync(join(src, 'text.txt'), { bigint: true }).mtimeNs).toBe(1_234_567_890_123_456_789n);
    expect(fs.statSync(join(src, 'hard/h1')).nlink).toBe(3);
    const sparse = fs.statSync(join(src, 'sparse.bin'));
    expect(sparse.blocks * 512).toBeLessThan(sparse.size / 2);
  });

  it('compares equal to an exact copy, and reports each kind of difference', () => {
    const copy = join(tmp.dir, 'copy');
    execFileSync('cp', ['-a', src, copy]);
    expect(compareTrees(src, copy, { mtime: 'ns', owners: true })).toEqual([]);

    fs.appendFileSync(join(copy, 'one.bin'), 'x'); // size
    fs.writeFileSync(join(copy, 'a/x'), 'AX'); // content, same size
    fs.chmodSync(join(copy, 'exec.sh'), 0o700);
    fs.utimesSync(join(copy, 'a0'), 1, 1);
    fs.unlinkSync(join(copy, 'links/rel'));
    fs.symlinkSync('../other', join(copy, 'links/rel'));
    fs.unlinkSync(join(copy, 'hard/h2'));
    fs.writeFileSync(join(copy, 'hard/h2'), 'shared content\n'); // same bytes, no longer linked
    fs.rmSync(join(copy, 'special/fifo'));
    fs.mkdirSync(join(copy, 'special/fifo')); // type
    fs.writeFileSync(join(copy, 'extra'), '');
    fs.chownSync(join(copy, 'a.b'), 12345, 12345);
    const diffs = compareTrees(src, copy, { mtime: 'ns', owners: true }).join('\n');
    for (const expected of [
      /"one.bin": size/,
      /"a\/x": content differs/,
      /"exec.sh": mode 755 != 700/,
      /"a0": mtime/,
      /"links\/rel": symlink target/,
      /"hard\/h2": hard-link group differs/,
      /"hard\/h1": hard-link group differs/,
      /"special\/fifo": type fifo != dir/,
      /"extra": only in/,
      /"a.b": owner/,
    ]) {
      expect(diffs).toMatch(expected);
    }
    // Touching only the nanoseconds is invisible at µs precision, visible at ns.
    const ns = fs.lstatSync(join(src, 'a.b'), { bigint: true }).mtimeNs;
    execFileSync('touch', ['-d', `@${ns / 1_000_000_000n}.${((ns % 1_000_000_000n) + 1n).toString().padStart(9, '0')}`, join(copy, 'a.b')]);
    expect(compareTrees(src, copy, { mtime: 'us' }).join('\n')).not.toMatch(/"a.b": mtime/);
    expect(compareTrees(src, copy, { mtime: 'ns' }).join('\n')).toMatch(/"a.b": mtime/);
  });
});
