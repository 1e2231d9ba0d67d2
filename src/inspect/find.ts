/**
 * `find`: which snapshots hold entries matching a pattern.
 *
 * Patterns are the ones `restore --include` takes (src/config/exclude.ts, docs/CONFIG.md),
 * applied to snapshot paths, whose root is the source machine's '/': a pattern without '/' (but
 * a trailing one) matches a name at any depth (`*.jpg`, `id_rsa`), one with a leading or inner
 * '/' is anchored at the root (`/home/*\/.ssh/`, `etc/fstab`), a trailing '/' matches
 * directories only. Each entry is judged alone (a directory's contents do not match because it
 * does). Several patterns: an entry matching any of them.
 *
 * Cost: each distinct shard of the chosen snapshots is read once, however many snapshots list it
 * (its matches are kept until the last snapshot that lists it has been reported). When every
 * pattern is anchored and starts with literal text (`/home/u/data/*.txt` starts with
 * `home/u/data/`), only the shards whose path range meets the paths starting with that text are
 * read: usually one or two per snapshot.
 */
import { compileExcludes, ExcludePatternError, type ExcludeMatcher } from '../config/exclude.js';
import { ExitCode, UsageError, VaultikError } from '../errors.js';
import { shardRefKey, type Entry, type ShardRef, type SnapshotInfo, type SnapshotListing } from '../snapshot/index.js';
import type { MetadataSource } from './shards.js';

/** A compiled set of find patterns. */
export interface FindPattern {
  matcher: ExcludeMatcher;
  /** Byte prefixes one of which every matching path starts with; undefined: any path may match. */
  prefixes: Buffer[] | undefined;
}

const GLOB_CHARS = /[*?[\\\uFFFD]/;

/**
 * The literal text every path matching `pattern` starts with (snapshot form, no leading '/'), or
 * undefined when the pattern is not anchored or starts with a wildcard.
 */
export function literalPrefix(pattern: string): Buffer | undefined {
  let p = pattern.endsWith('/') ? pattern.slice(0, -1) : pattern;
  if (!p.includes('/')) return undefined; // matches a name at any depth
  p = p.replace(/^\/+/, '');
  const glob = p.search(GLOB_CHARS);
  const literal = glob < 0 ? p : p.slice(0, glob);
  return literal === '' ? undefined : Buffer.from(literal, 'utf8');
}

/**
 * Compiles find patterns.
 * @throws UsageError for an empty list, a bad pattern, or a negated one (`!…`: find lists
 *   matches, there is nothing to re-include).
 */
export function compileFindPatterns(patterns: readonly string[]): FindPattern {
  if (patterns.length === 0) throw new UsageError('find needs a pattern');
  for (const p of patterns) {
    if (p === '' || p === '/') throw new UsageError(`empty find pattern '${p}'`);
    if (p.startsWith('!')) throw new UsageError(`find pattern '${p}': a negated pattern selects nothing (write \\! for a name starting with '!')`);
  }
  let matcher: ExcludeMatcher;
  try {
    matcher = compileExcludes(patterns);
  } catch (err) {
    if (err instanceof ExcludePatternError) throw new UsageError(`find: ${err.message}`, { cause: err });
    throw err;
  }
  const prefixes = patterns.map(literalPrefix);
  return { matcher, prefixes: prefixes.every((p) => p !== undefined) ? (prefixes as Buffer[]) : undefined };
}

/** The byte string just after every string that starts with `prefix` (undefined: none). */
function prefixEnd(prefix: Buffer): Buffer | undefined {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return undefined;
}

/** Whether a shard's range [first, last] can hold a path starting with one of `prefixes`. */
export function shardMayMatch(ref: Pick<ShardRef, 'firstPath' | 'lastPath'>, prefixes: readonly Buffer[] | undefined): boolean {
  if (!prefixes) return true;
  return prefixes.some((p) => {
    if (Buffer.compare(ref.lastPath, p) < 0) return false;
    const end = prefixEnd(p);
    return end === undefined || Buffer.compare(ref.firstPath, end) < 0;
  });
}

export interface FindMatch {
  snapshot: SnapshotListing;
  entry: Entry;
}

export interface FindSnapshotResult {
  snapshot: SnapshotListing;
  /** The root's row; undefined when the snapshot could not be read. */
  info?: SnapshotInfo;
  matches: number;
  /** Why (part of) the snapshot could not be searched: a missing shard, several roots, … */
  error?: string;
}

export interface FindSummary {
  snapshots: FindSnapshotResult[];
  matches: number;
  /** Distinct shards read, and the shards the chosen snapshots list in all (with repeats). */
  shardsRead: number;
  shardsListed: number;
  /** DATA when a snapshot or shard could not be read (the others were searched), else OK. */
  exitCode: number;
}

/**
 * Searches `snapshots` (in the given order) for entries matching `pattern`; calls `onSnapshot`
 * before a snapshot's matches and `onMatch` for each, in path order. A snapshot whose root or one
 * of whose shards cannot be read is reported (`error`) and the search goes on; a wrong key stops
 * it (VaultikError NO_IDENTITY).
 */
export async function findInSnapshots(
  source: MetadataSource,
  snapshots: readonly SnapshotListing[],
  pattern: FindPattern,
  on: { onSnapshot?: (s: FindSnapshotResult) => void; onMatch: (m: FindMatch) => void },
): Promise<FindSummary> {
  // Roots first (small): how many of the chosen snapshots list each shard, so a shard's matches
  // are kept only until its last user is reported.
  const roots = new Map<SnapshotListing, { info: SnapshotInfo; shards: ShardRef[] } | Error>();
  const uses = new Map<string, number>();
  let listed = 0;
  for (const s of snapshots) {
    try {
      const root = await source.root(s);
      const shards = root.shards.filter((r) => shardMayMatch(r, pattern.prefixes));
      roots.set(s, { info: root.info, shards });
      listed += shards.length;
      for (const r of shards) uses.set(shardRefKey(r), (uses.get(shardRefKey(r)) ?? 0) + 1);
    } catch (err) {
      if (!(err instanceof VaultikError) || err.exitCode !== ExitCode.DATA) throw err;
      roots.set(s, err);
    }
  }
  const cache = new Map<string, Entry[] | Error>();
  const results: FindSnapshotResult[] = [];
  let total = 0;
  let read = 0;
  for (const s of snapshots) {
    const root = roots.get(s)!;
    if (root instanceof Error) {
      const r = { snapshot: s, matches: 0, error: root.message };
      results.push(r);
      on.onSnapshot?.(r);
      continue;
    }
    const found: Entry[] = [];
    const errors: string[] = [];
    for (const ref of root.shards) {
      const key = shardRefKey(ref);
      let hits = cache.get(key);
      if (hits === undefined) {
        read++;
        hits = await matchShard(source, ref, pattern.matcher);
      }
      const left = uses.get(key)! - 1;
      uses.set(key, left);
      if (left > 0) cache.set(key, hits);
      else cache.delete(key);
      if (hits instanceof Error) errors.push(hits.message);
      else found.push(...hits);
    }
    const r: FindSnapshotResult = { snapshot: s, info: root.info, matches: found.length, ...(errors.length > 0 ? { error: errors.join('; ') } : {}) };
    results.push(r);
    on.onSnapshot?.(r);
    for (const entry of found) on.onMatch({ snapshot: s, entry });
    total += found.length;
  }
  return {
    snapshots: results,
    matches: total,
    shardsRead: read,
    shardsListed: listed,
    exitCode: results.some((r) => r.error !== undefined) ? ExitCode.DATA : ExitCode.OK,
  };
}

/**
 * The matching entries of one shard, or the error that made it unreadable (missing, damaged, or
 * invalid: a forged snapshot must not stop the search of the others). A wrong key throws.
 */
async function matchShard(source: MetadataSource, ref: ShardRef, matcher: ExcludeMatcher): Promise<Entry[] | Error> {
  try {
    const shard = await source.shard(ref);
    try {
      const out: Entry[] = [];
      for (const e of shard.entries()) if (matcher.matches(e.path, e.type === 'dir')) out.push(e);
      return out;
    } finally {
      shard.close();
    }
  } catch (err) {
    if (err instanceof VaultikError && err.exitCode === ExitCode.DATA) return err;
    throw err;
  }
}
