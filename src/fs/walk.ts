/**
 * The source walker: turns the configured source directories into a stream of snapshot entries.
 *
 * Contract (what backup, the snapshot writer and the restorer may rely on):
 *
 * - **Order.** Entries are yielded in ascending byte order of their snapshot path, exactly as
 *   SQLite orders a BLOB column (memcmp, shorter prefix first) and as `Buffer.compare` does.
 *   So "first in path order" means the same thing to the walker, the snapshot DB and the
 *   restorer (it decides which path of a hard-link group carries the content). This is *not* a
 *   naive depth-first order: because '-' (0x2d) and '.' (0x2e) sort before '/' (0x2f), the
 *   siblings "a-b" and "a.b" — and their whole subtrees — come after "a" but before "a/x". The
 *   walker achieves this without collecting the tree: within one directory, names are sorted by
 *   bytes and a subdirectory's contents are emitted at the position of "name/" (see
 *   `inPathOrder`). A directory is always yielded before anything inside it.
 * - **Paths.** Entry paths follow src/snapshot/types.ts: the source's absolute path without its
 *   leading '/', then '/'-separated raw name bytes. Names are never decoded except for the
 *   exclude predicate (lossy UTF-8, `buffer.toString('utf8')`).
 * - **Ancestors.** The parent directories of each source dir are yielded too (source
 *   "/home/u/data" → "home", "home/u", then "home/u/data" and its contents), like restic, so a
 *   restore can recreate them with their owner, mode and mtime. Ancestors shared by several
 *   sources are yielded once. Source "/" itself has no entry (the snapshot root has no path).
 * - **Symlinks.** The source dir paths given by the user are resolved like a shell would (a
 *   source that is a symlink to a directory is walked, and recorded as a directory under the
 *   given path; so are its ancestors). Nothing inside a source is ever followed: symlinks are
 *   entries with their target bytes. A directory is read through a descriptor opened with
 *   O_NOFOLLOW and checked against the lstat that classified it, so a directory swapped for a
 *   symlink mid-walk is reported, not descended into. (Residual race, as in restic and borg:
 *   children are lstat'ed by path, so a parent swapped between readdir and a child's lstat can
 *   make that lstat resolve through the swap; `openSourceFile`'s identity check cannot catch it
 *   because it compares with that same lstat.)
 * - **Mounts.** A directory where a pseudo file system (proc, sysfs, devtmpfs, cgroup, …) is
 *   mounted below a source dir is yielded but not descended into; with `oneFileSystem`, no
 *   directory on another device than its source dir is (src/fs/mounts.ts). A source dir is
 *   always walked, whatever it lies on.
 * - **Special files.** FIFOs, sockets and devices are recorded (mode, owner, rdev) and never
 *   opened.
 * - **Hard links.** Regular files with nlink > 1 get `entry.linkGroup` (same (dev, ino) → same
 *   group, numbered from 1 in walk order). The first path yielded carries the content; later
 *   ones have `hardLinkTo` set to the first one's path. Only regular files are grouped.
 * - **Errors.** Nothing about a single entry throws: an unreadable directory, an entry that
 *   vanished between readdir and lstat, a missing source dir, a failed readlink are reported via
 *   `onWarning` and skipped; the walk continues. A directory that cannot be read is still
 *   yielded (it exists), only its contents are missing.
 * - **Overlapping sources.** Listing the same directory twice is harmless (deduplicated). A
 *   source inside another source is rejected up front: which exclude rules apply (they are
 *   relative to each source dir) would be ambiguous.
 * - **Memory.** Bounded by the directory fan-out along the current path (the sorted names of
 *   each directory being walked), plus one record per multiply-linked inode whose other links
 *   have not all been seen yet; never by the total number of files.
 */
import { lstat, open, readdir, readlink, stat } from 'node:fs/promises';
import { closeSync, constants, existsSync, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, type BigIntStats } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { Entry, EntryType } from '../snapshot/types.js';
import { UsageError, errorMessage } from '../errors.js';
import { MountFilter } from './mounts.js';
import { displayPath, joinAbsPath, joinEntryPath } from './paths.js';

/** The parts of a file's stat that backup and the local state cache use. */
export interface FileStat {
  /** Size in bytes (0 for anything but regular files and symlinks). */
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  dev: bigint;
  /** Full st_mode, including the file type bits. */
  mode: number;
  nlink: number;
}

export interface WalkedEntry {
  /** The snapshot entry (path per src/snapshot/types.ts). */
  entry: Entry;
  /** Absolute path on this machine, built from the source path as given (not realpath'ed). */
  absPath: Buffer;
  stat: FileStat;
  /**
   * Set on the second and later paths of a hard-link group: the snapshot path of the group's
   * first entry, which carries the content. Undefined for the first path and for unlinked files.
   */
  hardLinkTo?: Buffer;
}

export type WalkOperation = 'stat' | 'lstat' | 'readdir' | 'readlink';

export interface WalkWarning {
  /** The path on this machine the warning is about. */
  absPath: Buffer;
  /** The system call that failed. */
  op: WalkOperation;
  /** errno code when there is one ('EACCES', 'ENOENT', ...); 'ECHANGED' for a swapped directory. */
  code?: string;
  /** Human-readable, with the path rendered by `displayPath`. */
  message: string;
}

export interface WalkOptions {
  /**
   * Returns true for entries to leave out. `relPath` is relative to the source dir it lies in,
   * '/'-separated, names decoded with `buffer.toString('utf8')`; `isDir` is true for
   * directories (not for symlinks to them). The backup engine passes the compiled exclude
   * matcher's `matches` (src/config/exclude.ts). An excluded directory is not descended into.
   * Never called for the source dirs themselves or their ancestors.
   */
  exclude?: (relPath: string, isDir: boolean) => boolean;
  /**
   * Do not descend into directories on another device than their source dir (mount points are
   * still recorded, empty). Pseudo file systems are never descended into below a source dir,
   * with or without this (src/fs/mounts.ts).
   */
  oneFileSystem?: boolean;
  /** Checked before each entry; the walk throws the signal's reason once it is aborted. */
  signal?: AbortSignal;
  /** Receives every per-entry problem; the entry is skipped and the walk goes on. */
  onWarning: (warning: WalkWarning) => void;
  /**
   * Make every fs call through the thread pool from the start, as the walk does by itself once
   * synchronous calls turn out slow (see SLOW_LSTAT_MS). For tests of that path.
   */
  threadPool?: boolean;
}

/** How many lstat calls of one directory may be in flight ahead of the entry being yielded. */
const LSTAT_LOOKAHEAD = 64;

/**
 * Synchronous calls slower than this (a network or cold file system) switch the walk to the
 * thread pool for good, so a slow file system never holds the event loop for long: once
 * SLOW_CALLS_TO_SWITCH of them come within SLOW_CALL_WINDOW calls, or at once for one over
 * VERY_SLOW_MS. Not at the first slow call: on a busy machine the thread is sometimes descheduled
 * in the middle of a 3 µs lstat, and one such hiccup made whole walks 3× slower.
 */
const SLOW_LSTAT_MS = 2;
const SLOW_CALLS_TO_SWITCH = 8;
const SLOW_CALL_WINDOW = 256;
const VERY_SLOW_MS = 50;

const S_IFMT = constants.S_IFMT;
const HAVE_PROC_FD = existsSync('/proc/self/fd');

/** Maps st_mode's type bits to the snapshot entry type. */
export function entryTypeOf(mode: number): EntryType {
  switch (mode & S_IFMT) {
    case constants.S_IFREG:
      return 'file';
    case constants.S_IFDIR:
      return 'dir';
    case constants.S_IFLNK:
      return 'symlink';
    case constants.S_IFIFO:
      return 'fifo';
    case constants.S_IFSOCK:
      return 'socket';
    case constants.S_IFCHR:
      return 'chardev';
    case constants.S_IFBLK:
      return 'blockdev';
    default:
      return 'other';
  }
}

/** The compact stat record kept for an entry. */
export function fileStatOf(st: BigIntStats): FileStat {
  return {
    size: Number(st.size),
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    ino: st.ino,
    dev: st.dev,
    mode: Number(st.mode),
    nlink: Number(st.nlink),
  };
}

/**
 * Whether two stats say a file is unchanged: the same size, mtime, ctime, inode, device and mode
 * (file type bits included: a file replaced by a FIFO is a change). The state cache keeps these
 * fields of every file it records; the link count is not among them.
 */
export function sameStat(a: Omit<FileStat, 'nlink'>, b: Omit<FileStat, 'nlink'>): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino && a.dev === b.dev && a.mode === b.mode;
}

/**
 * Walks the source directories, yielding every entry in snapshot path order (see the module
 * comment for the full contract).
 * @throws UsageError when one source dir lies inside another.
 * @throws the signal's reason (an AbortError by default) once `options.signal` is aborted.
 */
export async function* walk(sourceDirs: string[], options: WalkOptions): AsyncGenerator<WalkedEntry> {
  const root = buildSourceTree(sourceDirs);
  const walker = new Walker(options);
  if (root.source !== undefined) {
    // Source "/": the root directory has no entry of its own, only contents.
    const st = await walker.statFollowing(root.abs);
    const frame = st && st.isDirectory() ? await walker.dirLevel(root.abs, root.rel, '', st, st.dev, false) : undefined;
    if (frame) yield* inPathOrder(frame);
    return;
  }
  yield* inPathOrder(walker.virtualLevel(root));
}

/** A node of the tree formed by the source dirs and their ancestors. */
interface SourceNode {
  name: Buffer;
  abs: Buffer;
  rel: Buffer;
  children: Map<string, SourceNode>;
  /** The source dir as configured, when this node is one. */
  source?: string;
}

function buildSourceTree(sourceDirs: string[]): SourceNode {
  const root: SourceNode = { name: Buffer.alloc(0), abs: Buffer.from('/'), rel: Buffer.alloc(0), children: new Map() };
  for (const dir of sourceDirs) {
    const resolved = resolvePath(dir);
    const parts = resolved.split('/').filter((p) => p.length > 0);
    let node = root;
    for (const part of parts) {
      if (node.source !== undefined) throw overlap(dir, node.source);
      const name = Buffer.from(part, 'utf8');
      let child = node.children.get(part);
      if (!child) {
        child = { name, abs: joinAbsPath(node.abs, name), rel: joinEntryPath(node.rel, name), children: new Map() };
        node.children.set(part, child);
      }
      node = child;
    }
    if (node.source !== undefined) continue; // the same directory listed twice
    const inner = firstSource(node);
    if (inner !== undefined) throw overlap(inner, dir);
    node.source = dir;
  }
  return root;
}

function firstSource(node: SourceNode): string | undefined {
  for (const child of node.children.values()) {
    const found = child.source ?? firstSource(child);
    if (found !== undefined) return found;
  }
  return undefined;
}

function overlap(inner: string, outer: string): UsageError {
  return new UsageError(
    `source directories overlap: '${inner}' is inside '${outer}'; list only '${outer}' (and use exclude to leave parts of it out)`,
  );
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: NodeJS.ErrnoException };

function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error: error as NodeJS.ErrnoException }),
  );
}

/** What visiting one name of a directory produced. */
interface Visit {
  self?: WalkedEntry;
  /** Lists the name's contents; run when the walk reaches the position of "name/". */
  descend?: () => Promise<Level | undefined>;
}

/** One directory level: its names sorted by bytes, and what visiting each of them yields. */
interface Level {
  names: Buffer[];
  visit: (name: Buffer, index: number) => Promise<Visit | undefined>;
}

const SLASH_BYTE = Buffer.from('/');

/**
 * Yields the entries of a tree of levels in memcmp order of their full paths. Each name's own
 * entry belongs at "prefix/name", its contents at "prefix/name/…". Any name sorting between
 * "name" and "name/" extends "name" with a byte below '/', so its subtree must come before the
 * subtree of "name": each level keeps its pending descents on a stack whose top is always the
 * smallest, and a descent runs as soon as the next name sorts after its "name/" key.
 *
 * One loop over an explicit stack of levels, not one generator per directory: with nested
 * `yield*`, every entry was handed up through every level above it (a promise per level and
 * entry), which cost about as much as the lstat calls themselves.
 */
async function* inPathOrder(first: Level): AsyncGenerator<WalkedEntry> {
  type Frame = { level: Level; i: number; pending: { key: Buffer; descend: () => Promise<Level | undefined> }[] };
  const stack: Frame[] = [{ level: first, i: 0, pending: [] }];
  while (stack.length > 0) {
    const f = stack[stack.length - 1]!;
    const { names } = f.level;
    const top = f.pending[f.pending.length - 1];
    if (top !== undefined && (f.i >= names.length || Buffer.compare(top.key, names[f.i]!) < 0)) {
      f.pending.pop();
      const level = await top.descend();
      if (level) stack.push({ level, i: 0, pending: [] });
      continue;
    }
    if (f.i >= names.length) {
      stack.pop();
      continue;
    }
    const name = names[f.i]!;
    const v = await f.level.visit(name, f.i);
    f.i++;
    if (v?.self) yield v.self;
    if (v?.descend) f.pending.push({ key: Buffer.concat([name, SLASH_BYTE]), descend: v.descend });
  }
}

class Walker {
  private nextLinkGroup = 1;
  /** (dev:ino) of multiply-linked files seen, until all their links have been seen. */
  private readonly links = new Map<string, { group: number; first: Buffer; remaining: number }>();
  /** lstat, readdir and readlink on the main thread until they are slow (see SLOW_LSTAT_MS). */
  private syncLstat = true;
  private syncCalls = 0;
  private slowCalls = 0;
  private readonly mounts: MountFilter;

  constructor(private readonly options: WalkOptions) {
    if (options.threadPool === true) this.syncLstat = false;
    this.mounts = new MountFilter({ oneFileSystem: options.oneFileSystem === true });
  }

  private warn(absPath: Buffer, op: WalkOperation, err: NodeJS.ErrnoException, what: string): void {
    const warning: WalkWarning = { absPath, op, message: `${what} ${displayPath(absPath)}: ${errorMessage(err)}` };
    if (err.code !== undefined) warning.code = err.code;
    this.options.onWarning(warning);
  }

  /** stat() following symlinks, for source dirs and their ancestors; warns and returns undefined on failure. */
  async statFollowing(abs: Buffer): Promise<BigIntStats | undefined> {
    try {
      return await stat(abs, { bigint: true });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      this.warn(abs, 'stat', e, e.code === 'ENOENT' ? 'source path does not exist:' : 'cannot stat source path');
      return undefined;
    }
  }

  /** The source dirs' ancestors: yielded as directories, in path order, then the sources under them. */
  virtualLevel(node: SourceNode): Level {
    const children = [...node.children.values()].sort((a, b) => Buffer.compare(a.name, b.name));
    return {
      names: children.map((c) => c.name),
      visit: async (_name, i) => {
        this.options.signal?.throwIfAborted();
        const child = children[i]!;
        const st = await this.statFollowing(child.abs);
        if (!st) return undefined;
        if (child.source === undefined) {
          if (!st.isDirectory()) {
            const err = Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
            this.warn(child.abs, 'stat', err, 'cannot walk source path through');
            return undefined;
          }
          return { self: this.makeEntry(child.abs, child.rel, st), descend: () => Promise.resolve(this.virtualLevel(child)) };
        }
        const self = await this.describe(child.abs, child.rel, st);
        if (!self || !st.isDirectory()) return self ? { self } : undefined;
        return { self, descend: () => this.dirLevel(child.abs, child.rel, '', st, st.dev, true) };
      },
    };
  }

  /**
   * Lists a directory's contents as a level (undefined, warned, when it cannot be read).
   * `srcRel` is the directory's path relative to its source dir (for the exclude predicate),
   * `rootDev` the source dir's device, `followFinal` true only for a source dir itself (given by
   * the user, so it may be a symlink).
   */
  async dirLevel(abs: Buffer, rel: Buffer, srcRel: string, dirStat: BigIntStats, rootDev: bigint, followFinal: boolean): Promise<Level | undefined> {
    let names: Buffer[];
    try {
      names = this.syncLstat ? this.timedSync(() => readDirectorySync(abs, dirStat, followFinal)) : await readDirectory(abs, dirStat, followFinal);
    } catch (err) {
      this.warn(abs, 'readdir', err as NodeJS.ErrnoException, 'cannot read directory');
      return undefined;
    }
    names.sort(Buffer.compare);
    const lookahead = new Lookahead(names.length, (i) => this.lstatChild(joinAbsPath(abs, names[i]!)));
    const { exclude, signal } = this.options;
    const visit = async (name: Buffer, i: number): Promise<Visit | undefined> => {
      signal?.throwIfAborted();
      const childAbs = joinAbsPath(abs, name);
      const result = await lookahead.take(i);
      if (!result.ok) {
        const vanished = result.error.code === 'ENOENT';
        this.warn(childAbs, 'lstat', result.error, vanished ? 'file vanished during the walk:' : 'cannot stat');
        return undefined;
      }
      const st = result.value;
      const isDir = st.isDirectory();
      const childSrcRel = srcRel === '' ? name.toString('utf8') : `${srcRel}/${name.toString('utf8')}`;
      if (exclude?.(childSrcRel, isDir)) return undefined;
      const childRel = joinEntryPath(rel, name);
      const self = await this.describe(childAbs, childRel, st);
      if (!self) return undefined;
      // A mount crossing (another device than the parent's, which was descended into): the
      // mount rules decide (src/fs/mounts.ts); the mount point itself is recorded either way.
      if (!isDir || (st.dev !== dirStat.dev && this.mounts.decide(childAbs, st.dev, rootDev) !== 'descend')) return { self };
      return { self, descend: () => this.dirLevel(childAbs, childRel, childSrcRel, st, rootDev, false) };
    };
    return { names, visit };
  }

  /**
   * lstat of a name just listed. On a local file system the inode is usually cached and a
   * synchronous call takes a few µs, where a thread-pool round trip and its promise cost more
   * than the call (~0.1 s of CPU per 40,000 entries, mostly in the kernel); once one is slow,
   * the rest of the walk uses the thread pool.
   */
  private lstatChild(path: Buffer): Promise<Settled<BigIntStats>> {
    if (!this.syncLstat) return settle(lstat(path, { bigint: true }));
    try {
      return Promise.resolve({ ok: true, value: this.timedSync(() => lstatSync(path, { bigint: true })) });
    } catch (error) {
      return Promise.resolve({ ok: false, error: error as NodeJS.ErrnoException });
    }
  }

  /**
   * Runs a synchronous fs call; calls that take over SLOW_LSTAT_MS mean a cold or remote file
   * system, and the rest of the walk uses the thread pool. A directory listing is 4 calls
   * (open, fstat, getdents, close): as thread-pool round trips, the walk sat idle waiting for
   * them (~0.3 s of 1.8 s in a no-change backup of 3,500 directories).
   */
  private timedSync<T>(call: () => T): T {
    const t0 = performance.now();
    try {
      return call();
    } finally {
      const ms = performance.now() - t0;
      if (ms > SLOW_LSTAT_MS && (++this.slowCalls >= SLOW_CALLS_TO_SWITCH || ms > VERY_SLOW_MS)) this.syncLstat = false;
      if (++this.syncCalls >= SLOW_CALL_WINDOW) this.syncCalls = this.slowCalls = 0;
    }
  }

  /** The entry for a stat result, with symlink target and hard-link group; undefined (warned) when readlink fails. */
  private async describe(abs: Buffer, rel: Buffer, st: BigIntStats): Promise<WalkedEntry | undefined> {
    const walked = this.makeEntry(abs, rel, st);
    const { entry } = walked;
    if (entry.type === 'symlink') {
      try {
        entry.target = this.syncLstat ? this.timedSync(() => readlinkSync(abs, { encoding: 'buffer' })) : await readlink(abs, { encoding: 'buffer' });
      } catch (err) {
        this.warn(abs, 'readlink', err as NodeJS.ErrnoException, 'cannot read symlink');
        return undefined;
      }
    } else if (entry.type === 'file' && walked.stat.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      const seen = this.links.get(key);
      if (seen) {
        entry.linkGroup = seen.group;
        walked.hardLinkTo = seen.first;
        if (--seen.remaining <= 0) this.links.delete(key);
      } else {
        entry.linkGroup = this.nextLinkGroup++;
        this.links.set(key, { group: entry.linkGroup, first: rel, remaining: walked.stat.nlink - 1 });
      }
    }
    return walked;
  }

  private makeEntry(abs: Buffer, rel: Buffer, st: BigIntStats): WalkedEntry {
    return walkedEntryOf(abs, rel, st);
  }
}

/**
 * The entry and stat record for an lstat result at snapshot path `rel`, without symlink target
 * or hard-link group (the walker's describe, and the daemon's dirty scan, add those).
 */
export function walkedEntryOf(abs: Buffer, rel: Buffer, st: BigIntStats): WalkedEntry {
  const fileStat = fileStatOf(st);
  const type = entryTypeOf(fileStat.mode);
  const entry: Entry = {
    path: rel,
    type,
    mode: fileStat.mode & 0o7777,
    uid: Number(st.uid),
    gid: Number(st.gid),
    mtimeNs: st.mtimeNs,
    size: type === 'file' ? fileStat.size : 0,
  };
  if (type === 'chardev' || type === 'blockdev') entry.rdev = Number(st.rdev);
  return { entry, absPath: abs, stat: fileStat };
}

/**
 * Lists a directory's names. Reads through a descriptor opened with O_DIRECTORY (and
 * O_NOFOLLOW unless `followFinal`) whose (dev, ino) must match `expected`, so the names listed
 * are those of the directory that was classified, not of whatever replaced it since.
 * @throws the fs error, or an Error with code 'ECHANGED' when the directory was replaced.
 */
export async function readDirectory(abs: Buffer, expected: { dev: bigint; ino: bigint }, followFinal: boolean): Promise<Buffer[]> {
  if (!HAVE_PROC_FD) return readdir(abs, { encoding: 'buffer' });
  const flags = constants.O_RDONLY | constants.O_DIRECTORY | (followFinal ? 0 : constants.O_NOFOLLOW);
  const handle = await open(abs, flags);
  try {
    checkSameDirectory(await handle.stat({ bigint: true }), expected);
    return await readdir(`/proc/self/fd/${handle.fd}`, { encoding: 'buffer' });
  } finally {
    await handle.close();
  }
}

/** @throws an Error with code 'ECHANGED' when the opened directory is not the one classified. */
function checkSameDirectory(st: BigIntStats, expected: { dev: bigint; ino: bigint }): void {
  if (st.dev !== expected.dev || st.ino !== expected.ino) {
    throw Object.assign(new Error('directory was replaced during the walk'), { code: 'ECHANGED' });
  }
}

/** readDirectory with synchronous calls (same checks). */
export function readDirectorySync(abs: Buffer, expected: { dev: bigint; ino: bigint }, followFinal: boolean): Buffer[] {
  if (!HAVE_PROC_FD) return readdirSync(abs, { encoding: 'buffer' });
  const fd = openSync(abs, constants.O_RDONLY | constants.O_DIRECTORY | (followFinal ? 0 : constants.O_NOFOLLOW));
  try {
    checkSameDirectory(fstatSync(fd, { bigint: true }), expected);
    return readdirSync(`/proc/self/fd/${fd}`, { encoding: 'buffer' });
  } finally {
    closeSync(fd);
  }
}

/** Starts up to LSTAT_LOOKAHEAD calls ahead of the one being taken, so lstat latency overlaps. */
class Lookahead<T> {
  private readonly started = new Map<number, Promise<T>>();
  private next = 0;

  constructor(
    private readonly count: number,
    private readonly start: (index: number) => Promise<T>,
  ) {}

  /** The result for `index`; indexes must be taken in increasing order. */
  take(index: number): Promise<T> {
    while (this.next < this.count && this.next <= index + LSTAT_LOOKAHEAD) {
      this.started.set(this.next, this.start(this.next));
      this.next++;
    }
    const promise = this.started.get(index)!;
    this.started.delete(index);
    return promise;
  }
}
