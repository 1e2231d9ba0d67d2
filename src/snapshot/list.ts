/**
 * Listing snapshots from object names alone: no key needed, nothing downloaded. A snapshot
 * exists once its metadata object exists (it is written last); a manifest without metadata is
 * the leftover of a backup that stopped between the two writes.
 */
import { UsageError } from '../errors.js';
import type { Storage } from '../storage/types.js';
import { compareSnapshots, MANIFEST_SUFFIX, METADATA_SUFFIX, tryParseSnapshotId } from './id.js';
import { editDistance } from '../util/editDistance.js';

export interface SnapshotListing {
  id: string;
  host: string;
  /** Start time of the backup, from the id. */
  time: Date;
  /** Size in bytes of the encrypted metadata object. */
  metadataSize: number;
  /** The store's timestamp of the metadata object (when the snapshot was completed). */
  metadataModified: Date;
  /** Whether the keyless manifest exists. */
  hasManifest: boolean;
}

export interface IndexScan {
  /** Snapshots (metadata present), sorted by compareSnapshots. */
  snapshots: SnapshotListing[];
  /** Snapshot ids that have a manifest but no metadata, sorted. */
  orphanManifests: string[];
  /** Keys under the index prefix that are neither (reported, never touched). */
  unknownKeys: string[];
}

/**
 * Lists every object under `indexPrefix` and sorts them into snapshots, orphan manifests and
 * unknown keys. Keys in sub-"directories" of the prefix are unknown keys.
 * @throws StorageError from `storage.list`.
 */
export async function scanIndex(storage: Storage, indexPrefix: string): Promise<IndexScan> {
  const metadata = new Map<string, { size: number; lastModified: Date }>();
  const manifests = new Set<string>();
  const unknownKeys: string[] = [];
  for await (const obj of storage.list(indexPrefix)) {
    const name = obj.key.slice(indexPrefix.length);
    let id: string | undefined;
    if (name.endsWith(METADATA_SUFFIX)) {
      id = name.slice(0, -METADATA_SUFFIX.length);
      if (tryParseSnapshotId(id)) {
        metadata.set(id, { size: obj.size, lastModified: obj.lastModified });
        continue;
      }
    } else if (name.endsWith(MANIFEST_SUFFIX)) {
      id = name.slice(0, -MANIFEST_SUFFIX.length);
      if (tryParseSnapshotId(id)) {
        manifests.add(id);
        continue;
      }
    }
    unknownKeys.push(obj.key);
  }
  const snapshots: SnapshotListing[] = [];
  for (const [id, m] of metadata) {
    const { host, time } = tryParseSnapshotId(id)!;
    snapshots.push({ id, host, time, metadataSize: m.size, metadataModified: m.lastModified, hasManifest: manifests.has(id) });
  }
  snapshots.sort(compareSnapshots);
  const orphanManifests = [...manifests].filter((id) => !metadata.has(id)).sort();
  return { snapshots, orphanManifests, unknownKeys };
}

/**
 * Every snapshot in the store, oldest first (time, then host), from object names only.
 * @throws StorageError from `storage.list`.
 */
export async function listSnapshots(storage: Storage, indexPrefix: string): Promise<SnapshotListing[]> {
  return (await scanIndex(storage, indexPrefix)).snapshots;
}

/** The `count` ids closest to `wanted` by edit distance (ties: newest first). */
export function closestSnapshotIds(list: readonly { id: string; time: Date }[], wanted: string, count = 3): string[] {
  return list
    .map((s) => ({ id: s.id, t: s.time.getTime(), d: editDistance(wanted, s.id) }))
    .sort((x, y) => x.d - y.d || y.t - x.t)
    .slice(0, count)
    .map((x) => x.id);
}

/**
 * Resolves a snapshot argument. `latest` is the newest snapshot (by the time in its id) of
 * `host` when given, else the newest of all hosts. Any other value must be an exact id.
 * @throws UsageError when there is no snapshot (for that host), or the id is unknown: the
 *   message lists the closest existing ids.
 */
export function resolveSnapshotId(list: readonly SnapshotListing[], idOrLatest: string, host?: string): SnapshotListing {
  const candidates = host === undefined ? list : list.filter((s) => s.host === host);
  if (idOrLatest === 'latest') {
    const sorted = [...candidates].sort(compareSnapshots);
    const latest = sorted[sorted.length - 1];
    if (!latest) throw new UsageError(host === undefined ? 'no snapshots in this store' : `no snapshots of host '${host}' in this store`);
    return latest;
  }
  const found = candidates.find((s) => s.id === idOrLatest);
  if (found) return found;
  const close = closestSnapshotIds(candidates, idOrLatest);
  const hint = close.length > 0 ? `; closest: ${close.join(', ')}` : '; the store has no snapshots';
  throw new UsageError(`unknown snapshot '${idOrLatest}'${hint}`);
}
