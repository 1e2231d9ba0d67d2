/**
 * What the store says about its snapshots without the key: ids, hosts and times from object
 * names, and from each keyless manifest the number and total stored size of the blobs the
 * snapshot references (shared blobs count in every snapshot that uses them).
 */
import { errorMessage } from '../errors.js';
import { listSnapshots, readManifest, type SnapshotListing } from '../snapshot/index.js';
import type { Storage } from '../storage/types.js';

export interface SnapshotDescription extends SnapshotListing {
  /** From the manifest; undefined when it is missing or unreadable (see `manifestError`). */
  blobCount?: number;
  blobBytes?: number;
  manifestError?: string;
}

/**
 * Every snapshot, oldest first, with manifest totals (manifests are read `concurrency` at a time).
 * @throws StorageError when the store cannot be listed.
 */
export async function describeSnapshots(
  storage: Storage,
  indexPrefix: string,
  options: { manifests?: boolean; concurrency?: number } = {},
): Promise<SnapshotDescription[]> {
  const list: SnapshotDescription[] = await listSnapshots(storage, indexPrefix);
  if (options.manifests === false) return list;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < list.length) {
      const s = list[next++]!;
      const [object, ...others] = s.manifests;
      if (!object) {
        s.manifestError = 'no manifest';
        continue;
      }
      if (others.length > 0) {
        s.manifestError = `${others.length + 1} manifests`;
        continue;
      }
      try {
        const m = await readManifest(storage, object, s.id);
        if (!m) {
          s.manifestError = 'no manifest';
          continue;
        }
        s.blobCount = m.blobs.length;
        s.blobBytes = m.blobs.reduce((a, b) => a + b.size, 0);
      } catch (err) {
        s.manifestError = errorMessage(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 8, list.length) }, worker));
  return list;
}
