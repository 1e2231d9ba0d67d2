/**
 * Reading shards for the inspect commands (diff, find, stats): one shard at a time, each
 * downloaded, checked against its name, decrypted and validated by openShard (src/snapshot/open.ts),
 * with a count of what was read, so a caller (and its tests and benchmark) can tell which shards
 * a command touched.
 */
import type { Identity } from '../crypto/index.js';
import { openShard, readRoot, checkSingleRoot, type RootContentsRead, type ShardReader, type ShardRef, type SnapshotListing } from '../snapshot/index.js';
import type { Storage } from '../storage/types.js';

export interface MetadataSourceOptions {
  storage: Storage;
  identities: readonly Identity[];
  /** Where decrypted copies live while they are read (0600 files in a fresh 0700 directory). */
  tmpDir: string;
  signal?: AbortSignal;
}

/** Roots and shards of one store, read on demand and counted. */
export class MetadataSource {
  /** Shards downloaded so far, by hash (the same shard read twice counts twice). */
  readonly shardsRead: string[] = [];
  /** Roots downloaded so far. */
  rootsRead = 0;

  constructor(private readonly options: MetadataSourceOptions) {}

  /**
   * The validated root of a snapshot; one with several roots is refused (checkSingleRoot).
   * @throws VaultikError NO_IDENTITY, DATA; StorageError.
   */
  async root(snapshot: SnapshotListing): Promise<RootContentsRead> {
    checkSingleRoot(snapshot);
    this.rootsRead++;
    const { storage, identities, tmpDir, signal } = this.options;
    return readRoot(storage, snapshot, identities, tmpDir, signal ? { signal } : {});
  }

  /**
   * One shard, validated against its row in the root; close() the reader when done.
   * @throws ShardUnavailableError (missing, damaged), VaultikError NO_IDENTITY or DATA; StorageError.
   */
  async shard(ref: ShardRef): Promise<ShardReader> {
    this.shardsRead.push(ref.hash);
    const { storage, identities, tmpDir, signal } = this.options;
    return openShard(storage, ref, identities, tmpDir, signal ? { signal } : {});
  }
}
