/**
 * Reading what snapshots reference, for prune and verify: a snapshot's decrypted metadata's blob
 * list (the keyless manifest and its comparison with this list are in src/snapshot/manifest.ts).
 */
import type { Identity } from '../crypto/index.js';
import { openSnapshot } from '../snapshot/pack.js';
import type { BlobRef } from '../snapshot/types.js';
import type { Storage } from '../storage/types.js';

/**
 * Decrypts a snapshot's metadata and returns the blobs it references, sorted by hash, and its
 * source directories. The decrypted DB is deleted before returning.
 * @throws VaultikError NO_IDENTITY (wrong key), DATA (missing, corrupt or invalid metadata);
 *   StorageError from the store.
 */
export async function readSnapshotReferences(
  storage: Storage,
  indexPrefix: string,
  id: string,
  identities: readonly Identity[],
  tmpDir: string,
  signal?: AbortSignal,
): Promise<{ blobs: BlobRef[]; sourceDirs: string[] }> {
  const reader = await openSnapshot(storage, indexPrefix, id, identities, tmpDir, signal ? { signal } : {});
  try {
    return { blobs: reader.blobs(), sourceDirs: reader.info().sourceDirs };
  } finally {
    reader.close();
  }
}

/** The blobs a snapshot's metadata references (see readSnapshotReferences). */
export async function readMetadataBlobs(
  storage: Storage,
  indexPrefix: string,
  id: string,
  identities: readonly Identity[],
  tmpDir: string,
  signal?: AbortSignal,
): Promise<BlobRef[]> {
  return (await readSnapshotReferences(storage, indexPrefix, id, identities, tmpDir, signal)).blobs;
}

/**
 * Runs `fn` over `items` with at most `limit` calls in flight, in order of start. The first
 * failure stops new calls and is rethrown once the running ones have settled.
 */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const index = next++;
      try {
        await fn(items[index]!, index);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failure) throw failure.err;
}
