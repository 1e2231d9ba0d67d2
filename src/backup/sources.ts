/**
 * The entries a backup records: every source dir walked with its own exclude rules, merged into
 * one stream in snapshot path order, with the backup's own files left out and hard links grouped
 * across all sources.
 *
 * Why one walk per source dir: exclude patterns that name a source dir absolutely apply to that
 * source only (config/exclude.ts `excludesForSource`), and the walker's exclude callback is not
 * told which source an entry belongs to. Each walk is in path order, so a k-way merge keeps the
 * walker's ordering contract for the whole snapshot; ancestors shared by two sources ("home" for
 * /home/a and /home/b) are yielded once. Hard-link groups are numbered here, over the merged
 * stream, so a link between two source dirs is one group and its first path in path order
 * carries the content, as the snapshot format requires.
 */
import { realpathSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { excludeMatcherFor, type Config } from '../config/index.js';
import { walk, type WalkWarning, type WalkedEntry } from '../fs/walk.js';

/** A walked entry, with hard-link grouping recomputed across sources. */
export type SourceEntry = WalkedEntry;

/** Paths of the backup's own state, left out of every source that contains them. */
export interface SelfPaths {
  /** Directories (or files) left out entirely: the local store's root. */
  exact: string[];
  /** Every name in `dir` starting with `prefix`: the state cache and its sidecar files. */
  prefixes: { dir: string; prefix: string }[];
}

function real(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/**
 * The backup's own files for a config: the local store directory (a backup of the store into
 * itself only grows it, and its temp files vanish mid-walk) and everything whose name starts
 * with the state cache's file name next to it (the SQLite file, its -wal/-shm/-journal, the lock,
 * the work directory with spool files and the metadata DB being built); and the metrics textfile
 * (`metrics_file`) with its temp files.
 */
export function selfPaths(config: Pick<Config, 'storage' | 'indexPath' | 'monitoring'>): SelfPaths {
  const exact: string[] = [];
  if (config.storage.type === 'local') exact.push(real(config.storage.path));
  const prefixes = [{ dir: real(dirname(config.indexPath)), prefix: basename(config.indexPath) }];
  const metrics = config.monitoring?.metricsFile;
  if (metrics !== undefined) {
    // The metrics textfile changes after every run: in a source, each run would cause the next
    // (src/monitor/metrics.ts writes it through `.<name>.<pid>.tmp` beside it).
    const dir = real(dirname(metrics));
    exact.push(`${dir}/${basename(metrics)}`);
    prefixes.push({ dir, prefix: `.${basename(metrics)}.` });
  }
  return { exact, prefixes };
}

/** `path` relative to `dir` ('' for dir itself), or undefined when it is not inside. */
function relativeTo(dir: string, path: string): string | undefined {
  if (path === dir) return '';
  const base = dir === '/' ? '/' : dir + '/';
  return path.startsWith(base) ? path.slice(base.length) : undefined;
}

/** The walker's exclude predicate for one source dir: its patterns plus the self paths inside it. */
export function excludeFor(config: Pick<Config, 'exclude' | 'sourceDirs'>, sourceDir: string, self: SelfPaths): (rel: string, isDir: boolean) => boolean {
  const matcher = excludeMatcherFor(config, sourceDir);
  const root = real(sourceDir);
  const exact = new Set<string>();
  for (const p of self.exact) {
    const rel = relativeTo(root, p);
    if (rel !== undefined && rel !== '') exact.add(rel);
  }
  const prefixes: { parent: string; prefix: string }[] = [];
  for (const { dir, prefix } of self.prefixes) {
    const parent = relativeTo(root, dir);
    if (parent !== undefined) prefixes.push({ parent, prefix });
  }
  if (exact.size === 0 && prefixes.length === 0) return (rel, isDir) => matcher.matches(rel, isDir);
  return (rel, isDir) => {
    if (exact.has(rel)) return true;
    for (const { parent, prefix } of prefixes) {
      const slash = rel.lastIndexOf('/');
      const relParent = slash < 0 ? '' : rel.slice(0, slash);
      if (relParent === parent && rel.slice(slash + 1).startsWith(prefix)) return true;
    }
    return matcher.matches(rel, isDir);
  };
}

export interface ScanOptions {
  signal?: AbortSignal;
  onWarning: (warning: WalkWarning) => void;
  /** Extra paths to leave out (see selfPaths). */
  self: SelfPaths;
}

/**
 * Every entry of the config's source dirs, in snapshot path order (see src/fs/walk.ts), each
 * directory before its contents, with `entry.linkGroup` and `hardLinkTo` assigned over all
 * sources. Pseudo file systems below a source dir, and with `one_file_system` every other device
 * than the source dir's, are recorded but not descended into (src/fs/mounts.ts). Per-entry
 * problems go to `onWarning`; nothing about one entry throws.
 * @throws UsageError for overlapping source dirs; the signal's reason once aborted.
 */
export function scanSources(config: Pick<Config, 'exclude' | 'sourceDirs' | 'oneFileSystem'>, options: ScanOptions): AsyncGenerator<SourceEntry> {
  // Plain functions around the generators, not `yield*`: each delegation costs a promise per entry.
  const oneFileSystem = config.oneFileSystem === true;
  const streams = config.sourceDirs.map((dir) =>
    walk([dir], { exclude: excludeFor(config, dir, options.self), oneFileSystem, signal: options.signal, onWarning: options.onWarning }),
  );
  return withHardLinks(streams.length === 1 ? streams[0]! : mergeByPath(streams));
}

/**
 * Numbers hard-link groups over a stream that is already in snapshot path order: what
 * scanSources does after its merge, for scans that assemble their stream another way (the
 * daemon's walk of dirty paths, src/daemon/scan.ts). Any `linkGroup`/`hardLinkTo` already set on
 * an entry is replaced.
 */
export async function* withHardLinks(stream: AsyncIterable<SourceEntry>): AsyncGenerator<SourceEntry> {
  const links = new HardLinks();
  for await (const e of stream) yield links.assign(e);
}

/** Merges path-ordered streams into one, dropping repeats of a path (shared ancestors). */
async function* mergeByPath(streams: AsyncGenerator<SourceEntry>[]): AsyncGenerator<SourceEntry> {
  const heads: (SourceEntry | undefined)[] = await Promise.all(streams.map(async (s) => (await s.next()).value ?? undefined));
  try {
    for (;;) {
      let min = -1;
      for (let i = 0; i < heads.length; i++) {
        const h = heads[i];
        if (h !== undefined && (min < 0 || Buffer.compare(h.entry.path, heads[min]!.entry.path) < 0)) min = i;
      }
      if (min < 0) return;
      const out = heads[min]!;
      yield out;
      for (let i = 0; i < heads.length; i++) {
        // Advance every stream at this path: only shared ancestor directories coincide.
        while (heads[i] !== undefined && heads[i]!.entry.path.equals(out.entry.path)) {
          heads[i] = (await streams[i]!.next()).value ?? undefined;
        }
      }
    }
  } finally {
    await Promise.all(streams.map((s) => s.return(undefined)));
  }
}

/**
 * Hard-link groups over the merged stream: regular files with nlink > 1 and the same (dev, ino)
 * share a group, numbered from 1; the first path (in path order) leads. A record is dropped once
 * every link has been seen, so memory is bounded by the inodes with links still to come.
 */
class HardLinks {
  private next = 1;
  private readonly open = new Map<string, { group: number; first: Buffer; remaining: number }>();

  assign(e: SourceEntry): SourceEntry {
    delete e.entry.linkGroup;
    delete e.hardLinkTo;
    if (e.entry.type !== 'file' || e.stat.nlink <= 1) return e;
    const key = `${e.stat.dev}:${e.stat.ino}`;
    const seen = this.open.get(key);
    if (seen) {
      e.entry.linkGroup = seen.group;
      e.hardLinkTo = seen.first;
      if (--seen.remaining <= 0) this.open.delete(key);
    } else {
      e.entry.linkGroup = this.next++;
      this.open.set(key, { group: e.entry.linkGroup, first: e.entry.path, remaining: e.stat.nlink - 1 });
    }
    return e;
  }
}
