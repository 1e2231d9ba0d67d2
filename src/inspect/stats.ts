/**
 * `stats`: what a store holds and what deduplication saves.
 *
 * Keyless (object names, sizes and the keyless manifests; docs/FORMAT.md): the objects under
 * `blobs/` and the index prefix, the snapshots, the blobs each snapshot references, and the
 * stored bytes each snapshot added: the blobs (data blobs and shards) that it is the first to
 * reference, in time order. Also the blobs no snapshot references (the leftovers of interrupted
 * runs and forgotten snapshots, which prune deletes after its grace period) and referenced blobs
 * that are missing.
 *
 * With the key (the encrypted metadata): each snapshot's logical size and entry counts (from its
 * root alone), and, from every distinct shard read once, the distinct chunks and their plaintext
 * bytes: the deduplication ratio (the snapshots' logical sizes summed ÷ the distinct chunks'
 * bytes), the compression (the distinct chunks' bytes ÷ the stored bytes of the data blobs they
 * lie in), and the plaintext each snapshot added (the chunks it is the first to reference).
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { errorMessage, ExitCode, VaultikError } from '../errors.js';
import { listSnapshots, readManifest, shardRefKey, type SnapshotInfo, type SnapshotListing } from '../snapshot/index.js';
import { makeMetadataDir } from '../snapshot/tempDir.js';
import type { Storage } from '../storage/types.js';
import { Semaphore } from '../util/concurrency.js';
import type { MetadataSource } from './shards.js';

export interface Tally {
  count: number;
  bytes: number;
}

export interface SnapshotStats {
  snapshot: SnapshotListing;
  /** Blobs (data blobs and shards) its manifest lists; undefined without a readable manifest. */
  referenced?: Tally;
  /** Of those, the blobs no earlier snapshot (in time order) references: what it added to the store. */
  added?: Tally;
  manifestError?: string;
  /** With the key: its root's row (entry counts, `totalSize`). */
  info?: SnapshotInfo;
  /** With the key: the distinct chunks no earlier snapshot references, and their plaintext bytes. */
  newChunks?: Tally;
}

export interface KeyedStats {
  /** Sum of the snapshots' logical sizes (each snapshot's files, hard links once). */
  logicalBytes: number;
  /** Distinct chunks of all snapshots, and their plaintext bytes. */
  uniqueChunks: Tally;
  /** The distinct data blobs those chunks lie in, and their stored bytes. */
  dataBlobs: Tally;
  /** logicalBytes ÷ uniqueChunks.bytes (1 when there is nothing). */
  dedupRatio: number;
  /** uniqueChunks.bytes ÷ dataBlobs.bytes (1 when there is nothing). */
  compressionRatio: number;
  /** Distinct shards read. */
  shardsRead: number;
}

export interface StoreStats {
  snapshots: SnapshotStats[];
  /** Objects under `blobs/` (data blobs and shards) and under the index prefix. */
  blobObjects: Tally;
  indexObjects: Tally;
  /** Blobs at least one manifest lists (and the store holds). */
  referenced: Tally;
  /** Blobs in the store no manifest lists. */
  unreferenced: Tally;
  /** Blobs a manifest lists that the store does not hold. */
  missing: Tally;
  /** Only with the key. */
  keyed?: KeyedStats;
}

const add = (t: Tally, bytes: number): void => {
  t.count++;
  t.bytes += bytes;
};
const tally = (): Tally => ({ count: 0, bytes: 0 });

/**
 * The keyless statistics of a store (see the top of this file); snapshots oldest first.
 * @throws StorageError when the store cannot be listed.
 */
export async function storeStats(storage: Storage, indexPrefix: string, signal?: AbortSignal): Promise<StoreStats> {
  const stored = new Map<string, number>();
  const blobObjects = tally();
  for await (const o of storage.list('blobs/')) {
    add(blobObjects, o.size);
    const hash = o.key.slice(o.key.lastIndexOf('/') + 1);
    stored.set(hash, o.size);
  }
  const indexObjects = tally();
  for await (const o of storage.list(indexPrefix)) add(indexObjects, o.size);
  const list = await listSnapshots(storage, indexPrefix);
  const snapshots: SnapshotStats[] = list.map((snapshot) => ({ snapshot }));
  const limit = new Semaphore(8);
  const manifests = await Promise.all(
    snapshots.map((s) =>
      limit.run(async () => {
        const [object, ...others] = s.snapshot.manifests;
        if (!object) return 'no manifest';
        if (others.length > 0) return `${others.length + 1} manifests`;
        try {
          return (await readManifest(storage, object, s.snapshot.id, signal)) ?? 'no manifest';
        } catch (err) {
          if (err instanceof VaultikError && err.exitCode === ExitCode.DATA) return errorMessage(err);
          throw err;
        }
      }, signal),
    ),
  );
  const seen = new Set<string>();
  const referenced = tally();
  const missing = tally();
  snapshots.forEach((s, i) => {
    const m = manifests[i]!;
    if (typeof m === 'string') {
      s.manifestError = m;
      return;
    }
    s.referenced = tally();
    s.added = tally();
    for (const b of m.blobs) {
      add(s.referenced, b.size);
      if (seen.has(b.hash)) continue;
      seen.add(b.hash);
      add(s.added, b.size);
      if (stored.has(b.hash)) add(referenced, b.size);
      else add(missing, b.size);
    }
  });
  const unreferenced = tally();
  for (const [hash, size] of stored) if (!seen.has(hash)) add(unreferenced, size);
  return { snapshots, blobObjects, indexObjects, referenced, unreferenced, missing };
}

/**
 * Adds what needs the key to `stats` (see the top of this file): reads every snapshot's root, then
 * each distinct shard once, in the snapshots' time order.
 * @throws VaultikError NO_IDENTITY (wrong key), DATA (a root or shard missing, damaged or
 *   invalid); StorageError.
 */
export async function addKeyedStats(stats: StoreStats, source: MetadataSource, tmpDir: string): Promise<void> {
  const dir = await makeMetadataDir(tmpDir, 'snapshot');
  try {
    const db = new Database(join(dir, 'chunks.db'));
    try {
      db.pragma('journal_mode = OFF');
      db.pragma('synchronous = OFF');
      db.pragma('temp_store = FILE');
      // `first`: the index of the first snapshot (in time order) whose shards list the chunk.
      db.exec('CREATE TABLE chunks (id BLOB PRIMARY KEY, plain_length INTEGER NOT NULL, first INTEGER NOT NULL) WITHOUT ROWID');
      db.exec('CREATE TABLE blobs (hash BLOB PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID');
      const readShards = new Set<string>();
      let logicalBytes = 0;
      for (const [i, s] of stats.snapshots.entries()) {
        const root = await source.root(s.snapshot);
        s.info = root.info;
        logicalBytes += root.info.totalSize;
        for (const ref of root.shards) {
          const key = shardRefKey(ref);
          if (readShards.has(key)) continue;
          readShards.add(key);
          const shard = await source.shard(ref);
          try {
            db.prepare('ATTACH DATABASE ? AS s').run(shard.path);
            try {
              db.prepare('INSERT OR IGNORE INTO main.chunks SELECT id, plain_length, ? FROM s.chunks').run(i);
              db.exec('INSERT OR IGNORE INTO main.blobs SELECT hash, size FROM s.blobs');
            } finally {
              db.exec('DETACH DATABASE s');
            }
          } finally {
            shard.close();
          }
        }
      }
      for (const s of stats.snapshots) s.newChunks = tally();
      for (const r of db.prepare('SELECT first, COUNT(*) AS n, SUM(plain_length) AS b FROM chunks GROUP BY first').all() as { first: number; n: number; b: number }[]) {
        stats.snapshots[r.first]!.newChunks = { count: r.n, bytes: r.b };
      }
      const chunks = db.prepare('SELECT COUNT(*) AS count, COALESCE(SUM(plain_length), 0) AS bytes FROM chunks').get() as Tally;
      const blobs = db.prepare('SELECT COUNT(*) AS count, COALESCE(SUM(size), 0) AS bytes FROM blobs').get() as Tally;
      stats.keyed = {
        logicalBytes,
        uniqueChunks: chunks,
        dataBlobs: blobs,
        dedupRatio: chunks.bytes > 0 ? logicalBytes / chunks.bytes : 1,
        compressionRatio: blobs.bytes > 0 ? chunks.bytes / blobs.bytes : 1,
        shardsRead: readShards.size,
      };
    } finally {
      db.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
