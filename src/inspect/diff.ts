/**
 * `diff`: what changed between two snapshots, entry by entry, reading only the shards that differ.
 *
 * A root lists its shards by path range and hash, and a shard holds every entry of the snapshot
 * in its range (docs/FORMAT.md, "Shards"). So a shard both roots list (same hash, range and
 * counts: shardRefKey) holds the same entries in both snapshots, and nothing else of either
 * snapshot lies in its range: its entries cannot differ, and it is never downloaded. The
 * remaining shards of each side are read in path order, one at a time, and their entries are
 * merged by path. Shards are cut at content-defined boundaries over the paths, so the two sides'
 * differing shards need not line up one to one (a new boundary path splits a shard, a count limit
 * moves later cuts): the merge goes by path, never by shard index.
 *
 * Memory: one open shard per side and the hard-link groups of those two shards.
 */
import { createHash } from 'node:crypto';
import { shardRefKey, type Entry, type RootContentsRead, type ShardReader, type ShardRef, type SnapshotInfo, type SnapshotListing } from '../snapshot/index.js';
import type { MetadataSource } from './shards.js';

/** What differs in an entry present in both snapshots. */
export type EntryChange = 'type' | 'content' | 'size' | 'mode' | 'owner' | 'mtime' | 'target' | 'rdev' | 'link';

export interface DiffEntry {
  status: 'added' | 'removed' | 'changed';
  path: Buffer;
  /** The entry in the first snapshot (removed, changed). */
  before?: Entry;
  /** The entry in the second snapshot (added, changed). */
  after?: Entry;
  /** For `changed`: what differs, in this order: type, content, size, mode, owner, mtime, target, rdev, link. */
  changes: EntryChange[];
}

export interface DiffCounts {
  entries: number;
  /** Sum of the sizes of the files among them (for changed entries: in the second snapshot). */
  bytes: number;
}

export interface DiffSummary {
  before: SnapshotInfo;
  after: SnapshotInfo;
  added: DiffCounts;
  removed: DiffCounts;
  /** `bytes` is the files' size in the second snapshot; `bytesBefore` in the first. */
  changed: DiffCounts & { bytesBefore: number };
  shards: {
    /** Shards each root lists. */
    before: number;
    after: number;
    /** Shards both roots list: skipped unread. */
    shared: number;
    /** Shards downloaded: the others of both sides. */
    read: number;
  };
}

/** An entry and its content key (the hash of its chunk ids; '' for anything but a non-empty file). */
interface Keyed {
  entry: Entry;
  content: string;
}

/**
 * The entries of `refs` (shards of one snapshot, in path order), in path order, each with its
 * content key. In a shard the first member of a hard-link group carries the group's chunks
 * (docs/FORMAT.md, "Shards"); the other members get its key.
 */
async function* entriesOf(source: MetadataSource, refs: readonly ShardRef[]): AsyncGenerator<Keyed> {
  for (const ref of refs) {
    const shard = await source.shard(ref);
    try {
      yield* keyedEntries(shard);
    } finally {
      shard.close();
    }
  }
}

function* keyedEntries(shard: ShardReader): Generator<Keyed> {
  const groups = new Map<number, string>();
  for (const entry of shard.entries()) {
    let content = '';
    if (entry.type === 'file' && entry.size > 0) {
      const known = entry.linkGroup !== undefined ? groups.get(entry.linkGroup) : undefined;
      if (known !== undefined) content = known;
      else {
        const hash = createHash('sha256');
        for (const c of shard.fileChunks(entry.path)) hash.update(c.id);
        content = hash.digest('hex');
        if (entry.linkGroup !== undefined) groups.set(entry.linkGroup, content);
      }
    }
    yield { entry, content };
  }
}

/** What differs between two entries of one path. */
export function entryChanges(a: Keyed, b: Keyed): EntryChange[] {
  const x = a.entry;
  const y = b.entry;
  if (x.type !== y.type) return ['type'];
  const out: EntryChange[] = [];
  if (a.content !== b.content) out.push('content');
  if (x.size !== y.size) out.push('size');
  if (x.mode !== y.mode) out.push('mode');
  if (x.uid !== y.uid || x.gid !== y.gid) out.push('owner');
  if (x.mtimeNs !== y.mtimeNs) out.push('mtime');
  if (!(x.target === undefined ? y.target === undefined : y.target !== undefined && x.target.equals(y.target))) out.push('target');
  if (x.rdev !== y.rdev) out.push('rdev');
  if (x.linkGroup !== y.linkGroup) out.push('link');
  return out;
}

/** The shards of `mine` that `theirs` does not list as they are. */
function unshared(mine: readonly ShardRef[], theirs: readonly ShardRef[]): ShardRef[] {
  const keys = new Set(theirs.map(shardRefKey));
  return mine.filter((s) => !keys.has(shardRefKey(s)));
}

const fileBytes = (e: Entry): number => (e.type === 'file' ? e.size : 0);

/**
 * Compares two snapshots (see the top of this file): calls `onEntry` for every entry added,
 * removed or changed, in path order, and returns the counts.
 * @throws VaultikError NO_IDENTITY, DATA (a root or shard missing, damaged or invalid); StorageError.
 */
export async function diffSnapshots(
  source: MetadataSource,
  before: SnapshotListing,
  after: SnapshotListing,
  onEntry: (d: DiffEntry) => void,
): Promise<DiffSummary> {
  const rootA: RootContentsRead = await source.root(before);
  const rootB: RootContentsRead = before.id === after.id && before.root.key === after.root.key ? rootA : await source.root(after);
  const onlyA = unshared(rootA.shards, rootB.shards);
  const onlyB = unshared(rootB.shards, rootA.shards);
  const summary: DiffSummary = {
    before: rootA.info,
    after: rootB.info,
    added: { entries: 0, bytes: 0 },
    removed: { entries: 0, bytes: 0 },
    changed: { entries: 0, bytes: 0, bytesBefore: 0 },
    shards: { before: rootA.shards.length, after: rootB.shards.length, shared: rootA.shards.length - onlyA.length, read: onlyA.length + onlyB.length },
  };
  const itA = entriesOf(source, onlyA);
  const itB = entriesOf(source, onlyB);
  try {
    let a = await itA.next();
    let b = await itB.next();
    while (!a.done || !b.done) {
      const cmp = a.done ? 1 : b.done ? -1 : Buffer.compare(a.value.entry.path, b.value.entry.path);
      if (cmp < 0 && !a.done) {
        summary.removed.entries++;
        summary.removed.bytes += fileBytes(a.value.entry);
        onEntry({ status: 'removed', path: a.value.entry.path, before: a.value.entry, changes: [] });
        a = await itA.next();
      } else if (cmp > 0 && !b.done) {
        summary.added.entries++;
        summary.added.bytes += fileBytes(b.value.entry);
        onEntry({ status: 'added', path: b.value.entry.path, after: b.value.entry, changes: [] });
        b = await itB.next();
      } else if (!a.done && !b.done) {
        const changes = entryChanges(a.value, b.value);
        if (changes.length > 0) {
          summary.changed.entries++;
          summary.changed.bytes += fileBytes(b.value.entry);
          summary.changed.bytesBefore += fileBytes(a.value.entry);
          onEntry({ status: 'changed', path: a.value.entry.path, before: a.value.entry, after: b.value.entry, changes });
        }
        a = await itA.next();
        b = await itB.next();
      }
    }
  } finally {
    await itA.return(undefined);
    await itB.return(undefined);
  }
  return summary;
}
