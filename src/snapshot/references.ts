/**
 * What a snapshot references, from its root and the data blobs of its shards: the set its
 * manifest must list. One computation for prune (src/prune/snapshots.ts) and verify --deep
 * (src/verify/verify.ts), which read the shards their own way (once each, shared by snapshots).
 */
import type { BlobRef, ShardRef, SnapshotInfo } from './types.js';

/**
 * A key naming a shard by everything its root says of it: readers that read each distinct shard
 * once must not take a real shard's hash listed by a forged root with another range or counts
 * for the shard they already checked.
 */
export function shardRefKey(ref: ShardRef): string {
  return `${ref.hash}:${ref.firstPath.toString('hex')}:${ref.lastPath.toString('hex')}:${ref.entryCount}:${ref.fileCount}:${ref.dirCount}:${ref.symlinkCount}:${ref.otherCount}`;
}

export interface SnapshotReferences {
  /** Every blob the snapshot needs, data blobs and shards, sorted by hash. */
  blobs: BlobRef[];
  /** Shards whose data blobs are unknown (not in the store): their own hashes are in `blobs`. */
  missingShards: string[];
  /** Where the root and its shards disagree (a blob with two sizes, totals that do not add up). */
  problems: string[];
}

/**
 * Combines a root's shards with their data blobs (undefined for a shard that could not be read)
 * into the snapshot's references, and checks them against the root's totals when every shard
 * was read.
 */
export function snapshotReferences(info: SnapshotInfo, shards: readonly { ref: ShardRef; blobs: readonly BlobRef[] | undefined }[]): SnapshotReferences {
  const data = new Map<string, number>();
  const missingShards: string[] = [];
  const problems: string[] = [];
  const add = (into: Map<string, number>, hash: string, size: number, what: string): void => {
    const prev = into.get(hash);
    if (prev !== undefined && prev !== size) problems.push(`${what} ${hash} is listed with two sizes`);
    into.set(hash, size);
  };
  for (const { ref, blobs } of shards) {
    if (blobs === undefined) missingShards.push(ref.hash);
    else for (const b of blobs) add(data, b.hash, b.size, 'blob');
  }
  const dataBytes = [...data.values()].reduce((a, n) => a + n, 0);
  if (missingShards.length === 0 && (data.size !== info.blobCount || dataBytes !== info.blobBytes)) {
    problems.push(`its root says ${info.blobCount} blobs of ${info.blobBytes} bytes, its shards reference ${data.size} of ${dataBytes}`);
  }
  const all = new Map(data);
  for (const { ref } of shards) add(all, ref.hash, ref.size, 'shard');
  const blobs = [...all].map(([hash, size]) => ({ hash, size })).sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
  return { blobs, missingShards, problems };
}
