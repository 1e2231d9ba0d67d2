/**
 * SnapshotWriter builds a snapshot metadata DB (schema.ts) in a local file.
 *
 * Where the file lives: the caller passes a path under the local state cache directory. The DB
 * holds file names, owners and sizes but never file contents; it stays on the source machine's
 * own disk (which already holds those names) until packSnapshot encrypts it, and the caller
 * deletes it after upload. Nothing plaintext leaves the machine.
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
import { INDEXES_DDL, SNAPSHOT_APPLICATION_ID, SNAPSHOT_FORMAT_VERSION, TABLES_DDL, ENTRY_TYPES, MAX_CHUNK_PLAIN_LENGTH } from './schema.js';
import { computeCounts, isHexHash, type DB } from './sql.js';
import type { BlobRef, ChunkLocation, Entry, SnapshotInfo, SnapshotSummary } from './types.js';
import { SnapshotReader } from './reader.js';
import { BatchInsert } from './batchInsert.js';

export interface SnapshotWriterOptions {
  /** Rows per transaction (default 50,000). */
  batchSize?: number;
  /** SQLite page cache in KiB (default 8 MiB: rows are appended, mostly in key order). */
  cacheKiB?: number;
}

export interface FinishedSnapshot {
  dbPath: string;
  info: SnapshotInfo;
  /** Every blob the snapshot references, sorted by hash: the input of the manifest and of
   *  StateCache.completeSnapshot. */
  blobs: BlobRef[];
}

/** A bug in the caller (bad entry, duplicate path, unknown chunk): not the user's fault. */
function callerError(message: string, cause?: unknown): VaultikError {
  return new VaultikError(`snapshot writer: ${message}`, ExitCode.FAILURE, { cause });
}

function removeDbFiles(path: string): void {
  for (const p of [path, `${path}-journal`, `${path}-wal`, `${path}-shm`]) rmSync(p, { force: true });
}

function hashBytes(hex: string, what: string): Buffer {
  if (!isHexHash(hex)) throw callerError(`${what} is not a lowercase hex SHA-256: '${hex}'`);
  return Buffer.from(hex, 'hex');
}

function checkUint(n: number, what: string, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > max) throw callerError(`${what} out of range: ${n}`);
}

export class SnapshotWriter {
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
    options: SnapshotWriterOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 50_000;
    removeDbFiles(dbPath);
    try {
      // An empty file is a valid empty SQLite DB: creating it first fixes its permissions.
      closeSync(openSync(dbPath, 'wx', 0o600));
      const db = new Database(dbPath);
      this.db = db;
      db.pragma('journal_mode = OFF');
      db.pragma('synchronous = OFF');
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma(`cache_size = -${options.cacheKiB ?? 8 * 1024}`);
      db.pragma(`application_id = ${SNAPSHOT_APPLICATION_ID}`);
      db.pragma(`user_version = ${SNAPSHOT_FORMAT_VERSION}`);
      for (const ddl of TABLES_DDL) db.exec(ddl);
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
      throw new VaultikError(`cannot create snapshot metadata DB ${dbPath}: ${(err as Error).message}`, ExitCode.FAILURE, { cause: err });
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
   * Completes the DB: builds the indexes, computes each chunk's offset in its file, drops
   * chunks no file uses and blobs no chunk uses (a file skipped late may leave some), writes the
   * snapshot row, and checks that the rows agree with one another (validateWritten in
   * reader.ts). The writer is closed afterwards; the file at dbPath is ready for packSnapshot.
   * @throws VaultikError when the content is inconsistent (a chunk without a location, a blob
   *   missing, sizes that do not add up): a bug in the caller; the file is left for inspection.
   */
  finish(summary: SnapshotSummary): FinishedSnapshot {
    const db = this.open;
    const { host } = parseSnapshotId(summary.id);
    try {
      this.commit();
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
      const c = computeCounts(db);
      db.prepare(
        `INSERT INTO snapshot (id, format_version, host, start_time, end_time, tool_version, source_dirs, excludes,
           chunker, chunk_size, blob_size_limit, compression, compression_level, warnings,
           file_count, dir_count, symlink_count, other_count, total_size, chunk_count, blob_count, blob_bytes)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'fastcdc', ?, ?, 'zstd', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
        c.fileCount,
        c.dirCount,
        c.symlinkCount,
        c.otherCount,
        c.totalSize,
        c.chunkCount,
        c.blobCount,
        c.blobBytes,
      );
      db.exec('COMMIT');
    } catch (err) {
      // No ROLLBACK: without a journal it is undefined; the file is abandoned anyway.
      throw callerError(`cannot finish ${summary.id}: ${(err as Error).message}`, err);
    } finally {
      db.close();
      this.db = undefined;
    }
    let reader;
    try {
      // The checks this DB needs beyond what addEntry/addChunk/addBlob and the SQL above
      // guarantee; openSnapshot still validates it fully when it is read back from a store.
      reader = SnapshotReader.open(this.dbPath, { expectedId: summary.id }, true);
    } catch (err) {
      throw callerError(`the finished snapshot does not validate: ${(err as Error).message}`, err);
    }
    try {
      return { dbPath: this.dbPath, info: reader.info(), blobs: reader.blobs() };
    } finally {
      reader.close();
    }
  }

  /** Closes and deletes the unfinished DB. Safe to call more than once, and after finish
   *  (then it deletes nothing: the finished file belongs to the caller). */
  abort(): void {
    if (!this.db) return;
    try {
      this.db.close();
    } finally {
      this.db = undefined;
      removeDbFiles(this.dbPath);
    }
  }
}
