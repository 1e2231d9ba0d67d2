/**
 * The daemon's scans, for the backup engine's `scan` hook (BackupDeps.scan):
 *
 * - `dirtyScan`: the previous scan's record (tree.ts) with only the dirty paths looked at again.
 *   Entries nobody marked are carried over as recorded: no lstat, no readdir (the source dirs
 *   and their ancestors excepted: they are stat'ed every time). A marked path is
 *   re-stat'ed; a marked directory whose names may have changed (LIST) is read again and its new
 *   names are walked, its vanished names dropped with their subtrees; a directory that is new,
 *   replaced (another inode) or marked TREE is walked whole. Like the walker, it never lists a
 *   directory below a source dir where a pseudo file system is mounted, nor, with
 *   `one_file_system`, one on another device than its source dir (src/fs/mounts.ts).
 * - `diffTree`: the full stat scan. Walks everything (scanSources) and compares it with the
 *   record; the differences become dirty marks, so a full scan that finds nothing writes no
 *   snapshot, and one that finds something backs up through `dirtyScan`.
 * - `recordingScan`: passes a scan through and writes what it yields as the next record.
 *
 * Contract of dirtyScan's output (scanSources'): snapshot path order, each directory before its
 * contents, hard-link groups numbered over the whole stream, excluded and self paths left out,
 * per-entry problems reported to `onWarning` and skipped. Given marks that cover every change
 * since the record was made, it yields what a full walk would (tested against scanSources).
 * Memory: bounded by the directories being walked (their names), the marked paths, and, for the
 * directories to re-list, the names the record holds for them; never by the size of the record.
 */
import type { BigIntStats } from 'node:fs';
import { lstat, readlink, stat } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { excludeFor, scanSources, withHardLinks, type ScanOptions, type SelfPaths, type SourceEntry } from '../backup/index.js';
import type { Config } from '../config/index.js';
import { VaultikError, errorMessage } from '../errors.js';
import { MountFilter, displayPath, fileStatOf, joinAbsPath, joinEntryPath, readDirectory, sameStat, walkedEntryOf, type FileStat, type WalkOperation } from '../fs/index.js';
import type { Entry } from '../snapshot/types.js';
import { DirtySet, LIST, SELF, TREE, parentPath } from './dirty.js';
import type { TreeRecord, TreeWriter } from './tree.js';

/** The shape of BackupDeps.scan. */
export type ScanFn = (config: Config, options: ScanOptions) => AsyncIterable<SourceEntry>;

const SLASH = Buffer.from('/');
const ROOT = Buffer.from('/');

/** The absolute path of a snapshot path. */
function absOf(path: Buffer): Buffer {
  return Buffer.concat([SLASH, path]);
}

/** One configured source dir. */
export interface SourceInfo {
  /** As configured (absolute, normalized). */
  dir: string;
  /** Its snapshot path ('' for '/'). */
  path: Buffer;
  /** The walker's exclude predicate for it, self paths included (backup/sources.ts excludeFor). */
  exclude: (rel: string, isDir: boolean) => boolean;
}

export type Location =
  | { kind: 'inside'; source: SourceInfo; rel: string }
  | { kind: 'ancestor' }
  | { kind: 'outside' };

/** Where paths lie relative to the config's source dirs, and which of them are excluded. */
export class SourceMap {
  readonly sources: SourceInfo[];
  /** The source dirs and their ancestors (latin1 snapshot paths): stat'ed at every run. */
  readonly virtualKeys = new Set<string>();

  constructor(config: Pick<Config, 'sourceDirs' | 'exclude'>, self: SelfPaths) {
    this.sources = config.sourceDirs.map((dir) => ({
      dir,
      path: Buffer.from(resolvePath(dir).slice(1), 'utf8'),
      exclude: excludeFor(config, dir, self),
    }));
    for (const { path } of this.sources) {
      if (path.length === 0) continue;
      for (let i = path.indexOf(0x2f); i >= 0; i = path.indexOf(0x2f, i + 1)) this.virtualKeys.add(path.toString('latin1', 0, i));
      this.virtualKeys.add(path.toString('latin1'));
    }
  }

  /**
   * Inside a source (`rel` relative to it, '' for the source dir itself, names decoded like the
   * walker does for its exclude predicate), an ancestor of one, or outside them all.
   */
  locate(path: Buffer): Location {
    let ancestor = false;
    for (const source of this.sources) {
      const s = source.path;
      if (s.length === 0) return { kind: 'inside', source, rel: path.toString('utf8') };
      if (path.equals(s)) return { kind: 'inside', source, rel: '' };
      if (path.length > s.length && path[s.length] === 0x2f && path.subarray(0, s.length).equals(s)) {
        return { kind: 'inside', source, rel: path.subarray(s.length + 1).toString('utf8') };
      }
      if (s.length > path.length && s[path.length] === 0x2f && s.subarray(0, path.length).equals(path)) ancestor = true;
    }
    return ancestor ? { kind: 'ancestor' } : { kind: 'outside' };
  }

  /**
   * Whether a change at absolute path `abs` cannot matter to a backup: outside every source,
   * or excluded whether it is a directory or not (self paths included).
   */
  ignores(abs: Buffer): boolean {
    const loc = this.locate(abs.subarray(1));
    if (loc.kind !== 'inside') return loc.kind === 'outside';
    if (loc.rel === '') return false;
    return loc.source.exclude(loc.rel, false) && loc.source.exclude(loc.rel, true);
  }
}

function warningFor(onWarning: ScanOptions['onWarning'], abs: Buffer, op: WalkOperation, err: NodeJS.ErrnoException, what: string): void {
  const warning: Parameters<ScanOptions['onWarning']>[0] = { absPath: abs, op, message: `${what} ${displayPath(abs)}: ${errorMessage(err)}` };
  if (err.code !== undefined) warning.code = err.code;
  onWarning(warning);
}

/** The snapshot entry for a stat result; undefined (warned) when a symlink cannot be read. */
async function describe(abs: Buffer, path: Buffer, st: BigIntStats, onWarning: ScanOptions['onWarning']): Promise<SourceEntry | undefined> {
  const walked = walkedEntryOf(abs, path, st);
  const { entry } = walked;
  if (entry.type === 'symlink') {
    try {
      entry.target = await readlink(abs, { encoding: 'buffer' });
    } catch (err) {
      warningFor(onWarning, abs, 'readlink', err as NodeJS.ErrnoException, 'cannot read symlink');
      return undefined;
    }
  }
  return walked;
}

/** A recorded entry as the walker would yield it (a fresh object: hard-link numbering mutates it). */
function fromRecord(r: TreeRecord): SourceEntry {
  return { entry: { ...r.entry }, absPath: absOf(r.entry.path), stat: r.stat };
}

/** Same entry and stat tuple: nothing about the path changed since it was recorded. */
export function sameEntry(a: { entry: Entry; stat: FileStat }, b: { entry: Entry; stat: FileStat }): boolean {
  const x = a.entry;
  const y = b.entry;
  const s = a.stat;
  const t = b.stat;
  return (
    x.type === y.type &&
    x.mode === y.mode &&
    x.uid === y.uid &&
    x.gid === y.gid &&
    x.mtimeNs === y.mtimeNs &&
    x.size === y.size &&
    x.rdev === y.rdev &&
    (x.target === undefined ? y.target === undefined : y.target !== undefined && x.target.equals(y.target)) &&
    sameStat(s, t) &&
    s.nlink === t.nlink
  );
}

/**
 * For a source dir or one of its ancestors: the same directory with the same owner and mode.
 * Their times change with every name added or removed in them (for an ancestor such as /home/u,
 * with any file next to the source): that alone is no reason for a snapshot. The dirty scan
 * stats them again at every run anyway.
 */
function sameVirtualDir(a: { entry: Entry; stat: FileStat }, b: { entry: Entry; stat: FileStat }): boolean {
  return (
    a.entry.type === b.entry.type &&
    a.entry.mode === b.entry.mode &&
    a.entry.uid === b.entry.uid &&
    a.entry.gid === b.entry.gid &&
    a.stat.ino === b.stat.ino &&
    a.stat.dev === b.stat.dev
  );
}

/**
 * A source of entries for the merge: `key` is the path of the entry `pull` produces next (known
 * before any I/O, so a pending name costs no system call until its turn); `pull` may produce
 * nothing (the path vanished or is excluded) and may add items with larger keys.
 */
interface MergeItem {
  key: Buffer;
  /** The entry at `key`, if any; afterwards `key` is the next one's, or `done` is set. */
  pull(): SourceEntry | undefined | Promise<SourceEntry | undefined>;
  done: boolean;
}

/**
 * Walks batches of records (tree.ts readTreeBatches) one record at a time; `advance` returns a
 * promise only when the next batch must be read, so most records cost no await.
 */
export class RecordCursor {
  private batch: TreeRecord[] = [];
  private i = 0;

  constructor(private readonly batches: AsyncIterator<TreeRecord[]>) {}

  /** The current record; undefined once every record was seen. */
  get current(): TreeRecord | undefined {
    return this.batch[this.i];
  }

  /** Reads the first batch. */
  async start(): Promise<void> {
    this.i = -1;
    await this.advance();
  }

  advance(): Promise<void> | undefined {
    this.i++;
    if (this.i < this.batch.length) return undefined;
    return this.fill();
  }

  private async fill(): Promise<void> {
    for (;;) {
      const r = await this.batches.next();
      if (r.done) {
        this.batch = [];
        this.i = 0;
        return;
      }
      if (r.value.length > 0) {
        this.batch = r.value;
        this.i = 0;
        return;
      }
    }
  }

  close(): Promise<unknown> | undefined {
    return this.batches.return?.();
  }
}

/** A binary min-heap of merge items by key (memcmp: snapshot path order). */
class ItemHeap {
  private readonly items: MergeItem[] = [];

  get size(): number {
    return this.items.length;
  }

  push(item: MergeItem): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (Buffer.compare(a[up]!.key, a[i]!.key) <= 0) break;
      [a[up], a[i]] = [a[i]!, a[up]!];
      i = up;
    }
  }

  pop(): MergeItem | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && Buffer.compare(a[l]!.key, a[m]!.key) < 0) m = l;
        if (r < a.length && Buffer.compare(a[r]!.key, a[m]!.key) < 0) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
}

/** What the dirty scan needs besides the config. */
export interface DirtyScanInput {
  /**
   * Opens the previous scan's record, in batches (tree.ts readTreeBatches); called twice when
   * directories are to be listed again (first to collect the names they had).
   */
  openTree: () => AsyncIterable<TreeRecord[]>;
  marks: DirtySet;
}

/** The engine's scan hook for a run that re-stats only `input.marks` (see the top of this file). */
export function dirtyScan(input: DirtyScanInput): ScanFn {
  return (config, options) => withHardLinks(new DirtyWalk(config, options, input).entries());
}

class DirtyWalk {
  private readonly map: SourceMap;
  private readonly heap = new ItemHeap();
  /** Paths left out with everything below them (latin1). */
  private readonly gone = new Set<string>();
  /** Directories walked whole: what the record holds below them is stale (latin1). */
  private readonly replaced = new Set<string>();
  /** Recorded names of each directory to re-list (latin1 dir → latin1 names). */
  private readonly listed = new Map<string, Set<string>>();
  private readonly mounts: MountFilter;
  /** Each source dir's device, stat'ed when a directory of it is first listed. */
  private readonly rootDevs = new Map<SourceInfo, bigint>();

  constructor(
    config: Config,
    private readonly options: ScanOptions,
    private readonly input: DirtyScanInput,
  ) {
    this.map = new SourceMap(config, options.self);
    this.mounts = new MountFilter({ oneFileSystem: config.oneFileSystem === true });
  }

  /** Whether a directory's names are listed: the walker's mount rule (src/fs/mounts.ts). */
  private async descends(abs: Buffer, st: FileStat, loc: Extract<Location, { kind: 'inside' }>): Promise<boolean> {
    if (loc.rel === '') return true;
    let rootDev = this.rootDevs.get(loc.source);
    if (rootDev === undefined) {
      try {
        rootDev = (await stat(loc.source.dir, { bigint: true })).dev;
      } catch {
        return true; // the source dir is gone: listing anything below it fails and is reported
      }
      this.rootDevs.set(loc.source, rootDev);
    }
    return this.mounts.decide(abs, st.dev, rootDev) === 'descend';
  }

  async *entries(): AsyncGenerator<SourceEntry> {
    await this.collectListedNames();
    const tree = new RecordCursor(this.input.openTree()[Symbol.asyncIterator]());
    try {
      await this.startRoot();
      await tree.start();
      if (tree.current !== undefined) this.heap.push(new TreeItem(this, tree));
      let last: Buffer | undefined;
      let n = 0;
      while (this.heap.size > 0) {
        if ((++n & 255) === 0) this.options.signal?.throwIfAborted();
        const item = this.heap.pop()!;
        const pulled = item.pull();
        const e = pulled instanceof Promise ? await pulled : pulled;
        if (!item.done) this.heap.push(item);
        if (e === undefined) continue;
        if (last !== undefined) {
          const order = Buffer.compare(e.entry.path, last);
          // Two items at one path would give the snapshot a duplicate entry; keep the first.
          if (order === 0) continue;
          if (order < 0) throw new VaultikError(`internal error: the dirty scan went back from ${displayPath(last)} to ${displayPath(e.entry.path)}`);
        }
        last = e.entry.path;
        yield e;
      }
    } finally {
      await tree.close();
    }
  }

  private async collectListedNames(): Promise<void> {
    for (const [key, flags] of this.input.marks.entries()) if (flags & LIST) this.listed.set(key, new Set());
    if (this.listed.size === 0) return;
    for await (const batch of this.input.openTree()) {
      this.options.signal?.throwIfAborted();
      for (const r of batch) {
        const p = r.entry.path;
        const slash = p.lastIndexOf(0x2f);
        const names = this.listed.get(slash < 0 ? '' : p.toString('latin1', 0, slash));
        names?.add(p.toString('latin1', slash + 1));
      }
    }
  }

  /** Source "/": the root has no entry of its own, but its names may have changed. */
  private async startRoot(): Promise<void> {
    const source = this.map.sources.find((s) => s.path.length === 0);
    if (source === undefined || (this.input.marks.flagsOf('') & LIST) === 0) return;
    let st: BigIntStats;
    try {
      st = await stat(ROOT, { bigint: true });
    } catch (err) {
      warningFor(this.options.onWarning, ROOT, 'stat', err as NodeJS.ErrnoException, 'cannot stat source path');
      return;
    }
    await this.relist(Buffer.alloc(0), ROOT, fileStatOf(st), { kind: 'inside', source, rel: '' }, true);
  }

  /**
   * Whether `path` is left out by an earlier decision of this scan: it or an ancestor is gone,
   * or (for a recorded path) an ancestor directory is walked whole, so its record is stale.
   */
  private covered(path: Buffer, recorded: boolean): boolean {
    if (this.gone.size === 0 && this.replaced.size === 0) return false;
    for (let i = path.indexOf(0x2f); i >= 0; i = path.indexOf(0x2f, i + 1)) {
      const prefix = path.toString('latin1', 0, i);
      if (this.gone.has(prefix) || (recorded && this.replaced.has(prefix))) return true;
    }
    return this.gone.has(path.toString('latin1'));
  }

  /** A recorded entry: carried over (without an await), or looked at again when marked. */
  visitRecord(rec: TreeRecord): SourceEntry | undefined | Promise<SourceEntry | undefined> {
    const path = rec.entry.path;
    if (this.covered(path, true)) return undefined;
    const key = path.toString('latin1');
    let flags = this.input.marks.flagsOf(key);
    // Source dirs and their ancestors are few and not watched themselves (inotify reports a
    // change to a watched directory's own attributes only obscurely): always stat them again.
    if (this.map.virtualKeys.has(key)) flags |= SELF;
    if (flags === 0) return fromRecord(rec);
    return this.visitMarked(rec, flags);
  }

  private async visitMarked(rec: TreeRecord, flags: number): Promise<SourceEntry | undefined> {
    const path = rec.entry.path;
    const loc = this.map.locate(path);
    const fresh = await this.restat(path, loc);
    if (fresh === undefined) {
      this.gone.add(path.toString('latin1'));
      return undefined;
    }
    if (loc.kind !== 'inside') return fresh;
    if (fresh.entry.type === 'dir') {
      const replaced = rec.entry.type !== 'dir' || rec.stat.ino !== fresh.stat.ino || rec.stat.dev !== fresh.stat.dev || (flags & TREE) !== 0;
      if (replaced) {
        this.replaced.add(path.toString('latin1'));
        await this.expand(fresh, loc);
      } else if (flags & LIST) {
        await this.relist(path, fresh.absPath, fresh.stat, loc, loc.rel === '');
      }
    } else if (rec.entry.type === 'dir') {
      this.replaced.add(path.toString('latin1'));
    }
    return fresh;
  }

  /** A recorded path, stat'ed again like the walker would; undefined when it is gone or left out. */
  private async restat(path: Buffer, loc: Location): Promise<SourceEntry | undefined> {
    if (loc.kind === 'outside') return undefined;
    const abs = absOf(path);
    const follow = loc.kind === 'ancestor' || loc.rel === '';
    let st: BigIntStats;
    try {
      st = follow ? await stat(abs, { bigint: true }) : await lstat(abs, { bigint: true });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (follow) warningFor(this.options.onWarning, abs, 'stat', e, e.code === 'ENOENT' ? 'source path does not exist:' : 'cannot stat source path');
      else if (e.code !== 'ENOENT') warningFor(this.options.onWarning, abs, 'lstat', e, 'cannot stat');
      return undefined;
    }
    if (loc.kind === 'ancestor' && !st.isDirectory()) {
      const err = Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      warningFor(this.options.onWarning, abs, 'stat', err, 'cannot walk source path through');
      return undefined;
    }
    if (loc.kind === 'inside' && loc.rel !== '' && loc.source.exclude(loc.rel, st.isDirectory())) return undefined;
    return describe(abs, path, st, this.options.onWarning);
  }

  /** Reads a directory again: vanished names are dropped, new ones walked. */
  private async relist(path: Buffer, abs: Buffer, dirStat: FileStat, loc: Extract<Location, { kind: 'inside' }>, follow: boolean): Promise<void> {
    if (!(await this.descends(abs, dirStat, loc))) return;
    let names: Buffer[];
    try {
      names = await readDirectory(abs, dirStat, follow);
    } catch (err) {
      warningFor(this.options.onWarning, abs, 'readdir', err as NodeJS.ErrnoException, 'cannot read directory');
      this.replaced.add(path.toString('latin1'));
      return;
    }
    const known = this.listed.get(path.toString('latin1')) ?? new Set<string>();
    const present = new Set(names.map((n) => n.toString('latin1')));
    const prefix = path.length === 0 ? '' : path.toString('latin1') + '/';
    for (const name of known) if (!present.has(name)) this.gone.add(prefix + name);
    for (const name of names) {
      if (!known.has(name.toString('latin1'))) this.heap.push(new NameItem(this, path, abs, loc.source, loc.rel, name));
    }
  }

  /** Queues every name of a directory that is walked whole. */
  async expand(dir: SourceEntry, loc: Extract<Location, { kind: 'inside' }>): Promise<void> {
    if (!(await this.descends(dir.absPath, dir.stat, loc))) return;
    let names: Buffer[];
    try {
      names = await readDirectory(dir.absPath, dir.stat, loc.rel === '');
    } catch (err) {
      warningFor(this.options.onWarning, dir.absPath, 'readdir', err as NodeJS.ErrnoException, 'cannot read directory');
      return;
    }
    for (const name of names) this.heap.push(new NameItem(this, dir.entry.path, dir.absPath, loc.source, loc.rel, name));
  }

  /** A path not in the record: lstat, exclude, describe, and walk it whole if it is a directory. */
  async visitName(parent: Buffer, parentAbs: Buffer, source: SourceInfo, parentRel: string, name: Buffer): Promise<SourceEntry | undefined> {
    this.options.signal?.throwIfAborted();
    const path = joinEntryPath(parent, name);
    if (this.covered(path, false)) return undefined;
    const abs = joinAbsPath(parentAbs, name);
    let st: BigIntStats;
    try {
      st = await lstat(abs, { bigint: true });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      warningFor(this.options.onWarning, abs, 'lstat', e, e.code === 'ENOENT' ? 'file vanished during the walk:' : 'cannot stat');
      return undefined;
    }
    const decoded = name.toString('utf8');
    const rel = parentRel === '' ? decoded : `${parentRel}/${decoded}`;
    if (source.exclude(rel, st.isDirectory())) return undefined;
    const e = await describe(abs, path, st, this.options.onWarning);
    if (e !== undefined && e.entry.type === 'dir') await this.expand(e, { kind: 'inside', source, rel });
    return e;
  }
}

/** The record, in path order, as one merge item. */
class TreeItem implements MergeItem {
  key: Buffer;
  done = false;

  constructor(
    private readonly walk: DirtyWalk,
    private readonly tree: RecordCursor,
  ) {
    this.key = tree.current!.entry.path;
  }

  pull(): SourceEntry | undefined | Promise<SourceEntry | undefined> {
    const visited = this.walk.visitRecord(this.tree.current!);
    if (visited instanceof Promise) return visited.then(async (e) => (await this.next(), e));
    const moved = this.next();
    return moved === undefined ? visited : moved.then(() => visited);
  }

  private next(): Promise<void> | undefined {
    const moved = this.tree.advance();
    if (moved !== undefined) return moved.then(() => this.settle());
    this.settle();
    return undefined;
  }

  private settle(): void {
    const rec = this.tree.current;
    if (rec === undefined) this.done = true;
    else this.key = rec.entry.path;
  }
}

/** One name found in a directory (new, or inside a directory walked whole). */
class NameItem implements MergeItem {
  readonly key: Buffer;
  done = false;

  constructor(
    private readonly walk: DirtyWalk,
    private readonly parent: Buffer,
    private readonly parentAbs: Buffer,
    private readonly source: SourceInfo,
    private readonly parentRel: string,
    private readonly name: Buffer,
  ) {
    this.key = joinEntryPath(parent, name);
  }

  pull(): Promise<SourceEntry | undefined> {
    this.done = true;
    return this.walk.visitName(this.parent, this.parentAbs, this.source, this.parentRel, this.name);
  }
}

/** What a full stat scan found. */
export interface TreeDiff {
  /** Marks for every difference (empty: nothing changed since the record). */
  marks: DirtySet;
  /** Paths added, removed or changed. */
  changed: number;
  /**
   * A source dir (or one of its ancestors) appeared or disappeared: the dirty scan does not
   * list those virtual directories, so back up with a full walk.
   */
  structural: boolean;
}

/**
 * The full stat scan: walks every source dir and compares each entry with the record.
 * @throws TreeRecordError when the record is unusable; the signal's reason once aborted.
 */
export async function diffTree(config: Config, options: ScanOptions, openTree: () => AsyncIterable<TreeRecord[]>, limit?: number): Promise<TreeDiff> {
  const map = new SourceMap(config, options.self);
  const marks = new DirtySet(limit);
  const addedDirs = new Set<string>();
  const removedDirs = new Set<string>();
  let changed = 0;
  let structural = false;
  const isVirtual = (path: Buffer): boolean => {
    const loc = map.locate(path);
    return loc.kind !== 'inside' || loc.rel === '';
  };
  const walked = scanSources(config, options)[Symbol.asyncIterator]();
  const tree = new RecordCursor(openTree()[Symbol.asyncIterator]());
  const advance = async (): Promise<void> => {
    const moved = tree.advance();
    if (moved !== undefined) await moved;
  };
  try {
    let w = await walked.next();
    await tree.start();
    for (;;) {
      const rec = tree.current;
      if (w.done && rec === undefined) break;
      const c = w.done ? 1 : rec === undefined ? -1 : Buffer.compare(w.value.entry.path, rec.entry.path);
      if (c < 0) {
        const e = w.value as SourceEntry;
        const parent = parentPath(e.entry.path).toString('latin1');
        const key = e.entry.path.toString('latin1');
        if (!addedDirs.has(parent)) {
          changed++;
          if (isVirtual(e.entry.path)) structural = true;
          marks.mark(e.entry.path, SELF);
          marks.mark(parentPath(e.entry.path), SELF | LIST);
        }
        if (e.entry.type === 'dir') addedDirs.add(key);
        w = await walked.next();
      } else if (c > 0) {
        const gone = rec!;
        const parent = parentPath(gone.entry.path).toString('latin1');
        if (!removedDirs.has(parent)) {
          changed++;
          if (isVirtual(gone.entry.path)) structural = true;
          marks.mark(parentPath(gone.entry.path), SELF | LIST);
        }
        if (gone.entry.type === 'dir') removedDirs.add(gone.entry.path.toString('latin1'));
        await advance();
      } else {
        const we = w.value as SourceEntry;
        const differs = isVirtual(we.entry.path) ? !sameVirtualDir(we, rec!) : !sameEntry(we, rec!);
        if (differs) {
          changed++;
          marks.mark(we.entry.path, SELF);
        }
        w = await walked.next();
        await advance();
      }
    }
  } finally {
    await walked.return?.(undefined);
    await tree.close();
  }
  return { marks, changed, structural };
}

/** Passes `scan` through, adding every entry it yields to `writer` (the next record). */
export function recordingScan(scan: ScanFn, writer: TreeWriter): ScanFn {
  return async function* (config, options) {
    for await (const e of scan(config, options)) {
      writer.add(e);
      yield e;
    }
  };
}
