/**
 * Reading what snapshots reference, for prune and verify: a snapshot's keyless manifest, its
 * decrypted metadata's blob list, and the comparison of the two.
 */
import type { Identity } from '../crypto/index.js';
import { readManifest as readSnapshotManifest, type Manifest } from '../snapshot/manifest.js';
import { openSnapshot } from '../snapshot/pack.js';
import type { BlobRef } from '../snapshot/types.js';
import { isStorageError, type Storage } from '../storage/types.js';

/**
 * Downloads and parses a snapshot's manifest (snapshot's readManifest, with "absent" as a value).
 * @returns undefined when the manifest object does not exist.
 * @throws VaultikError (DATA) when it is invalid (see parseManifest); StorageError from the store.
 */
export async function readManifest(storage: Storage, indexPrefix: string, id: string, signal?: AbortSignal): Promise<Manifest | undefined> {
  try {
    return await readSnapshotManifest(storage, indexPrefix, id, signal ? { signal } : {});
  } catch (err) {
    if (isStorageError(err, 'not-found')) return undefined;
    throw err;
  }
}

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
 * How two blob lists (each sorted by hash) differ, for messages: undefined when they are equal,
 * else a summary naming up to three differences of each kind.
 */
export function blobListDifference(metadata: readonly BlobRef[], manifest: readonly BlobRef[]): string | undefined {
  const onlyMeta: string[] = [];
  const onlyManifest: string[] = [];
  const sizes: string[] = [];
  let i = 0;
  let j = 0;
  while (i < metadata.length || j < manifest.length) {
    const a = metadata[i];
    const b = manifest[j];
    if (a && (!b || a.hash < b.hash)) {
      onlyMeta.push(a.hash);
      i++;
    } else if (b && (!a || b.hash < a.hash)) {
      onlyManifest.push(b.hash);
      j++;
    } else if (a && b) {
      if (a.size !== b.size) sizes.push(`${a.hash} (${a.size} vs ${b.size} bytes)`);
      i++;
      j++;
    }
  }
  const parts: string[] = [];
  const few = (list: string[]): string => list.slice(0, 3).join(', ') + (list.length > 3 ? `, … (${list.length} in all)` : '');
  if (onlyMeta.length > 0) parts.push(`${onlyMeta.length} blob(s) in the metadata but not in the manifest: ${few(onlyMeta)}`);
  if (onlyManifest.length > 0) parts.push(`${onlyManifest.length} blob(s) in the manifest but not in the metadata: ${few(onlyManifest)}`);
  if (sizes.length > 0) parts.push(`${sizes.length} blob size(s) differ: ${few(sizes)}`);
  return parts.length > 0 ? parts.join('; ') : undefined;
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
