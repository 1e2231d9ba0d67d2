import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { walk, type WalkOptions, type WalkWarning, type WalkedEntry } from '../../src/fs/walk.js';
import { UsageError } from '../../src/errors.js';
import { makeTempDir } from '../helpers/tmp.js';
import { NON_UTF8_DIR, NON_UTF8_FILE, ODD_NAMES, buildRichTree, listTree, type RichTree } from '../helpers/tree.js';

const isRoot = process.getuid?.() === 0;

async function collect(
  dirs: string[],
  options: Partial<WalkOptions> = {},
  onEntry?: (e: WalkedEntry) => void,
): Promise<{ entries: WalkedEntry[]; warnings: WalkWarning[] }> {
  const warnings: WalkWarning[] = [];
  const entries: WalkedEntry[] = [];
  for await (const e of walk(dirs, { onWarning: (w) => warnings.push(w), ...options })) {
    entries.push(e);
    onEntry?.(e);
  }
  return { entries, warnings };
}

/** Snapshot path of an absolute path: without the leading '/'. */
function snap(abs: string | Buffer): Buffer {
  return Buffer.from(abs).subarray(1);
}

/** Paths of the entries at or below `dir`, relative to it ('' for `dir` itself). */
function under(entries: WalkedEntry[], dir: string): string[] {
  const base = snap(dir).toString();
  return entries
    .map((e) => e.entry.path.toString())
    .filter((p) => p === base || p.startsWith(`${base}/`))
    .map((p) => p.slice(base.length));
}

function byPath(entries: WalkedEntry[]): Map<string, WalkedEntry> {
  return new Map(entries.map((e) => [e.entry.path.toString('latin1'), e]));
}

describe('walk', () => {
  let tmp: ReturnType<typeof makeTempDir>;
  let src: string;
  let tree: RichTree;
  let srcSnap: Buffer;

  beforeAll(async () => {
    tmp = makeTempDir();
    src = join(tmp.dir, 'src');
    fs.mkdirSync(src);
    tree = await buildRichTree(src);
    srcSnap = snap(src);
  });
  afterAll(() => tmp.cleanup());

  const rel = (r: string | Buffer): string => Buffer.concat([srcSnap, Buffer.from('/'), Buffer.from(r)]).toString('latin1');

  it('records every entry with the metadata lstat reports, names byte-exact', async () => {
    const { entries, warnings } = await collect([src]);
    expect(warnings).toEqual([]);
    const found = byPath(entries);
    const onDisk = listTree(src);
    // Ancestors (tmp, tmp/vaultik-test-…), the source dir, everything under it.
    expect(entries.length).toBe(srcSnap.toString().split('/').length + onDisk.length);
    for (const node of onDisk) {
      const w = found.get(rel(node.rel));
      expect(w, node.rel.toString()).toBeDefined();
      const { entry, stat } = w!;
      const st = node.stat;
      expect(entry.mode).toBe(Number(st.mode & 0o7777n));
      expect(stat.mode).toBe(Number(st.mode));
      expect(entry.uid).toBe(Number(st.uid));
      expect(entry.gid).toBe(Number(st.gid));
      expect(entry.mtimeNs).toBe(st.mtimeNs);
      expect(stat.ctimeNs).toBe(st.ctimeNs);
      expect(stat.ino).toBe(st.ino);
      expect(stat.dev).toBe(st.dev);
      expect(entry.size).toBe(st.isFile() ? Number(st.size) : 0);
      expect(w!.absPath.equals(node.abs)).toBe(true);
      if (st.isSymbolicLink()) expect(entry.target!.equals(fs.readlinkSync(node.abs, { encoding: 'buffer' }))).toBe(true);
      else expect(entry.target).toBeUndefined();
    }
    const typeOf = (r: string | Buffer): string | undefined => found.get(rel(r))?.entry.type;
    expect(typeOf('big.bin')).toBe('file');
    expect(found.get(rel('big.bin'))!.entry.size).toBe(tree.bigSize);
    expect(typeOf('empty-dir')).toBe('dir');
    expect(typeOf('links/dangling')).toBe('symlink');
    expect(typeOf('special/fifo')).toBe('fifo');
    if (tree.hasSocket) expect(typeOf('special/socket')).toBe('socket');
    if (tree.hasDevice) {
      expect(typeOf('special/null')).toBe('chardev');
      expect(found.get(rel('special/null'))!.entry.rdev).toBe(Number(fs.lstatSync(join(src, 'special/null')).rdev));
    }
    expect(found.get(rel('setuid'))!.entry.mode).toBe(0o4755);
    expect(found.get(rel('sticky'))!.entry.mode).toBe(0o1777);
    // Names that are not UTF-8 (or hold newlines) survive byte for byte.
    expect(typeOf(Buffer.concat([Buffer.from('names/'), NON_UTF8_FILE]))).toBe('file');
    expect(typeOf(Buffer.concat([Buffer.from('names/'), NON_UTF8_DIR, Buffer.from('/inside')]))).toBe('file');
    for (const name of ODD_NAMES) expect(typeOf(`names/${name}`), name).toBe('file');
    for (const [r, ns] of tree.nsMtimes) expect(found.get(rel(Buffer.from(r, 'latin1')))!.entry.mtimeNs).toBe(ns);
  });

  it('yields in memcmp order of snapshot paths, each directory before its contents', async () => {
    const { entries } = await collect([src]);
    for (let i = 1; i < entries.length; i++) {
      expect(Buffer.compare(entries[i - 1]!.entry.path, entries[i]!.entry.path), entries[i]!.entry.path.toString()).toBe(-1);
    }
    const index = (r: string): number => entries.findIndex((e) => e.entry.path.toString('latin1') === rel(r));
    // '-' and '.' sort before '/': "a-b" and its contents and "a.b" come between "a" and "a/b".
    expect(index('a')).toBeLessThan(index('a-b'));
    expect(index('a-b')).toBeLessThan(index('a-b/inner'));
    expect(index('a-b/inner')).toBeLessThan(index('a.b'));
    expect(index('a.b')).toBeLessThan(index('a/b'));
    expect(index('a/x')).toBeLessThan(index('a0'));
    // Ancestors first, as directories, with their own metadata.
    const parts = srcSnap.toString().split('/');
    for (let i = 0; i < parts.length; i++) {
      const e = entries[i]!;
      expect(e.entry.path.toString()).toBe(parts.slice(0, i + 1).join('/'));
      expect(e.entry.type).toBe('dir');
      expect(e.entry.mtimeNs).toBe(fs.statSync(`/${e.entry.path.toString()}`, { bigint: true }).mtimeNs);
    }
  });

  it('never follows symlinks inside a source, but follows a source path given as a symlink', async () => {
    const { entries } = await collect([src]);
    const links = entries.filter((e) => e.entry.path.toString('latin1').startsWith(rel('links/')));
    expect(links.map((e) => e.entry.path.toString().slice(srcSnap.length + 1)).sort()).toEqual(
      ['links/dangling', 'links/dir', 'links/loop1', 'links/loop2', 'links/rel', 'links/root', 'links/self'].sort(),
    );
    expect(links.every((e) => e.entry.type === 'symlink')).toBe(true);

    const alias = join(tmp.dir, 'alias');
    fs.symlinkSync(join(src, 'a'), alias);
    const viaAlias = await collect([alias]);
    const paths = viaAlias.entries.map((e) => e.entry.path.toString());
    expect(viaAlias.entries.find((e) => e.entry.path.toString() === snap(alias).toString())!.entry.type).toBe('dir');
    expect(paths).toContain(`${snap(alias).toString()}/b/c/deep.txt`);
    fs.unlinkSync(alias);
  });

  it('groups hard links; the first path in order carries the content', async () => {
    const { entries } = await collect([src]);
    const linked = entries.filter((e) => e.entry.linkGroup !== undefined);
    expect(linked.map((e) => e.entry.path.toString().slice(srcSnap.length + 1))).toEqual(['hard-other', 'hard/h1', 'hard/h2']);
    expect(new Set(linked.map((e) => e.entry.linkGroup)).size).toBe(1);
    expect(linked[0]!.hardLinkTo).toBeUndefined();
    expect(linked[1]!.hardLinkTo!.equals(linked[0]!.entry.path)).toBe(true);
    expect(linked[2]!.hardLinkTo!.equals(linked[0]!.entry.path)).toBe(true);
  });

  it('shares ancestors between sources, dedupes repeats and rejects nested sources', async () => {
    const { entries } = await collect([join(src, 'hard'), join(src, 'a'), `${join(src, 'a')}/`]);
    const paths = entries.map((e) => e.entry.path.toString());
    expect(new Set(paths).size).toBe(paths.length);
    expect(paths.filter((p) => p === srcSnap.toString())).toHaveLength(1);
    expect(paths).toContain(`${srcSnap.toString()}/a/b/c/deep.txt`);
    expect(paths).toContain(`${srcSnap.toString()}/hard/h2`);
    expect(paths).not.toContain(`${srcSnap.toString()}/hard-other`);
    // h1 and h2 are the links seen here: h1 now carries the content.
    expect(entries.find((e) => e.entry.path.toString().endsWith('hard/h2'))!.hardLinkTo!.toString()).toMatch(/hard\/h1$/);

    await expect(collect([src, join(src, 'a')])).rejects.toThrow(UsageError);
    await expect(collect([join(src, 'a', 'b'), src])).rejects.toThrow(/overlap/);
  });

  it('does not descend into excluded directories and passes source-relative decoded paths', async () => {
    const calls: [string, boolean][] = [];
    const { entries } = await collect([src], {
      exclude: (relPath, isDir) => {
        calls.push([relPath, isDir]);
        return (relPath === 'a' && isDir) || relPath.endsWith('.txt');
      },
    });
    const paths = entries.map((e) => e.entry.path.toString('latin1'));
    expect(paths).not.toContain(rel('a'));
    expect(paths.some((p) => p.startsWith(rel('a/')))).toBe(false);
    expect(paths.some((p) => p.endsWith('.txt'))).toBe(false);
    expect(paths).toContain(rel('a-b/inner'));
    expect(calls.some(([p]) => p.startsWith('a/'))).toBe(false);
    expect(calls).toContainEqual(['a', true]);
    expect(calls).toContainEqual(['links/dir', false]);
    expect(calls).toContainEqual(['a-b/inner', false]);
    expect(calls).toContainEqual([`names/${NON_UTF8_FILE.toString('utf8')}`, false]);
    // Ancestors and the source dir itself are never offered to the predicate.
    expect(calls.some(([p]) => p === '' || p.startsWith('/') || p.includes('src'))).toBe(false);
  });

  it('warns and continues when entries vanish mid-walk or a source is missing', async () => {
    const dir = join(tmp.dir, 'vanish');
    fs.mkdirSync(join(dir, '0dir'), { recursive: true });
    fs.writeFileSync(join(dir, '0dir', 'inside'), '');
    for (let i = 0; i < 200; i++) fs.writeFileSync(join(dir, `f${String(i).padStart(3, '0')}`), '');
    const { entries, warnings } = await collect([dir, join(tmp.dir, 'missing')], {}, (e) => {
      const p = e.entry.path.toString();
      // The walk lists a directory before stat'ing its names (with a bounded lookahead), so
      // these deletions land between readdir and lstat / between a dir's lstat and its readdir.
      if (p.endsWith('/0dir')) fs.rmSync(join(dir, '0dir'), { recursive: true });
      if (p.endsWith('/f000')) fs.unlinkSync(join(dir, 'f199'));
    });
    const names = entries.map((e) => e.entry.path.toString().split('/').pop());
    expect(names).toContain('0dir');
    expect(names).toContain('f198');
    expect(names).not.toContain('f199');
    expect(names).not.toContain('inside');
    // In path order: ".../missing" sorts before ".../vanish".
    expect(warnings.map((w) => [w.op, w.code])).toEqual([
      ['stat', 'ENOENT'],
      ['readdir', 'ENOENT'],
      ['lstat', 'ENOENT'],
    ]);
    expect(warnings[0]!.message).toMatch(/does not exist.*missing/);
    expect(warnings[2]!.message).toMatch(/vanished.*f199/);
  });

  it('yields the same entries through the thread pool as with synchronous calls', async () => {
    const sync = await collect([src]);
    const pooled = await collect([src], { threadPool: true });
    const view = (r: Awaited<ReturnType<typeof collect>>): unknown[] =>
      r.entries.map((e) => [e.entry.path.toString('hex'), e.entry.type, e.entry.target?.toString('hex'), e.entry.linkGroup, e.hardLinkTo?.toString('hex'), e.stat.ino]);
    expect(pooled.entries.length).toBeGreaterThan(20);
    expect(view(pooled)).toEqual(view(sync));
    expect(pooled.warnings).toEqual(sync.warnings);
  });

  it.skipIf(!isRoot)('warns about an unreadable directory (real EACCES, walking as uid nobody) and continues', async () => {
    // Root bypasses permission bits, so the walk runs with the effective uid of 'nobody'; the
    // tree is root-owned and 'locked' is 0700. This is a real EACCES from the kernel.
    const dir = join(tmp.dir, 'perm');
    fs.chmodSync(tmp.dir, 0o755);
    fs.mkdirSync(join(dir, 'locked'), { recursive: true });
    fs.writeFileSync(join(dir, 'locked', 'secret'), 's');
    fs.chmodSync(join(dir, 'locked'), 0o700);
    fs.writeFileSync(join(dir, 'open.txt'), 'o');
    let result: Awaited<ReturnType<typeof collect>>;
    process.seteuid!(65534);
    try {
      result = await collect([dir]);
    } finally {
      process.seteuid!(0);
    }
    const names = result.entries.map((e) => e.entry.path.toString().split('/').pop());
    expect(names).toEqual(expect.arrayContaining(['locked', 'open.txt']));
    expect(names).not.toContain('secret');
    expect(result.warnings).toHaveLength(1);
    expect(result.warnings[0]).toMatchObject({ op: 'readdir', code: 'EACCES' });
    expect(result.warnings[0]!.absPath.toString()).toBe(join(dir, 'locked'));
  });

  it('reports a directory swapped for a symlink after it was classified, instead of descending', async () => {
    const dir = join(tmp.dir, 'swap');
    fs.mkdirSync(join(dir, 'd'), { recursive: true });
    fs.writeFileSync(join(dir, 'd', 'x'), '');
    fs.writeFileSync(join(dir, 'e'), '');
    const { entries, warnings } = await collect([dir], {}, (e) => {
      if (e.entry.path.toString().endsWith('/d')) {
        fs.rmSync(join(dir, 'd'), { recursive: true });
        fs.symlinkSync('/', join(dir, 'd'));
      }
    });
    expect(under(entries, dir)).toEqual(['', '/d', '/e']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.op).toBe('readdir');
  });

  it('walks source "/" with entries relative to the root (no entry for "/" itself)', async () => {
    const seen: Buffer[] = [];
    for await (const e of walk(['/'], { onWarning: () => undefined })) {
      seen.push(e.entry.path);
      if (seen.length === 5) break; // the generator is closed; nothing keeps running
    }
    const top = fs.readdirSync('/', { encoding: 'buffer' }).sort(Buffer.compare)[0]!;
    expect(seen[0]!.equals(top)).toBe(true);
    for (let i = 1; i < seen.length; i++) expect(Buffer.compare(seen[i - 1]!, seen[i]!)).toBe(-1);
    expect(seen.every((p) => p.length > 0 && p[0] !== 0x2f)).toBe(true);
    await expect(collect(['/', src])).rejects.toThrow(/overlap/);
  });

  it('warns about a source path that is a symlink loop (ELOOP) and walks the others', async () => {
    const loop = join(tmp.dir, 'loop-src');
    fs.symlinkSync(loop, loop);
    const { entries, warnings } = await collect([loop, join(src, 'hard')]);
    expect(warnings.map((w) => [w.op, w.code])).toEqual([['stat', 'ELOOP']]);
    expect(under(entries, join(src, 'hard'))).toEqual(['', '/h1', '/h2']);
    fs.unlinkSync(loop);
  });

  it('stops with the abort reason when the signal fires', async () => {
    const controller = new AbortController();
    const run = collect([src], { signal: controller.signal }, () => controller.abort(new Error('stop now')));
    await expect(run).rejects.toThrow('stop now');
  });

  const canMount = isRoot && spawnSync('sh', ['-c', 'd=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs "$d" && umount "$d"; r=$?; rmdir "$d"; exit $r']).status === 0;

  it.skipIf(!canMount)('oneFileSystem records a mount point but does not descend into it (real tmpfs mount)', async () => {
    const dir = join(tmp.dir, 'onefs');
    fs.mkdirSync(join(dir, 'mnt'), { recursive: true });
    fs.writeFileSync(join(dir, 'here'), '');
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', join(dir, 'mnt')]).status).toBe(0);
    try {
      fs.writeFileSync(join(dir, 'mnt', 'elsewhere'), '');
      const names = async (oneFileSystem: boolean): Promise<string[]> =>
        under((await collect([dir], { oneFileSystem })).entries, dir);
      expect(await names(true)).toEqual(['', '/here', '/mnt']);
      expect(await names(false)).toEqual(['', '/here', '/mnt', '/mnt/elsewhere']);
    } finally {
      spawnSync('umount', [join(dir, 'mnt')]);
    }
  });

  it('walks 100,000 files in one directory with memory bounded by the fan-out', async () => {
    const dir = join(tmp.dir, 'wide');
    fs.mkdirSync(dir);
    const count = 100_000;
    // xargs touch is ~8x faster than 100,000 open/close calls from here.
    const made = spawnSync('sh', ['-c', `seq -f 'file-%.0f' 0 ${count - 1} | xargs touch`], { cwd: dir });
    expect(made.status, made.stderr.toString()).toBe(0);
    // Retained memory, not garbage: force a GC at each sample (V8's gc, exposed at runtime).
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const retained = (): number => {
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const started = performance.now();
    const before = retained();
    const rssBefore = process.memoryUsage().rss;
    let peak = 0;
    let n = 0;
    let ordered = true;
    let previous: Buffer = Buffer.alloc(0);
    for await (const e of walk([dir], { onWarning: (w) => expect.fail(w.message) })) {
      // Check order on the fly instead of keeping the entries (that would measure the test).
      ordered &&= Buffer.compare(previous, e.entry.path) < 0;
      previous = e.entry.path;
      if (++n % 10_000 === 0) peak = Math.max(peak, retained() - before);
    }
    const seconds = (performance.now() - started) / 1000;
    const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);
    console.log(`walked ${n} entries in ${seconds.toFixed(1)} s (incl. GC samples); retained +${mib(peak)} MiB, RSS +${mib(process.memoryUsage().rss - rssBefore)} MiB`);
    expect(ordered).toBe(true);
    expect(n).toBe(count + snap(dir).toString().split('/').length);
    // What stays is this directory's sorted name list (~190 bytes per name with Buffer
    // overhead, ~18 MiB here). Keeping the yielded entries would retain several times that.
    expect(peak / 2 ** 20).toBeLessThan(40);
  });
});
