/**
 * The local state cache (`index_path`): what the source machine remembers between backups so it
 * never needs to read, list or delete remote objects (docs/DESIGN.md promise 1).
 *
 * Contracts:
 * - Only blobs whose upload completed are recorded (recordBlob is called after the put
 *   succeeded), so the cache never claims a blob the store lacks because of this machine.
 * - Dedup (findChunk) sees only chunks in blobs referenced by this source's latest completed
 *   snapshot (the base) or uploaded in the current run. beginRun enforces it by deleting every
 *   other blob (and its chunks), and a run only adds its own: so during a run every chunk row is
 *   usable and the lookups need no per-row restriction. Prune may delete every blob no existing
 *   snapshot references once it is older than its grace period, so an older blob may be gone.
 *   Exception, to resume an interrupted run: beginRun adopts blobs that an unfinished earlier
 *   run uploaded less than `resumeWindowMs` ago (default 6 h). That is safe while
 *   resumeWindowMs + the backup's duration stays below prune's grace period (default 24 h),
 *   the same bound that protects any blob uploaded early in a long run.
 * - The cache may lag the store: a run can upload its metadata and die before completeSnapshot.
 *   The store's latest snapshot is then one the cache never made its base, and the user may
 *   forget the base and prune its blobs. So before the metadata upload, preparePublish records
 *   the pending snapshot and its blobs; a run that begins with a pending snapshot left over
 *   narrows the base to the blobs in BOTH the base and the pending snapshot (whichever of the
 *   two exists keeps them), plus the resume window above.
 * - A cache for another store or key is useless and dangerous (deduping against blobs that are
 *   not there, or that the new key cannot decrypt): open() compares the store identity and
 *   starts empty on a mismatch. So it does for an unknown schema version or an unreadable file.
 * - Crash safety: WAL with synchronous=NORMAL; a crash (even power loss) loses at most the
 *   last uncommitted batch and leaves a consistent DB. Every state it can be left in is
 *   correct for the next run: file rows whose chunks no longer resolve are simply re-read.
 *   Worst case: some data is uploaded again.
 * - Unchanged files cost no write: a backup asks for its files in walk (path) order with
 *   lookupInOrder, which reads the files table with one sequential cursor, and records only the
 *   files it read again (recordFile). Rows the ordered walk passes over are files gone from the
 *   source: they are forgotten as the cursor passes them and, once the walk ends
 *   (endOrderedScan), after it. A run without a complete ordered walk keeps the older rule:
 *   completeSnapshot forgets every file not recorded in the run.
 * - Shards (src/backup/shards.ts) follow the dedup rule of blobs: findShard offers only shards of
 *   the base snapshot, which exists in the store with every blob it references, and the
 *   narrowing after a pending snapshot applies to them too. A shard uploaded by a run that never
 *   completed is not offered again (prune removes it after the grace).
 * - Memory is bounded: point lookups, one cursor and batched writes, never a whole table in memory.
 *
 * It holds file names and stat data of the source, like the metadata DB being built; it stays
 * on the source machine (the directory is created mode 0700, the files are kept mode 0600 —
 * SQLite gives its -wal and -shm files the main file's mode).
 *
 * Not thread-safe and single-writer: hold the lock (lock.ts) for the duration of a backup.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, realpathSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ExitCode, VaultikError } from '../errors.js';
import type { FileStat } from '../fs/walk.js';
import { OrderedFiles } from './orderedFiles.js';
import { rowToCachedFile, rowToLocation, toI64, type Row } from './rows.js';
import type { ChunkLocation, ShardRef } from '../snapshot/types.js';
import type { S3StorageSpec, StorageSpec } from '../storage/types.js';
import { CACHE_DDL, CACHE_SCHEMA_VERSION, CACHE_TABLES } from './schema.js';

/** A stored shard a run may reuse: how a root lists it, and the data blobs it references (hex). */
export interface CachedShard {
  ref: ShardRef;
  blobs: string[];
}

/** A file as the cache recorded it: the stat fields that decide whether it changed, and its content. */
export interface CachedFile extends Omit<FileStat, 'nlink'> {
  /** Chunk ids of the content, in order. */
  chunks: Buffer[];
  /** The run that last recorded this file. */
  run: string;
  /** The blob its first chunk was found in, when the cache knows it. */
  blob0?: Buffer;
}

export interface StateCacheOptions {
  /** Commit after this many recorded files (default 2,000)... */
  batchSize?: number;
  /** ...or once the open batch is this old (default 2,000 ms), whichever comes first. */
  batchMs?: number;
  /** Blobs of an unfinished run younger than this are reused by the next run (default 6 h; 0 = never). */
  resumeWindowMs?: number;
  /** Clock (ms since the epoch); injectable for tests. */
  now?: () => number;
}

/**
 * Where a store is, normalized so that two specs of the same store give the same value and two
 * specs that may reach different stores do not (another bucket on another endpoint can hold the
 * same keys, and a cache of one would make a backup to the other upload nothing).
 * - local: the store root with symlinks resolved (resolvedPath), and the prefix.
 * - s3: the endpoint as the S3 client resolves it (the config's, else AWS_ENDPOINT_URL_S3, else
 *   AWS_ENDPOINT_URL, else AWS's endpoint of the region), reduced to scheme, host, port and any
 *   path; the bucket; the prefix. The region counts only for AWS's own endpoints, where it picks
 *   the endpoint (and the partition); elsewhere it only signs requests. Credentials do not count:
 *   they rotate, the store stays.
 */
export function storeLocation(spec: StorageSpec, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  if (spec.type === 'local') return { type: 'local', path: resolvedPath(spec.path), prefix: spec.prefix };
  return { type: 's3', endpoint: s3Endpoint(spec, env), bucket: spec.bucket, prefix: spec.prefix };
}

/**
 * `path` with symlinks resolved. A root that does not exist yet (the first backup creates it)
 * resolves its nearest existing ancestor, so the next run, which finds it, gives the same value.
 */
function resolvedPath(path: string): string {
  const abs = resolve(path);
  const rest: string[] = [];
  for (let dir = abs; ; dir = dirname(dir)) {
    try {
      return join(realpathSync(dir), ...rest);
    } catch {
      if (dirname(dir) === dir) return abs;
      rest.unshift(basename(dir));
    }
  }
}

/** The endpoint an S3StorageSpec reaches, as src/storage/s3.ts builds its client (see storeLocation). */
function s3Endpoint(spec: S3StorageSpec, env: NodeJS.ProcessEnv): string {
  const set = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  // The AWS SDK takes these when the client is given no endpoint (and AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is not set).
  const fromEnv = env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS === 'true' ? undefined : (set(env.AWS_ENDPOINT_URL_S3) ?? set(env.AWS_ENDPOINT_URL));
  const given = set(spec.endpoint) ?? fromEnv;
  if (given === undefined) return `https://s3.${(set(spec.region) ?? 'us-east-1').toLowerCase()}.amazonaws.com`;
  let url: URL;
  try {
    url = new URL(given);
  } catch {
    return given; // Not a URL: the store cannot be reached anyway; compare it as written.
  }
  // URL lower-cases scheme and host and drops a scheme's default port.
  const path = url.pathname.replace(/\/+$/, '');
  return `${url.protocol}//${url.host}${path}`;
}

/**
 * The identity a cache is bound to: where the store is (storeLocation, and the index prefix) and
 * which keys the data is encrypted to (a fingerprint of the sorted recipients, not the keys
 * themselves). The `v` marks identities that include the endpoint: a cache written before it
 * (format 1 lacked the endpoint) may describe another store, so it is reset once.
 */
export function storeIdentity(store: { spec: StorageSpec; indexPrefix?: string; recipients: readonly string[]; env?: NodeJS.ProcessEnv }): string {
  const fp = createHash('sha256')
    .update([...store.recipients].sort().join('\n'))
    .digest('hex')
    .slice(0, 32);
  return JSON.stringify({ v: 2, store: storeLocation(store.spec, store.env), indexPrefix: store.indexPrefix ?? '', recipients: fp });
}

/** The `v` of a stored identity; 1 for identities from before it existed (or unreadable ones). */
function identityVersion(stored: string | undefined): number {
  try {
    const v = (JSON.parse(stored ?? '') as { v?: unknown }).v;
    return typeof v === 'number' ? v : 1;
  } catch {
    return 1;
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

const EMPTY = Buffer.alloc(0);

function hashBytes(hex: string): Buffer {
  if (!HEX64.test(hex)) throw new VaultikError(`state cache: not a lowercase hex SHA-256: '${hex}'`);
  return Buffer.from(hex, 'hex');
}


/** SQLite page cache of the state cache's connection, in KiB. */
const CACHE_PAGE_CACHE_KIB = 4096;

const DROP_ORPHAN_CHUNKS = 'DELETE FROM chunks WHERE NOT EXISTS (SELECT 1 FROM blobs b WHERE b.hash = chunks.blob)';

function removeDbFiles(path: string): void {
  for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) rmSync(p, { force: true });
}


export class StateCache {
  private db: Database.Database;
  private run: string | undefined;
  private pending = 0;
  private batchStart = 0;
  private readonly batchSize: number;
  private readonly batchMs: number;
  private readonly resumeWindowMs: number;
  private readonly now: () => number;
  private readonly stmts: {
    getFile: Database.Statement;
    getFileInRun: Database.Statement;
    putFile: Database.Statement;
    findChunk: Database.Statement;
    forgetFile: Database.Statement;
    putBlob: Database.Statement;
    putChunk: Database.Statement;
    blobSize: Database.Statement;
    findShard: Database.Statement;
    putShard: Database.Statement;
  };
  private base: string | undefined;
  /**
   * The usable location of the first chunk of the file lookupFile found last in this run, for
   * the findChunk that follows it. Valid for the rest of the run: a run only adds usable blobs.
   */
  private prefetched: { id: Buffer; loc: ChunkLocation } | undefined;
  /** The run's ordered walk over the files table (lookupInOrder), while it is open. */
  private ordered: OrderedFiles | undefined;
  /** The run's ordered walk reached its end (endOrderedScan): it forgot every file gone. */
  private orderedDone = false;
  /** During a run, every blob whose chunks are usable (latin1 of the hash): see isUsableBlob. */
  private usableBlobs = new Set<string>();

  /**
   * Why the cache was emptied on open (another store or key, an unknown schema version, an
   * unreadable file), or undefined when it was reused as is. Worth a notice: the next backup
   * uploads everything again.
   */
  readonly resetReason: string | undefined;

  private constructor(
    db: Database.Database,
    private readonly dbPath: string,
    resetReason: string | undefined,
    options: StateCacheOptions,
  ) {
    this.db = db;
    this.resetReason = resetReason;
    this.batchSize = options.batchSize ?? 2000;
    this.batchMs = options.batchMs ?? 2000;
    this.resumeWindowMs = options.resumeWindowMs ?? 6 * 3600 * 1000;
    this.now = options.now ?? Date.now;
    this.base = this.getMeta('base_snapshot');
    this.stmts = {
      getFile: db.prepare('SELECT size, mtime_ns, ctime_ns, inode, device, mode, chunks, run FROM files WHERE path = ?').safeIntegers(true),
      // getFile and findChunk of the first chunk in one statement: most files are one chunk, and
      // each statement costs a few µs, per file of every backup. During a run every chunk row is
      // usable (see the top), so no restriction is needed.
      getFileInRun: db
        .prepare(
          `SELECT f.size AS size, f.mtime_ns AS mtime_ns, f.ctime_ns AS ctime_ns, f.inode AS inode, f.device AS device,
                  f.mode AS mode, f.chunks AS chunks, f.run AS run,
                  c.id AS id, c.blob AS blob, c.offset AS offset, c.length AS length, c.plain_length AS plain_length
           FROM files f LEFT JOIN chunks c ON c.id = substr(f.chunks, 1, 32)
           WHERE f.path = ? LIMIT 1`,
        )
        .safeIntegers(true),
      putFile: db.prepare(
        `INSERT INTO files (path, size, mtime_ns, ctime_ns, inode, device, mode, chunks, run, blob0) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns,
           inode = excluded.inode, device = excluded.device, mode = excluded.mode, chunks = excluded.chunks, run = excluded.run,
           blob0 = excluded.blob0`,
      ),
      // Only used during a run, when every chunk row is usable (beginRun dropped the others).
      findChunk: db.prepare(
        'SELECT id, blob, offset, length, plain_length FROM chunks WHERE id = ? LIMIT 1',
      ),
      forgetFile: db.prepare('DELETE FROM files WHERE path = ?'),
      putBlob: db.prepare('INSERT OR IGNORE INTO blobs (hash, size, uploaded_at, run) VALUES (?, ?, ?, ?)'),
      putChunk: db.prepare('INSERT OR IGNORE INTO chunks (id, blob, offset, length, plain_length) VALUES (?, ?, ?, ?, ?)'),
      blobSize: db.prepare('SELECT size FROM blobs WHERE hash = ?'),
      findShard: db.prepare('SELECT * FROM shards WHERE digest = ?'),
      putShard: db.prepare(
        `INSERT OR REPLACE INTO shards (digest, blob, size, first_path, last_path, entry_count, file_count, dir_count, symlink_count, other_count, data_blobs)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
    };
  }

  /**
   * Opens (creating it and its directory if needed) the cache at `path`, bound to
   * `identity` (see storeIdentity). An unreadable file, an unknown schema version or another
   * identity empties it (see resetReason) instead of failing: losing the cache costs a full
   * re-upload, never correctness.
   * @throws VaultikError when the directory or file cannot be created or opened at all.
   */
  static open(path: string, identity: string, options: StateCacheOptions = {}): StateCache {
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new VaultikError(`cannot create the state cache directory for ${path}: ${(err as Error).message}`, ExitCode.FAILURE, { cause: err });
    }
    let reset: string | undefined;
    let db: Database.Database;
    try {
      db = openAndCheck(path);
    } catch (err) {
      if (!isCorruption(err)) {
        throw new VaultikError(`cannot open the state cache ${path}: ${(err as Error).message}`, ExitCode.FAILURE, { cause: err });
      }
      reset = `the cache file was unreadable (${(err as Error).message}); it was recreated`;
      removeDbFiles(path);
      db = openAndCheck(path);
    }
    try {
      const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) => r.name);
      const version = tables.includes('meta')
        ? (db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined)?.value
        : undefined;
      if (version !== String(CACHE_SCHEMA_VERSION)) {
        if (tables.length > 0) reset ??= `the cache has schema version ${version ?? 'unknown'}, this vaultik uses ${CACHE_SCHEMA_VERSION}`;
        db.transaction(() => {
          for (const t of tables) db.exec(`DROP TABLE IF EXISTS "${t.replace(/"/g, '""')}"`);
          for (const ddl of CACHE_DDL) db.exec(ddl);
          db.prepare("INSERT INTO meta (key, value) VALUES ('schema_version', ?), ('store_identity', ?)").run(String(CACHE_SCHEMA_VERSION), identity);
        })();
      } else {
        const stored = (db.prepare("SELECT value FROM meta WHERE key = 'store_identity'").get() as { value: string } | undefined)?.value;
        if (stored !== identity) {
          reset ??= identityVersion(stored) < 2
            ? 'the cache was written by an older vaultik, whose store identity left out the endpoint (it may describe another store)'
            : 'the cache belonged to a different store or encryption key';
          db.transaction(() => {
            for (const t of CACHE_TABLES) if (t !== 'meta') db.exec(`DELETE FROM ${t}`);
            db.exec("DELETE FROM meta WHERE key NOT IN ('schema_version')");
            db.prepare("INSERT INTO meta (key, value) VALUES ('store_identity', ?)").run(identity);
          })();
        }
      }
      return new StateCache(db, path, reset, options);
    } catch (err) {
      db.close();
      throw new VaultikError(`cannot initialize the state cache ${path}: ${(err as Error).message}`, ExitCode.FAILURE, { cause: err });
    }
  }

  private getMeta(key: string): string | undefined {
    return (this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined)?.value;
  }

  private requireRun(): string {
    if (this.run === undefined) throw new VaultikError('state cache: no run in progress (call beginRun first)');
    return this.run;
  }

  /** Opens a write batch if none is open; commits it when it is full or old enough. */
  private wrote(rows: number): void {
    if (!this.db.inTransaction) {
      this.db.exec('BEGIN');
      this.batchStart = this.now();
    }
    this.pending += rows;
    if (this.pending >= this.batchSize || this.now() - this.batchStart >= this.batchMs) this.flush();
  }

  /** Commits the open batch, if any. */
  flush(): void {
    if (this.db.inTransaction) this.db.exec('COMMIT');
    this.pending = 0;
  }

  /**
   * The stored size of a blob the cache recorded (in the base snapshot or uploaded by a run), or
   * undefined when it does not know it.
   */
  blobSize(hash: string): number | undefined {
    const r = this.stmts.blobSize.get(hashBytes(hash)) as { size: number | bigint } | undefined;
    return r === undefined ? undefined : Number(r.size);
  }

  /** The base snapshot (latest completed), if any. */
  baseSnapshot(): string | undefined {
    return this.base;
  }

  /** The cached record of `path`, or undefined. */
  lookupFile(path: Buffer): CachedFile | undefined {
    const r = (this.run === undefined ? this.stmts.getFile.get(path) : this.stmts.getFileInRun.get(path)) as Row | undefined;
    return r === undefined ? undefined : this.cachedFile(r);
  }

  private cachedFile(r: Row): CachedFile {
    const { file, first } = rowToCachedFile(r);
    if (first !== undefined) this.prefetched = { id: file.chunks[0]!, loc: first };
    return file;
  }

  /**
   * lookupFile for a backup that walks its whole source: it asks for every file it may reuse,
   * once each, in ascending byte order of the path, and ends with endOrderedScan. Files it
   * passes over are gone from the source and forgotten. Unchanged files then need no
   * recordFile: their rows stay as they are.
   * @throws VaultikError when no run is in progress or a path does not come after the previous one.
   */
  lookupInOrder(path: Buffer): CachedFile | undefined {
    this.requireRun();
    if (this.orderedDone) throw new VaultikError('state cache: the ordered walk of this run has ended');
    const r = this.orderedFiles().seek(path);
    return r === undefined ? undefined : this.cachedFile(r);
  }

  /**
   * The run's ordered walk saw every file of the source: the files it did not ask for are
   * forgotten, and completeSnapshot keeps every row (the unchanged files were never rewritten).
   * @throws VaultikError when no run is in progress.
   */
  endOrderedScan(): void {
    this.requireRun();
    this.orderedFiles().finish();
    this.ordered = undefined;
    this.orderedDone = true;
  }

  /** The run's ordered walk, opened on first use; what it passes over is forgotten. */
  private orderedFiles(): OrderedFiles {
    this.ordered ??= new OrderedFiles(this.dbPath, (gone) => this.forgetFile(gone));
    return this.ordered;
  }

  /**
   * Forgets `path` (a file left out of the snapshot, or gone). Batched.
   * @throws VaultikError when no run is in progress.
   */
  forgetFile(path: Buffer): void {
    this.requireRun();
    this.wrote(1);
    this.stmts.forgetFile.run(path);
  }

  /**
   * Starts a run. Cleans up what the dedup rule can no longer use (blobs neither in the base
   * snapshot nor young enough to adopt, and their chunks) and adopts the blobs of an
   * interrupted run uploaded within resumeWindowMs.
   * @returns how many blobs were adopted.
   * @throws VaultikError when a run is already in progress.
   */
  beginRun(runId: string): { adoptedBlobs: number } {
    if (this.run !== undefined) throw new VaultikError(`state cache: run ${this.run} is still in progress`);
    if (runId === '') throw new VaultikError('state cache: empty run id');
    this.flush();
    this.settlePending();
    const since = this.resumeWindowMs > 0 ? this.now() - this.resumeWindowMs : Number.POSITIVE_INFINITY;
    const adopted = this.db.transaction(() => {
      const notBase = "hash NOT IN (SELECT blob FROM snapshot_blobs WHERE snapshot = COALESCE((SELECT value FROM meta WHERE key = 'base_snapshot'), ''))";
      const n = this.db.prepare(`UPDATE blobs SET run = ? WHERE ${notBase} AND uploaded_at >= ?`).run(runId, since).changes;
      const dropped = this.db.prepare(`DELETE FROM blobs WHERE run != ? AND ${notBase}`).run(runId).changes;
      // Chunks are only ever orphaned by a blob deletion, and each one cleans up after itself:
      // no blob dropped, no scan of every chunk row (~16 ms per 46,000 chunks).
      if (dropped > 0) this.db.exec(DROP_ORPHAN_CHUNKS);
      // Only the base's shards may be reused (see the top).
      this.db
        .prepare("DELETE FROM shards WHERE digest NOT IN (SELECT digest FROM snapshot_shards WHERE snapshot = COALESCE((SELECT value FROM meta WHERE key = 'base_snapshot'), ''))")
        .run();
      return n;
    })();
    this.run = runId;
    this.prefetched = undefined;
    // After the clean-up above, every recorded blob is usable in this run.
    this.usableBlobs = new Set((this.db.prepare('SELECT hash FROM blobs').pluck().all() as Buffer[]).map((h) => h.toString('latin1')));
    return { adoptedBlobs: adopted };
  }

  /**
   * A snapshot left pending by an earlier run (metadata perhaps uploaded, never completed): keep
   * in the base only the blobs it shares with the pending snapshot, then forget it.
   */
  private settlePending(): void {
    const pending = this.getMeta('pending_snapshot');
    if (pending === undefined) return;
    this.db.transaction(() => {
      if (pending !== this.base) {
        this.db
          .prepare('DELETE FROM snapshot_blobs WHERE snapshot = ? AND blob NOT IN (SELECT blob FROM snapshot_blobs WHERE snapshot = ?)')
          .run(this.base ?? '', pending);
        this.db.prepare('DELETE FROM snapshot_blobs WHERE snapshot = ?').run(pending);
        this.db
          .prepare('DELETE FROM snapshot_shards WHERE snapshot = ? AND digest NOT IN (SELECT digest FROM snapshot_shards WHERE snapshot = ?)')
          .run(this.base ?? '', pending);
        this.db.prepare('DELETE FROM snapshot_shards WHERE snapshot = ?').run(pending);
      }
      this.db.prepare("DELETE FROM meta WHERE key = 'pending_snapshot'").run();
    })();
  }

  /**
   * Records that the run's snapshot is about to be published, with every blob it references
   * (hex hashes): call it before uploading the metadata, and completeSnapshot after. Committed
   * before returning. If the run never completes, the next beginRun narrows the base (see top).
   * @throws VaultikError when no run is in progress.
   */
  preparePublish(snapshotId: string, blobs: Iterable<string>, shards: Iterable<Buffer> = []): void {
    this.requireRun();
    this.flush();
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM snapshot_blobs WHERE snapshot = ?').run(snapshotId);
      this.db.prepare('DELETE FROM snapshot_shards WHERE snapshot = ?').run(snapshotId);
      this.putSnapshotSets(snapshotId, blobs, shards);
      this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('pending_snapshot', ?)").run(snapshotId);
    })();
  }

  /** Adds a snapshot's blobs (hex) and shard digests to its sets (inside the caller's transaction). */
  private putSnapshotSets(snapshotId: string, blobs: Iterable<string>, shards: Iterable<Buffer>): void {
    const put = this.db.prepare('INSERT OR IGNORE INTO snapshot_blobs (snapshot, blob) VALUES (?, ?)');
    for (const b of blobs) put.run(snapshotId, hashBytes(b));
    const putShard = this.db.prepare('INSERT OR IGNORE INTO snapshot_shards (snapshot, digest) VALUES (?, ?)');
    for (const d of shards) putShard.run(snapshotId, d);
  }

  /**
   * Where chunk `id` can be reused from in this run, or undefined (then upload it). Only
   * locations in the base snapshot's blobs or in blobs of this run count (see the top).
   * @throws VaultikError when no run is in progress.
   */
  findChunk(id: Buffer): ChunkLocation | undefined {
    this.requireRun();
    if (this.prefetched !== undefined && this.prefetched.id.equals(id)) return { ...this.prefetched.loc };
    const r = this.stmts.findChunk.get(id) as Row | undefined;
    return r ? rowToLocation(r) : undefined;
  }

  /**
   * Whether the chunks in blob `hash` (32 bytes) may be referenced in this run: a blob of the
   * base snapshot, adopted, or uploaded in this run. A file whose one chunk lies in such a blob
   * (CachedFile.blob0) is usable without looking the chunk up.
   */
  isUsableBlob(hash: Buffer): boolean {
    return this.usableBlobs.has(hash.toString('latin1'));
  }

  /**
   * A stored shard whose rows have this digest (src/backup/shards.ts), when a run may reuse it:
   * one of the base snapshot's, or one this run uploaded.
   * @throws VaultikError when no run is in progress.
   */
  findShard(digest: Buffer): CachedShard | undefined {
    this.requireRun();
    const r = this.stmts.findShard.get(digest) as Row | undefined;
    if (!r) return undefined;
    const data = r.data_blobs as Buffer;
    const blobs: string[] = [];
    for (let i = 0; i + 32 <= data.length; i += 32) blobs.push(data.subarray(i, i + 32).toString('hex'));
    return {
      ref: {
        firstPath: r.first_path as Buffer,
        lastPath: r.last_path as Buffer,
        hash: (r.blob as Buffer).toString('hex'),
        size: r.size as number,
        entryCount: r.entry_count as number,
        fileCount: r.file_count as number,
        dirCount: r.dir_count as number,
        symlinkCount: r.symlink_count as number,
        otherCount: r.other_count as number,
      },
      blobs,
    };
  }

  /**
   * Records a shard this run uploaded (call after the store confirmed the put), with the digest
   * of its rows and the data blobs it references (hex). Offered by findShard from now on.
   * @throws VaultikError when no run is in progress.
   */
  recordShard(digest: Buffer, ref: ShardRef, blobs: readonly string[]): void {
    this.requireRun();
    this.wrote(1);
    this.stmts.putShard.run(
      digest,
      hashBytes(ref.hash),
      ref.size,
      ref.firstPath,
      ref.lastPath,
      ref.entryCount,
      ref.fileCount,
      ref.dirCount,
      ref.symlinkCount,
      ref.otherCount,
      Buffer.concat(blobs.map(hashBytes)),
    );
  }

  /**
   * Records a blob and the chunks it holds, in one transaction, committed before returning.
   * Call it only after the blob's upload succeeded: from then on findChunk offers its chunks.
   * @throws VaultikError when no run is in progress or an argument is malformed.
   */
  recordBlob(hash: string, size: number, chunks: readonly ChunkLocation[]): void {
    const run = this.requireRun();
    const h = hashBytes(hash);
    if (!Number.isSafeInteger(size) || size <= 0) throw new VaultikError(`state cache: invalid blob size ${size}`);
    for (const c of chunks) {
      if (c.blob !== hash) throw new VaultikError(`state cache: chunk ${c.id.toString('hex')} is in blob ${c.blob}, not ${hash}`);
      if (c.id.length !== 32) throw new VaultikError('state cache: chunk id must be 32 bytes');
    }
    // Part of the open batch, then committed at once: the blob is durable as soon as possible.
    if (!this.db.inTransaction) this.db.exec('BEGIN');
    try {
      this.stmts.putBlob.run(h, size, this.now(), run);
      for (const c of chunks) this.stmts.putChunk.run(c.id, h, c.offset, c.length, c.plainLength);
      this.usableBlobs.add(h.toString('latin1'));
    } catch (err) {
      this.db.exec('ROLLBACK');
      this.pending = 0;
      throw err;
    }
    this.flush();
  }

  /**
   * Records the backed-up version of a file: its stat and chunk ids, and the blob its first chunk
   * is in when known (else completeSnapshot finds it). Call it for every file
   * the snapshot will contain, unchanged ones included (completeSnapshot forgets files that were
   * not recorded in the run). Batched: committed with the next batch.
   * @throws VaultikError when no run is in progress or a chunk id is not 32 bytes.
   */
  recordFile(path: Buffer, stat: Omit<FileStat, 'nlink'>, chunkIds: readonly Buffer[], firstBlob?: string): void {
    const run = this.requireRun();
    for (const id of chunkIds) if (id.length !== 32) throw new VaultikError('state cache: chunk id must be 32 bytes');
    this.wrote(1);
    const blob0 = chunkIds.length === 0 ? EMPTY : firstBlob === undefined ? null : hashBytes(firstBlob);
    this.stmts.putFile.run(path, stat.size, stat.mtimeNs, stat.ctimeNs, toI64(stat.ino), toI64(stat.dev), stat.mode, Buffer.concat(chunkIds), run, blob0);
  }

  /**
   * Marks the run's snapshot as completed: call it only after its metadata object was
   * uploaded. `blobs` (hex hashes) are every blob the snapshot references; they become the
   * dedup base. Drops what is no longer usable: other snapshots' blob sets, blobs outside the
   * new base, their chunks, and files not recorded in this run. Ends the run.
   * @throws VaultikError when no run is in progress.
   */
  completeSnapshot(snapshotId: string, blobs: Iterable<string>, shards: Iterable<Buffer> = []): void {
    const run = this.requireRun();
    this.flush();
    this.db.transaction(() => {
      this.db.prepare('INSERT OR REPLACE INTO snapshots (id, completed_at, run) VALUES (?, ?, ?)').run(snapshotId, this.now(), run);
      this.db.prepare('DELETE FROM snapshot_blobs WHERE snapshot != ?').run(snapshotId);
      this.db.prepare('DELETE FROM snapshot_shards WHERE snapshot != ?').run(snapshotId);
      this.putSnapshotSets(snapshotId, blobs, shards);
      this.db.prepare('DELETE FROM shards WHERE digest NOT IN (SELECT digest FROM snapshot_shards WHERE snapshot = ?)').run(snapshotId);
      this.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('base_snapshot', ?)").run(snapshotId);
      this.db.prepare("DELETE FROM meta WHERE key = 'pending_snapshot'").run();
      const dropped = this.db.prepare('DELETE FROM blobs WHERE hash NOT IN (SELECT blob FROM snapshot_blobs WHERE snapshot = ?)').run(snapshotId).changes;
      if (dropped > 0) this.db.exec(DROP_ORPHAN_CHUNKS);
      // The blob of each new file's first chunk, known now that every blob is recorded (the
      // partial index holds exactly these rows); a first chunk whose blob was dropped stays NULL.
      this.db.exec(`UPDATE files SET blob0 = (SELECT c.blob FROM chunks c WHERE c.id = substr(files.chunks, 1, 32) LIMIT 1)
                    WHERE blob0 IS NULL`);
      // After a complete ordered walk, unchanged files kept their older rows; the gone ones
      // were forgotten already.
      if (!this.orderedDone) this.db.prepare('DELETE FROM files WHERE run != ?').run(run);
    })();
    this.endRun();
    this.base = snapshotId;
  }

  private endRun(): void {
    this.usableBlobs = new Set();
    this.ordered?.close();
    this.ordered = undefined;
    this.orderedDone = false;
    this.run = undefined;
    this.prefetched = undefined;
  }

  /**
   * Ends the run without a snapshot (interrupted, failed). Everything recorded stays: the
   * run's blobs are adopted by a run that begins within resumeWindowMs.
   */
  abortRun(): void {
    this.flush();
    this.endRun();
  }

  /** Commits pending writes and closes. Idempotent. */
  close(): void {
    if (!this.db.open) return;
    this.ordered?.close();
    this.flush();
    this.db.close();
  }
}

/** Creates the cache file mode 0600 (or tightens an existing one, and its -wal/-shm) before SQLite opens it. */
function restrictMode(path: string): void {
  closeSync(openSync(path, 'a', 0o600));
  for (const p of [path, `${path}-wal`, `${path}-shm`]) {
    try {
      if (existsSync(p)) chmodSync(p, 0o600);
    } catch {
      // Not ours to change (another owner): SQLite still opens it; the directory is 0700.
    }
  }
}

function openAndCheck(path: string): Database.Database {
  restrictMode(path);
  const db = new Database(path, { timeout: 5000 });
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    // better-sqlite3's default page cache is 16 MB per connection, filled as the cache grows:
    // point lookups and batched writes need far less (RSS growth with the data, bench/memory.sh).
    db.pragma(`cache_size = -${CACHE_PAGE_CACHE_KIB}`);
    // A quick read of the schema surfaces "file is not a database" now, not mid-backup.
    db.prepare('SELECT COUNT(*) FROM sqlite_master').get();
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

function isCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT' || code === 'SQLITE_CANTOPEN_DIRTYWAL';
}
