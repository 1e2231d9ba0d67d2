/**
 * Writers of the metadata DBs (schema.ts, docs/FORMAT.md): ShardWriter builds one shard (the
 * entries of one path range with their chunks and blobs), LocationSpool holds the chunk locations
 * a run learns as it packs blobs until the shards that need them are finished, and writeRoot
 * builds a snapshot's root (its row and its shards).
 *
 * Where the files live: the caller passes paths in the run's work directory beside the state
 * cache. The DBs hold file names, owners and sizes but never file contents; they stay on the
 * source machine's own disk (which already holds those names) until packMetadata encrypts them,
 * and the caller deletes them after upload. Nothing plaintext leaves the machine.
 *
 * Memory is bounded: rows go straight to SQLite in large transactions (one per `batchSize`
 * rows); SQLite's page cache is capped. A crash leaves a half-built file that the next writer on
 * the same path deletes: the file is never reused, so it needs no journal.
 */
import Database from 'better-sqlite3';
import { closeSync, openSync, rmSync } from 'node:fs';
import { ExitCode, VaultikError } from '../errors.js';
import { parseSnapshotId } from './id.js';
import { describePath, entryPathProblem } from './paths.js';
import {
  ENTRY_TYPES,
  INDEXES_DDL,
  MAX_CHUNK_PLAIN_LENGTH,
  ROOT_DDL,
  SHARD_APPLICATION_ID,
  SNAPSHOT_APPLICATION_ID,
  SNAPSHOT_FORMAT_VERSION,
  TABLES_DDL,
} from './schema.js';
import { isHexHash, type DB } from './sql.js';
import type { BlobRef, ChunkLocation, Entry, ShardCounts, ShardRef, SnapshotCounts, SnapshotInfo, SnapshotSummary } from './types.js';
import { validateWrittenShard } from './reader.js';
import { BatchInsert } from './batchInsert.js';

export interface ShardWriterOptions {
  /** Rows per transaction (default 50,000). */
  batchSize?: number;
  /** SQLite page cache in KiB (default 8 MiB: rows are appended, mostly in key order). */
  cacheKiB?: number;
}

/** A finished shard DB, ready for packMetadata. */
export interface FinishedShard extends ShardCounts {
  dbPath: string;
  /** Its first and last entry paths. */
  firstPath: Buffer;
  lastPath: Buffer;
  /** Every data blob its chunks lie in, sorted by hash. */
  blobs: BlobRef[];
  /** Sum of its file sizes, each hard-link group once. */
  totalSize: number;
}

/** A bug in the caller (bad entry, duplicate path, unknown chunk): not the user's fault. */
function callerError(message: string, cause?: unknown): VaultikError {
  return new VaultikError(`snapshot writer: ${message}`, ExitCode.FAILURE, { cause });
}

function removeDbFiles(path: string): void {
  for (const p of [path, `${path}-journal`, `${path}-wal`, `${path}-shm`]) rmSync(p, { force: true });
}

/** Closes an open DB (if any) and deletes its files; returns undefined for the caller's field. */
function closeAndRemove(db: DB | undefined, path: string): undefined {
  if (!db) return undefined;
  try {
    db.close();
  } finally {
    removeDbFiles(path);
  }
  return undefined;
}

function hashBytes(hex: string, what: string): Buffer {
  if (!isHexHash(hex)) throw callerError(`${what} is not a lowercase hex SHA-256: '${hex}'`);
  return Buffer.from(hex, 'hex');
}

function checkUint(n: number, what: string, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > max) throw callerError(`${what} out of range: ${n}`);
}

/** Opens a new DB file (mode 0600, replacing a leftover) with the given id and tables. */
function createDb(dbPath: string, applicationId: number, ddl: readonly string[], cacheKiB: number, exclusive = true): DB {
  removeDbFiles(dbPath);
  // An empty file is a valid empty SQLite DB: creating it first fixes its permissions.
  closeSync(openSync(dbPath, 'wx', 0o600));
  const db = new Database(dbPath);
  try {
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    // Exclusive (no lock round trips) unless another connection reads it while it is written.
    if (exclusive) db.pragma('locking_mode = EXCLUSIVE');
    db.pragma(`cache_size = -${cacheKiB}`);
    db.pragma(`application_id = ${applicationId}`);
    db.pragma(`user_version = ${SNAPSHOT_FORMAT_VERSION}`);
    for (const d of ddl) db.exec(d);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * Builds one shard: entries in any order (each path once), the chunks of its files and the blobs
 * they lie in. A crash leaves a half-built file that the next writer on the same path deletes:
 * the file is never reused, so it needs no journal.
 */
export class ShardWriter {
  private db: DB | undefined;
  private readonly batchSize: number;
  private pending = 0;
  private readonly insertEntry: Database.Statement;
  /** file_chunks rows: their key (path, seq) is unique once the entry row went in. */
  private readonly insertFileChunk: BatchInsert;
  private readonly insertChunk: BatchInsert;
  private readonly insertBlob: Database.Statement;
  private readonly getBlob: Database.Statement;

  /**
   * Creates a new, empty metadata DB at `dbPath` (mode 0600), replacing any leftover file there.
   * @throws VaultikError when the file cannot be created.
   */
  constructor(
    readonly dbPath: string,
    options: ShardWriterOptions = {},
    reopen = false,
  ) {
    this.batchSize = options.batchSize ?? 50_000;
    try {
      const cacheKiB = options.cacheKiB ?? 8 * 1024;
      let db: DB;
      if (reopen) {
        db = new Database(dbPath, { fileMustExist: true });
        db.pragma('journal_mode = OFF');
        db.pragma('synchronous = OFF');
        db.pragma(`cache_size = -${cacheKiB}`);
      } else {
        db = createDb(dbPath, SHARD_APPLICATION_ID, TABLES_DDL, cacheKiB);
      }
      this.db = db;
      this.insertEntry = db.prepare(
        `INSERT INTO entries (path, type, mode, uid, gid, mtime_ns, size, target, rdev, link_group)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      );
      this.insertFileChunk = new BatchInsert(db, 'INSERT INTO file_chunks (path, seq, chunk, file_offset)', 4);
      this.insertChunk = new BatchInsert(db, 'INSERT OR IGNORE INTO chunks (id, blob, offset, length, plain_length)', 5);
      this.insertBlob = db.prepare('INSERT OR IGNORE INTO blobs (hash, size) VALUES (?, ?)');
      this.getBlob = db.prepare('SELECT size FROM blobs WHERE hash = ?');
    } catch (err) {
      this.abort();
      if (err instanceof VaultikError) throw err;
      throw new VaultikError(`cannot create metadata DB ${dbPath}: ${(err as Error).message}`, ExitCode.FAILURE, { cause: err });
    }
  }

  private get open(): DB {
    if (!this.db) throw callerError('already finished or aborted');
    return this.db;
  }

  /** Counts rows and commits every batchSize of them, so no transaction grows without bound. */
  private wrote(rows: number): void {
    const db = this.open;
    if (!db.inTransaction) db.exec('BEGIN');
    this.pending += rows;
    if (this.pending >= this.batchSize) this.commit();
  }

  private commit(): void {
    this.insertFileChunk.flush();
    this.insertChunk.flush();
    if (this.db?.inTransaction) this.db.exec('COMMIT');
    this.pending = 0;
  }

  /**
   * Adds one entry. `chunks` (files only) are the chunk ids of the content in order; each must
   * be added with addChunk before finish. A hard-link follower (same linkGroup as an earlier
   * path) gets no chunks.
   * @throws VaultikError on an invalid entry or a duplicate path (a bug in the caller).
   */
  addEntry(entry: Entry, chunks?: readonly Buffer[]): void {
    const problem = entryPathProblem(entry.path);
    if (problem) throw callerError(`${problem}: ${describePath(entry.path)}`);
    if (!(ENTRY_TYPES as readonly string[]).includes(entry.type)) throw callerError(`unknown entry type '${entry.type}'`);
    checkUint(entry.mode, 'mode', 0o7777);
    checkUint(entry.uid, 'uid', 0xffffffff);
    checkUint(entry.gid, 'gid', 0xffffffff);
    checkUint(entry.size, 'size');
    if (entry.type !== 'file' && entry.size !== 0) throw callerError(`non-file entry with size ${entry.size}: ${describePath(entry.path)}`);
    if (entry.type === 'symlink' ? entry.target === undefined : entry.target !== undefined) {
      throw callerError(`symlink target given for a ${entry.type} or missing for a symlink: ${describePath(entry.path)}`);
    }
    if (entry.target?.includes(0)) throw callerError(`NUL in symlink target: ${describePath(entry.path)}`);
    if (entry.rdev !== undefined) checkUint(entry.rdev, 'rdev');
    if (entry.linkGroup !== undefined) {
      checkUint(entry.linkGroup, 'linkGroup');
      if (entry.type !== 'file') throw callerError(`link group on a ${entry.type}: ${describePath(entry.path)}`);
    }
    if (chunks && chunks.length > 0 && entry.type !== 'file') throw callerError(`chunks for a ${entry.type}: ${describePath(entry.path)}`);
    if (chunks) for (const id of chunks) if (id.length !== 32) throw callerError(`chunk id of ${id.length} bytes: ${describePath(entry.path)}`);
    this.wrote(1 + (chunks?.length ?? 0));
    try {
      this.insertEntry.run(
        entry.path,
        entry.type,
        entry.mode,
        entry.uid,
        entry.gid,
        entry.mtimeNs,
        entry.size,
        entry.target ?? null,
        entry.rdev ?? null,
        entry.linkGroup ?? null,
      );
      if (chunks) {
        for (let seq = 0; seq < chunks.length; seq++) this.insertFileChunk.add(entry.path, seq, chunks[seq], 0);
      }
    } catch (err) {
      if (err instanceof VaultikError) throw err;
      throw callerError(`cannot add ${describePath(entry.path)}: ${(err as Error).message}`, err);
    }
  }

  /**
   * Records where a chunk lives. Idempotent: a chunk already recorded keeps its first location
   * (any uploaded copy is as good as another). The chunk's blob must be added with addBlob.
   * @throws VaultikError on an invalid location.
   */
  addChunk(loc: ChunkLocation): void {
    if (loc.id.length !== 32) throw callerError(`chunk id of ${loc.id.length} bytes`);
    const blob = hashBytes(loc.blob, 'chunk blob');
    checkUint(loc.offset, 'chunk offset');
    checkUint(loc.length, 'chunk length');
    checkUint(loc.plainLength, 'chunk plain length', MAX_CHUNK_PLAIN_LENGTH);
    if (loc.length === 0) throw callerError('chunk of length 0');
    this.wrote(1);
    this.insertChunk.add(loc.id, blob, loc.offset, loc.length, loc.plainLength);
  }

  /**
   * Records a referenced blob and its stored size. Idempotent.
   * @throws VaultikError when the same blob is added with a different size.
   */
  addBlob(hash: string, size: number): void {
    const h = hashBytes(hash, 'blob hash');
    checkUint(size, 'blob size');
    if (size === 0) throw callerError(`blob ${hash} of size 0`);
    this.wrote(1);
    const r = this.insertBlob.run(h, size);
    if (r.changes === 0) {
      const prev = (this.getBlob.get(h) as { size: number }).size;
      if (prev !== size) throw callerError(`blob ${hash} added with sizes ${prev} and ${size}`);
    }
  }

  /**
   * Copies the rows of the paths in [firstPath, lastPath] from a finished DB with the shard tables
   * (a staging DB holding a whole snapshot): entries, their file_chunks, the chunks and blobs
   * those use. The first member here of a hard-link group whose carrier lies outside the range
   * gets the carrier's chunk list (each shard carries the content of its groups).
   */
  importRange(sourcePath: string, firstPath: Buffer, lastPath: Buffer): void {
    const db = this.open;
    this.commit();
    db.prepare('ATTACH DATABASE ? AS st').run(sourcePath);
    try {
      db.exec('BEGIN');
      db.prepare('INSERT INTO entries SELECT * FROM st.entries WHERE path >= ? AND path <= ?').run(firstPath, lastPath);
      db.prepare('INSERT INTO file_chunks SELECT * FROM st.file_chunks WHERE path >= ? AND path <= ?').run(firstPath, lastPath);
      db.exec(`INSERT INTO file_chunks (path, seq, chunk, file_offset)
               SELECT m.first, fc.seq, fc.chunk, fc.file_offset
               FROM (SELECT link_group, MIN(path) AS first FROM entries WHERE link_group IS NOT NULL GROUP BY link_group) m
               JOIN (SELECT link_group, MIN(path) AS carrier FROM st.entries WHERE link_group IS NOT NULL GROUP BY link_group) g
                 ON g.link_group = m.link_group
               JOIN st.file_chunks fc ON fc.path = g.carrier
               WHERE m.first != g.carrier`);
      db.exec('INSERT OR IGNORE INTO chunks SELECT * FROM st.chunks WHERE id IN (SELECT chunk FROM file_chunks)');
      db.exec('INSERT OR IGNORE INTO blobs SELECT * FROM st.blobs WHERE hash IN (SELECT blob FROM chunks)');
      db.exec('COMMIT');
    } finally {
      db.exec('DETACH DATABASE st');
    }
  }

  /**
   * Writes what was added so far and closes the file, to be finished later (a shard whose new
   * chunks are still being packed waits on disk, not in memory). Reopen it with ShardWriter.reopen.
   */
  suspend(): void {
    const db = this.open;
    this.commit();
    db.close();
    this.db = undefined;
  }

  /** Reopens a suspended shard DB to add more rows or finish it. */
  static reopen(dbPath: string, options: ShardWriterOptions = {}): ShardWriter {
    return new ShardWriter(dbPath, options, true);
  }

  /**
   * Completes the shard: takes the locations of chunks its files use but were not added from
   * the spool at `locations` (a LocationSpool's file), builds the indexes, computes each chunk's
   * offset in its file, drops chunks no file uses and blobs no chunk uses, and checks that the
   * rows agree with one another (validateWrittenShard in reader.ts). The writer is closed
   * afterwards; the file at dbPath is ready for packMetadata.
   * @throws VaultikError when the content is inconsistent (a chunk without a location, a blob
   *   missing, sizes that do not add up): a bug in the caller; the file is left for inspection.
   */
  finish(locations?: string): FinishedShard {
    const db = this.open;
    try {
      this.commit();
      if (locations !== undefined) {
        db.prepare('ATTACH DATABASE ? AS spool').run(locations);
        // The spool's writer may still hold it open: read only what it committed.
        db.exec('BEGIN');
        // Driven by this shard's rows (a primary-key probe of the spool each), never by the
        // spool's, which holds every new chunk of the run.
        db.exec(`INSERT OR IGNORE INTO chunks (id, blob, offset, length, plain_length)
                 SELECT s.id, s.blob, s.offset, s.length, s.plain_length
                 FROM file_chunks fc CROSS JOIN spool.chunks s ON s.id = fc.chunk
                 WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = fc.chunk)`);
        db.exec(`INSERT OR IGNORE INTO blobs (hash, size)
                 SELECT s.hash, s.size FROM spool.blobs s WHERE s.hash IN (SELECT blob FROM chunks)`);
        db.exec('COMMIT');
        db.exec('DETACH DATABASE spool');
      }
      db.exec('BEGIN');
      // Offsets first, so the index that covers file_offset is built once, not updated. Only
      // files with a second chunk (seq 1) have a non-zero offset: the window runs over those
      // (31 of 42,000 files in a tree of small files: 2 ms instead of 37 ms).
      db.exec(`
        UPDATE file_chunks SET file_offset = o.off
        FROM (SELECT fc.path AS path, fc.seq AS seq,
                     COALESCE(SUM(c.plain_length) OVER (PARTITION BY fc.path ORDER BY fc.seq
                              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS off
              FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk
              WHERE fc.path IN (SELECT path FROM file_chunks WHERE seq = 1)) AS o
        WHERE file_chunks.path = o.path AND file_chunks.seq = o.seq AND o.off != 0`);
      for (const ddl of INDEXES_DDL) db.exec(ddl);
      // Usually every chunk is used: counting (over the new index) is ~15× cheaper than the
      // delete's probe per chunk. Equal counts with a chunk missing fail validation anyway.
      const used = db.prepare('SELECT COUNT(DISTINCT chunk) FROM file_chunks').pluck().get() as number;
      const recorded = db.prepare('SELECT COUNT(*) FROM chunks').pluck().get() as number;
      if (used !== recorded) db.exec('DELETE FROM chunks WHERE NOT EXISTS (SELECT 1 FROM file_chunks fc WHERE fc.chunk = chunks.id)');
      db.exec('DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.blob = blobs.hash)');
      db.exec('COMMIT');
    } catch (err) {
      // No ROLLBACK: without a journal it is undefined; the file is abandoned anyway.
      db.close();
      this.db = undefined;
      throw callerError(`cannot finish shard ${this.dbPath}: ${(err as Error).message}`, err);
    }
    try {
      // The checks this DB needs beyond what addEntry/addChunk/addBlob and the SQL above
      // guarantee; a reader still validates it fully when it is read back from a store.
      return { dbPath: this.dbPath, ...validateWrittenShard(db) };
    } catch (err) {
      throw callerError(`the finished shard does not validate: ${(err as Error).message}`, err);
    } finally {
      db.close();
      this.db = undefined;
    }
  }

  /** Closes and deletes the unfinished DB. Safe to call more than once, and after finish
   *  (then it deletes nothing: the finished file belongs to the caller). */
  abort(): void {
    this.db = closeAndRemove(this.db, this.dbPath);
  }
}

/**
 * The chunk locations and blob sizes a run learns as it packs new blobs, kept on disk until the
 * shards that use them are finished (ShardWriter.finish reads it). Its rows grow with the new
 * data of the run, never with the unchanged files.
 */
export class LocationSpool {
  private db: DB | undefined;
  private readonly insertChunk: BatchInsert;
  private readonly insertBlob: Database.Statement;
  private pending = 0;

  constructor(readonly dbPath: string) {
    const db = createDb(dbPath, SHARD_APPLICATION_ID, TABLES_DDL.filter((d) => /CREATE TABLE (chunks|blobs) /.test(d)), 4 * 1024, false);
    this.db = db;
    this.insertChunk = new BatchInsert(db, 'INSERT OR IGNORE INTO chunks (id, blob, offset, length, plain_length)', 5);
    this.insertBlob = db.prepare('INSERT OR IGNORE INTO blobs (hash, size) VALUES (?, ?)');
  }

  private get open(): DB {
    if (!this.db) throw callerError('location spool is closed');
    return this.db;
  }

  /** Records a sealed blob and the chunks in it. */
  addBlob(hash: string, size: number, chunks: readonly ChunkLocation[]): void {
    const db = this.open;
    const h = hashBytes(hash, 'blob hash');
    checkUint(size, 'blob size');
    if (!db.inTransaction) db.exec('BEGIN');
    this.insertBlob.run(h, size);
    for (const c of chunks) {
      if (c.blob !== hash) throw callerError(`chunk ${c.id.toString('hex')} is in blob ${c.blob}, not ${hash}`);
      this.insertChunk.add(c.id, h, c.offset, c.length, c.plainLength);
    }
    this.pending += chunks.length + 1;
    if (this.pending >= 50_000) this.flush();
  }

  /** Commits what was added: call before a shard reads the spool. */
  flush(): void {
    const db = this.open;
    this.insertChunk.flush();
    if (db.inTransaction) db.exec('COMMIT');
    this.pending = 0;
  }

  /** Closes and deletes the file. */
  dispose(): void {
    this.db = closeAndRemove(this.db, this.dbPath);
  }
}

/** A snapshot's shards, in path order, and what they add up to. */
export interface RootContents {
  shards: readonly ShardRef[];
  /** Sum of file sizes, each hard-link group once (shards cannot tell across their borders). */
  totalSize: number;
  /** The distinct data blobs the shards reference. */
  blobs: readonly BlobRef[];
}

/**
 * Writes a snapshot's root DB at `dbPath`: the snapshot row (the summary, the counts summed over
 * `contents.shards`) and one row per shard.
 * @throws VaultikError when the shards are not in strictly increasing, non-overlapping path order
 *   (a bug in the caller).
 */
export function writeRoot(dbPath: string, summary: SnapshotSummary, contents: RootContents): SnapshotInfo {
  const { host } = parseSnapshotId(summary.id);
  const counts: SnapshotCounts = {
    fileCount: 0,
    dirCount: 0,
    symlinkCount: 0,
    otherCount: 0,
    totalSize: contents.totalSize,
    blobCount: contents.blobs.length,
    blobBytes: contents.blobs.reduce((a, b) => a + b.size, 0),
    shardCount: contents.shards.length,
    shardBytes: 0,
  };
  let prev: ShardRef | undefined;
  for (const s of contents.shards) {
    hashBytes(s.hash, 'shard blob hash');
    checkUint(s.size, 'shard size');
    if (Buffer.compare(s.firstPath, s.lastPath) > 0) throw callerError(`shard ${s.hash} ends before it starts`);
    if (prev && Buffer.compare(prev.lastPath, s.firstPath) >= 0) throw callerError(`shards ${prev.hash} and ${s.hash} overlap or are out of order`);
    prev = s;
    counts.fileCount += s.fileCount;
    counts.dirCount += s.dirCount;
    counts.symlinkCount += s.symlinkCount;
    counts.otherCount += s.otherCount;
    counts.shardBytes += s.size;
  }
  let db: DB | undefined;
  try {
    db = createDb(dbPath, SNAPSHOT_APPLICATION_ID, ROOT_DDL, 2 * 1024);
    db.exec('BEGIN');
    db.prepare(
      `INSERT INTO snapshot (id, format_version, host, start_time, end_time, tool_version, source_dirs, excludes,
         chunker, chunk_size, blob_size_limit, compression, compression_level, warnings,
         file_count, dir_count, symlink_count, other_count, total_size, blob_count, blob_bytes, shard_count, shard_bytes)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'fastcdc', ?, ?, 'zstd', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      summary.id,
      SNAPSHOT_FORMAT_VERSION,
      host,
      summary.startTime.toISOString(),
      summary.endTime.toISOString(),
      summary.toolVersion,
      JSON.stringify(summary.sourceDirs),
      JSON.stringify(summary.excludes),
      summary.chunkSize,
      summary.blobSizeLimit,
      summary.compressionLevel,
      summary.warnings ?? 0,
      counts.fileCount,
      counts.dirCount,
      counts.symlinkCount,
      counts.otherCount,
      counts.totalSize,
      counts.blobCount,
      counts.blobBytes,
      counts.shardCount,
      counts.shardBytes,
    );
    const put = db.prepare(
      `INSERT INTO shards (first_path, last_path, blob, size, entry_count, file_count, dir_count, symlink_count, other_count)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    for (const s of contents.shards) {
      put.run(s.firstPath, s.lastPath, Buffer.from(s.hash, 'hex'), s.size, s.entryCount, s.fileCount, s.dirCount, s.symlinkCount, s.otherCount);
    }
    db.exec('COMMIT');
  } catch (err) {
    throw new VaultikError(`cannot write snapshot root ${dbPath}: ${(err as Error).message}`, ExitCode.FAILURE, { cause: err });
  } finally {
    db?.close();
  }
  return {
    ...summary,
    warnings: summary.warnings ?? 0,
    formatVersion: SNAPSHOT_FORMAT_VERSION,
    host,
    chunker: 'fastcdc',
    compression: 'zstd',
    ...counts,
  };
}
