/**
 * Reading what snapshots reference, for prune and verify: a snapshot's decrypted root and the
 * data blobs of its shards, each distinct shard read once however many snapshots share it (the
 * keyless manifest and its comparison with this list are in src/snapshot/manifest.ts).
 */
import { ExitCode, VaultikError } from '../errors.js';
import type { Identity } from '../crypto/index.js';
import { openShard, readRoot, type RootRef } from '../snapshot/open.js';
import { shardRefKey, snapshotReferences } from '../snapshot/references.js';
import type { BlobRef, ShardRef } from '../snapshot/types.js';
import { StorageError, type Storage } from '../storage/types.js';

/** Whether an error says a metadata object is not in the store (as opposed to unreadable). */
function isMissingObject(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof StorageError) return e.kind === 'not-found';
  }
  return false;
}

/**
 * The data blobs of each shard, read once per shard (by its hash) and remembered: snapshots share
 * most of their shards. Concurrent requests for one shard wait for the same read.
 */
export class ShardBlobs {
  private readonly known = new Map<string, Promise<BlobRef[]>>();

  constructor(
    private readonly storage: Storage,
    private readonly identities: readonly Identity[],
    private readonly tmpDir: string,
    private readonly signal?: AbortSignal,
  ) {}

  /** Distinct shards read so far. */
  get size(): number {
    return this.known.size;
  }

  /**
   * The data blobs `ref`'s shard references, sorted by hash.
   * @throws VaultikError NO_IDENTITY, DATA (missing, corrupt or not what `ref` says); StorageError.
   */
  blobsOf(ref: ShardRef): Promise<BlobRef[]> {
    const key = shardRefKey(ref);
    let p = this.known.get(key);
    if (!p) {
      p = (async () => {
        const reader = await openShard(this.storage, ref, this.identities, this.tmpDir, this.signal ? { signal: this.signal } : {});
        try {
          return reader.blobs();
        } finally {
          reader.close();
        }
      })();
      this.known.set(key, p);
    }
    return p;
  }
}

/**
 * Decrypts a snapshot's root and its shards (through `shards`, which reads each distinct shard
 * once) and returns every blob the snapshot needs, data and shards, sorted by hash — the set its
 * manifest lists — and its source directories. Decrypted files are deleted before returning.
 * A shard missing from the store is reported in `missingShards` (its own hash stays in `blobs`,
 * the data blobs only it references cannot be known): the caller decides what it can still trust.
 * @throws VaultikError NO_IDENTITY (wrong key), DATA (a missing root, corrupt or invalid
 *   metadata); StorageError from the store.
 */
export async function readSnapshotReferences(
  storage: Storage,
  ref: RootRef,
  identities: readonly Identity[],
  tmpDir: string,
  signal?: AbortSignal,
  shards: ShardBlobs = new ShardBlobs(storage, identities, tmpDir, signal),
): Promise<{ blobs: BlobRef[]; sourceDirs: string[]; missingShards: string[] }> {
  const { id } = ref;
  const root = await readRoot(storage, ref, identities, tmpDir, signal ? { signal } : {});
  const read: { ref: ShardRef; blobs: BlobRef[] | undefined }[] = [];
  for (const ref of root.shards) {
    try {
      read.push({ ref, blobs: await shards.blobsOf(ref) });
    } catch (err) {
      if (!isMissingObject(err)) throw err;
      read.push({ ref, blobs: undefined });
    }
  }
  const refs = snapshotReferences(root.info, read);
  if (refs.problems.length > 0) throw new VaultikError(`snapshot ${id}: invalid metadata: ${refs.problems[0]}`, ExitCode.DATA);
  return { blobs: refs.blobs, sourceDirs: root.info.sourceDirs, missingShards: refs.missingShards };
}

/** The blobs a snapshot's metadata references (see readSnapshotReferences). */
export async function readMetadataBlobs(
  storage: Storage,
  ref: RootRef,
  identities: readonly Identity[],
  tmpDir: string,
  signal?: AbortSignal,
  shards?: ShardBlobs,
): Promise<BlobRef[]> {
  return (await readSnapshotReferences(storage, ref, identities, tmpDir, signal, shards)).blobs;
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
