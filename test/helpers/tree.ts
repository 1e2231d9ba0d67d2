/**
 * A rich source tree for walk/backup/restore tests, and an independent tree comparer.
 *
 * `buildRichTree` makes every entry type vaultik must survive: regular files (0 B, 1 B, text,
 * multi-MiB, sparse), empty and nested directories, sibling names that sort around '/'
 * ("a", "a-b", "a.b", "a0"), symlinks (relative, to a dir, dangling, to '/', loops), hard links
 * across directories, a FIFO, a socket, a character device (root only), names that are not
 * UTF-8 or hold newlines, tabs, quotes, backslashes and non-ASCII text, modes from 0444 to
 * setuid/setgid/sticky, and fixed mtimes (some exact to the nanosecond).
 *
 * `compareTrees` does not use src/fs: it is the oracle the round-trip tests trust, so it walks
 * with plain readdir/lstat and compares content, type, mode, mtime, symlink target, device
 * number, hard-link identity and (optionally) owners.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

export const NON_UTF8_FILE = Buffer.from([0x66, 0xff, 0xfe]); // 'f' + two invalid bytes
export const NON_UTF8_DIR = Buffer.from([0x64, 0xc3, 0x28]); // 'd' + a broken 2-byte sequence
/** Names (under names/) that stress quoting and decoding. */
export const ODD_NAMES = ['with space', 'new\nline', 'tab\there', '日本語', 'émoji-😀', 'back\\slash', '-dash', "'quote", 'x'.repeat(200)];

/** Seconds → a µs-exact timestamp understood by lutimes. */
const BASE_SECONDS = 1_600_000_000;

export interface RichTree {
  root: string;
  /** Relative paths (latin1 keys of the byte path) whose mtime was set to the exact nanosecond. */
  nsMtimes: Map<string, bigint>;
  hasFifo: boolean;
  hasSocket: boolean;
  /** A character device (1,3) exists: only as root, where mknod is allowed. */
  hasDevice: boolean;
  /** Size of big.bin. */
  bigSize: number;
}

/** Deterministic pseudo-random bytes (xorshift32), so contents are reproducible and incompressible. */
export function pseudoRandom(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function p(root: string, ...parts: (string | Buffer)[]): Buffer {
  return Buffer.concat([Buffer.from(root), ...parts.flatMap((part) => [Buffer.from('/'), Buffer.from(part)])]);
}

/**
 * Builds the rich tree in `root` (an existing empty directory).
 * @param options.bigSize size of big.bin (default 3 MiB + 123 bytes).
 */
export async function buildRichTree(root: string, options: { bigSize?: number } = {}): Promise<RichTree> {
  const bigSize = options.bigSize ?? 3 * 1024 * 1024 + 123;
  const w = (rel: string | Buffer, data: string | Buffer, mode = 0o644): void => {
    const path = typeof rel === 'string' ? Buffer.from(join(root, rel)) : rel;
    fs.writeFileSync(path, data);
    fs.chmodSync(path, mode);
  };
  const d = (rel: string | Buffer, mode = 0o755): void => {
    const path = typeof rel === 'string' ? Buffer.from(join(root, rel)) : rel;
    fs.mkdirSync(path);
    fs.chmodSync(path, mode);
  };

  w('empty.txt', '');
  w('one.bin', Buffer.from([0x2a]));
  w('text.txt', 'hello, vaultik\n', 0o600);
  w('big.bin', pseudoRandom(bigSize, 7));
  w('exec.sh', '#!/bin/sh\necho hi\n', 0o755);
  w('setuid', 'suid', 0o4755);
  w('setgid', 'sgid', 0o2755);
  w('readonly.txt', 'ro', 0o444);
  // Sparse: 5 MiB with 4 KiB of data at 1 MiB and holes before, between and after.
  const sparse = fs.openSync(join(root, 'sparse.bin'), 'w');
  fs.writeSync(sparse, pseudoRandom(4096, 3), 0, 4096, 1024 * 1024);
  fs.ftruncateSync(sparse, 5 * 1024 * 1024);
  fs.closeSync(sparse);

  // Siblings whose order differs between naive DFS and memcmp of full paths.
  d('a');
  d('a/b');
  d('a/b/c');
  w('a/b/c/deep.txt', 'deep');
  w('a/x', 'ax');
  d('a-b');
  w('a-b/inner', 'inner');
  w('a.b', 'dot');
  w('a0', 'zero');
  d('empty-dir', 0o700);
  d('sticky', 0o1777);
  d('ro-dir');
  w('ro-dir/inside', 'inside');
  fs.chmodSync(join(root, 'ro-dir'), 0o555);

  d('links');
  fs.symlinkSync('../text.txt', join(root, 'links/rel'));
  fs.symlinkSync('../a', join(root, 'links/dir'));
  fs.symlinkSync('nowhere/at/all', join(root, 'links/dangling'));
  fs.symlinkSync('/', join(root, 'links/root'));
  fs.symlinkSync('loop2', join(root, 'links/loop1'));
  fs.symlinkSync('loop1', join(root, 'links/loop2'));
  fs.symlinkSync('self', join(root, 'links/self'));

  d('hard');
  w('hard/h1', 'shared content\n', 0o640);
  fs.linkSync(join(root, 'hard/h1'), join(root, 'hard/h2'));
  fs.linkSync(join(root, 'hard/h1'), join(root, 'hard-other'));

  d('special');
  const hasFifo = spawnSync('mkfifo', [join(root, 'special/fifo')]).status === 0;
  let hasSocket = false;
  try {
    const tmp = join(root, 'special/sock-tmp');
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(tmp, resolve);
    });
    // Closing the server unlinks its path; a second name keeps the socket inode.
    fs.linkSync(tmp, join(root, 'special/socket'));
    await new Promise<void>((resolve) => server.close(() => resolve()));
    hasSocket = true;
  } catch {
    hasSocket = false;
  }
  const hasDevice = process.getuid?.() === 0 && spawnSync('mknod', [join(root, 'special/null'), 'c', '1', '3']).status === 0;

  d('names');
  w(p(root, 'names', NON_UTF8_FILE), 'not utf-8');
  d(p(root, 'names', NON_UTF8_DIR));
  w(p(root, 'names', NON_UTF8_DIR, 'inside'), 'inside a non-utf-8 dir');
  for (const [i, name] of ODD_NAMES.entries()) w(`names/${name}`, `odd ${i}`);

  // mtimes: every entry gets a distinct µs-exact time, deepest first so directory times stick.
  const all = listTree(root).sort((x, y) => Buffer.compare(y.rel, x.rel));
  let n = 0;
  for (const { abs } of all) {
    n++;
    const t = BASE_SECONDS + n * 1000 + (n % 1000) / 1000 + 0.000321;
    fs.lutimesSync(abs, t, t);
  }
  // A few with nanosecond mtimes (touch takes exact decimal seconds; lutimes cannot).
  const nsMtimes = new Map<string, bigint>();
  for (const [rel, ns] of [
    ['text.txt', 1_234_567_890_123_456_789n],
    ['links/rel', 1_500_000_000_987_654_321n],
    ['empty.txt', 1_700_000_000_000_000_001n],
  ] as const) {
    const sec = ns / 1_000_000_000n;
    const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
    const r = spawnSync('touch', ['-h', '-d', `@${sec}.${frac}`, join(root, rel)]);
    if (r.status !== 0) throw new Error(`touch failed: ${r.stderr.toString()}`);
    nsMtimes.set(Buffer.from(rel).toString('latin1'), ns);
  }
  // Touching files changed their parent's ctime only; the mtimes of their directories still hold.
  return { root, nsMtimes, hasFifo, hasSocket, hasDevice, bigSize };
}

export interface TreeNode {
  /** Path relative to the tree root ('' never appears: the root itself is not listed). */
  rel: Buffer;
  abs: Buffer;
  stat: fs.BigIntStats;
}

/** Every entry under `root` (not the root), with lstat; symlinks are not followed. */
export function listTree(root: string | Buffer): TreeNode[] {
  const out: TreeNode[] = [];
  const rootBuf = Buffer.from(root);
  const visit = (abs: Buffer, rel: Buffer): void => {
    for (const name of fs.readdirSync(abs, { encoding: 'buffer' })) {
      const childAbs = Buffer.concat([abs, Buffer.from('/'), name]);
      const childRel = rel.length === 0 ? name : Buffer.concat([rel, Buffer.from('/'), name]);
      const stat = fs.lstatSync(childAbs, { bigint: true });
      out.push({ rel: childRel, abs: childAbs, stat });
      if (stat.isDirectory()) visit(childAbs, childRel);
    }
  };
  visit(rootBuf, Buffer.alloc(0));
  return out;
}

export type TypeName = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev' | 'other';

function typeOf(st: fs.BigIntStats): TypeName {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'chardev';
  if (st.isBlockDevice()) return 'blockdev';
  return 'other';
}

export interface CompareOptions {
  /** mtime precision: 'us' (default: what restore can set), 'ns', or 'none'. */
  mtime?: 'ns' | 'us' | 'none';
  /** Compare uid/gid too (default false). */
  owners?: boolean;
  /** Leave entries out of the comparison (in both trees), e.g. sockets that restore skips. */
  ignore?: (rel: Buffer, type: TypeName) => boolean;
}

/** A readable form of a byte path for difference reports. */
export function show(rel: Buffer): string {
  const text = rel.toString('utf8');
  return JSON.stringify(Buffer.from(text).equals(rel) ? text : `hex:${rel.toString('hex')}`);
}

function floorDiv(ns: bigint, unit: bigint): bigint {
  const q = ns / unit;
  return ns < 0n && ns % unit !== 0n ? q - 1n : q;
}

function sameContent(a: Buffer, b: Buffer): boolean {
  const fa = fs.openSync(a, 'r');
  const fb = fs.openSync(b, 'r');
  try {
    const ba = Buffer.alloc(1 << 20);
    const bb = Buffer.alloc(1 << 20);
    for (let pos = 0; ; ) {
      const na = fs.readSync(fa, ba, 0, ba.length, pos);
      const nb = fs.readSync(fb, bb, 0, bb.length, pos);
      if (na !== nb || !ba.subarray(0, na).equals(bb.subarray(0, nb))) return false;
      if (na === 0) return true;
      pos += na;
    }
  } finally {
    fs.closeSync(fa);
    fs.closeSync(fb);
  }
}

/**
 * Differences between two trees, one line per difference (empty when equal). The roots
 * themselves are not compared, only what is below them.
 */
export function compareTrees(a: string | Buffer, b: string | Buffer, options: CompareOptions = {}): string[] {
  const precision = options.mtime ?? 'us';
  const keep = (n: TreeNode): boolean => !options.ignore?.(n.rel, typeOf(n.stat));
  const ta = new Map(listTree(a).filter(keep).map((n) => [n.rel.toString('latin1'), n]));
  const tb = new Map(listTree(b).filter(keep).map((n) => [n.rel.toString('latin1'), n]));
  const diffs: string[] = [];
  const inodeGroups = (t: Map<string, TreeNode>): Map<string, string> => {
    const byInode = new Map<string, string[]>();
    for (const [key, n] of t) {
      if (n.stat.isDirectory()) continue;
      const id = `${n.stat.dev}:${n.stat.ino}`;
      byInode.set(id, [...(byInode.get(id) ?? []), key]);
    }
    const groupOf = new Map<string, string>();
    for (const keys of byInode.values()) for (const key of keys) groupOf.set(key, keys.sort().join('\0'));
    return groupOf;
  };
  const ga = inodeGroups(ta);
  const gb = inodeGroups(tb);
  for (const [key, na] of ta) {
    const nb = tb.get(key);
    const where = show(na.rel);
    if (!nb) {
      diffs.push(`${where}: only in ${String(a)}`);
      continue;
    }
    const [sa, sb] = [na.stat, nb.stat];
    const [ya, yb] = [typeOf(sa), typeOf(sb)];
    if (ya !== yb) {
      diffs.push(`${where}: type ${ya} != ${yb}`);
      continue;
    }
    if (ya !== 'symlink' && (sa.mode & 0o7777n) !== (sb.mode & 0o7777n)) {
      diffs.push(`${where}: mode ${(sa.mode & 0o7777n).toString(8)} != ${(sb.mode & 0o7777n).toString(8)}`);
    }
    if (precision !== 'none') {
      const unit = precision === 'ns' ? 1n : 1000n;
      if (floorDiv(sa.mtimeNs, unit) !== floorDiv(sb.mtimeNs, unit)) diffs.push(`${where}: mtime ${sa.mtimeNs} != ${sb.mtimeNs}`);
    }
    if (options.owners && (sa.uid !== sb.uid || sa.gid !== sb.gid)) diffs.push(`${where}: owner ${sa.uid}:${sa.gid} != ${sb.uid}:${sb.gid}`);
    if (ya === 'file') {
      if (sa.size !== sb.size) diffs.push(`${where}: size ${sa.size} != ${sb.size}`);
      else if (!sameContent(na.abs, nb.abs)) diffs.push(`${where}: content differs`);
    }
    if (ya === 'symlink') {
      const [la, lb] = [fs.readlinkSync(na.abs, { encoding: 'buffer' }), fs.readlinkSync(nb.abs, { encoding: 'buffer' })];
      if (!la.equals(lb)) diffs.push(`${where}: symlink target ${show(la)} != ${show(lb)}`);
    }
    if ((ya === 'chardev' || ya === 'blockdev') && sa.rdev !== sb.rdev) diffs.push(`${where}: rdev ${sa.rdev} != ${sb.rdev}`);
    if (ya !== 'dir' && ga.get(key) !== gb.get(key)) diffs.push(`${where}: hard-link group differs`);
  }
  for (const [key, nb] of tb) if (!ta.has(key)) diffs.push(`${show(nb.rel)}: only in ${String(b)}`);
  return diffs;
}

/**
 * A path's mtime in whole microseconds (lstat), what restore promises to set exactly: Node 22's
 * utimes truncates to the microsecond, Node 24's keeps the double's ~240 ns precision, so the
 * sub-microsecond rest of a restored mtime differs between them.
 */
export function mtimeUs(path: string): bigint {
  return floorDiv(fs.lstatSync(path, { bigint: true }).mtimeNs, 1000n);
}
