/**
 * SnapshotWriter builds a whole snapshot at once from rows added in any order: it stages every
 * row in one local DB, then cuts it into shards (shardCut.ts), uploads each shard and the root.
 * Tools and tests use it to make a snapshot from scratch; a backup builds its shards as it walks
 * instead, reusing the unchanged ones (src/backup/shards.ts).
 */
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import type { Recipient } from '../crypto/index.js';
import type { StoreWriter } from '../storage/types.js';
import { publishSnapshot, putShard, type PublishedSnapshot } from './pack.js';
import { shardFacts, type ShardFacts } from './reader.js';
import { ShardCutter, type ShardLimits } from './shardCut.js';
import type { BlobRef, ChunkLocation, Entry, ShardRef, SnapshotInfo, SnapshotSummary } from './types.js';
import { ShardWriter, writeRoot, type ShardWriterOptions } from './writer.js';

export interface BuiltSnapshot {
  id: string;
  info: SnapshotInfo;
  shards: ShardRef[];
  /** Data blobs, then every blob the manifest lists (data and shards). */
  blobs: BlobRef[];
  manifestBlobs: BlobRef[];
  /** With `holdRoot`: uploads the manifest and the root (the snapshot then exists). */
  publishRoot(): Promise<PublishedSnapshot>;
}

export interface BuildOptions {
  indexPrefix: string;
  recipients: readonly Recipient[];
  signal?: AbortSignal;
  /** Where shards are cut (default: shardCut.ts). */
  limits?: ShardLimits;
  /**
   * Test-only: edits each finished shard DB before it is packed (tests that forge hostile
   * metadata). The root then lists what the edited shard holds.
   */
  tamperShard?: (dbPath: string) => void;
  /** Upload the shards only; the caller publishes the root later with publishRoot (a backup
   *  caught between the two, in tests). */
  holdRoot?: boolean;
}

export class SnapshotWriter {
  private readonly staging: ShardWriter;

  /** Stages rows in a new DB at `dbPath`; shard and root files go beside it. */
  constructor(
    readonly dbPath: string,
    options: ShardWriterOptions = {},
  ) {
    this.staging = new ShardWriter(dbPath, options);
  }

  /** See ShardWriter.addEntry. */
  addEntry(entry: Entry, chunks?: readonly Buffer[]): void {
    this.staging.addEntry(entry, chunks);
  }

  /** See ShardWriter.addChunk. */
  addChunk(loc: ChunkLocation): void {
    this.staging.addChunk(loc);
  }

  /** See ShardWriter.addBlob. */
  addBlob(hash: string, size: number): void {
    this.staging.addBlob(hash, size);
  }

  /** Drops the staged rows. */
  abort(): void {
    this.staging.abort();
  }

  /**
   * Validates the staged rows, cuts them into shards, uploads each shard, then the manifest and
   * the root (the snapshot exists once its root does). Deletes the local files.
   * @throws VaultikError when the rows are inconsistent (a bug in the caller); StorageError.
   */
  async publish(storage: StoreWriter, summary: SnapshotSummary, options: BuildOptions): Promise<BuiltSnapshot> {
    const dir = dirname(this.dbPath);
    const rootPath = join(dir, `root-${process.pid}-${Math.random().toString(36).slice(2)}.db`);
    let built: Omit<BuiltSnapshot, 'publishRoot'>;
    try {
      const staged = this.staging.finish();
      const ranges = cutRanges(this.dbPath, options.limits);
      const shards: ShardRef[] = [];
      for (const [i, r] of ranges.entries()) {
        const path = join(dir, `shard-${process.pid}-${i}.db`);
        try {
          const w = new ShardWriter(path);
          w.importRange(this.dbPath, r.first, r.last);
          let finished = w.finish();
          if (options.tamperShard) {
            options.tamperShard(path);
            finished = { ...finished, ...readShardFacts(path) };
          }
          shards.push(await putShard(storage, finished, options.recipients, { signal: options.signal }));
        } finally {
          rmSync(path, { force: true });
        }
      }
      const info = writeRoot(rootPath, summary, { shards, totalSize: staged.totalSize, blobs: staged.blobs });
      const manifestBlobs = [...staged.blobs, ...shards.map((sh) => ({ hash: sh.hash, size: sh.size }))];
      built = { id: summary.id, info, shards, blobs: staged.blobs, manifestBlobs };
    } catch (err) {
      rmSync(rootPath, { force: true });
      throw err;
    } finally {
      rmSync(this.dbPath, { force: true });
    }
    const publishRoot = async (): Promise<PublishedSnapshot> => {
      try {
        return await publishSnapshot(storage, {
          indexPrefix: options.indexPrefix,
          id: summary.id,
          rootPath,
          blobs: built.manifestBlobs,
          recipients: options.recipients,
          signal: options.signal,
        });
      } finally {
        rmSync(rootPath, { force: true });
      }
    };
    if (!options.holdRoot) await publishRoot();
    return { ...built, publishRoot };
  }
}

/** What a (possibly edited) shard DB holds, read without validation. */
function readShardFacts(dbPath: string): ShardFacts {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return shardFacts(db);
  } finally {
    db.close();
  }
}

/** The path ranges of the shards a finished staging DB is cut into, in order. */
function cutRanges(dbPath: string, limits?: ShardLimits): { first: Buffer; last: Buffer }[] {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const cutter = new ShardCutter(limits);
    const ranges: { first: Buffer; last: Buffer }[] = [];
    let first: Buffer | undefined;
    let last: Buffer | undefined;
    for (const r of db.prepare('SELECT path, size FROM entries ORDER BY path').iterate() as IterableIterator<{ path: Buffer; size: number }>) {
      first ??= r.path;
      last = r.path;
      if (cutter.add(r.path, r.size)) {
        ranges.push({ first, last });
        first = undefined;
      }
    }
    if (first && last) ranges.push({ first, last });
    return ranges;
  } finally {
    db.close();
  }
}
