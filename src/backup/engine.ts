/**
 * The backup engine: one run from the config's source dirs to a snapshot in the store.
 *
 *   lock → open the state cache → walk (per source dir, merged in path order)
 *   → unchanged stat: chunk list from the cache, file not opened
 *   → new or changed file: read → FastCDC (in a worker for large files) → SHA-256 + zstd in
 *     worker threads (small files' chunks in batches)
 *   → dedup (state cache + chunks packed earlier in this run) → pack frames into blobs
 *   → encrypt → upload (several at once, while the next blob is packed) → record in the cache
 *   → snapshot metadata DB → manifest, then the encrypted metadata, last → complete in the cache.
 *
 * Contracts:
 * - The store is a StoreWriter: only `put` can be called, nothing is read, listed or deleted
 *   remotely, and no private key is needed or looked for (docs/DESIGN.md promise 1).
 * - Memory is bounded independently of file count, file size and blob_size_limit: chunk bytes
 *   between reading and packing are held under a byte budget (ByteBudget; a few times the chunk
 *   size), blob ciphertext beyond a threshold is spooled to disk (ciphertext only), at most
 *   `maxUploads` blobs are sealed and not yet uploaded, and the walk holds only the current path.
 *   What grows with the data goes to SQLite: the metadata DB being built and the state cache.
 * - Files are pipelined: up to `smallReaders` small files are read at once and a large file is
 *   streamed meanwhile; chunks of many files are in flight in the worker pool together, and a
 *   file's entry is written once its last chunk has been placed.
 * - One file never fails the run: a file that vanishes or cannot be read is reported as a
 *   warning and left out; the snapshot is written and `warnings` counts them. A file that changes
 *   while it is read is read again, up to READ_ATTEMPTS reads; when every read saw a change, the
 *   last read is stored with a 'changed' warning (`filesChangedWhileRead`). A dropped read's
 *   chunks stay packed (for dedup) and are never referenced for the file.
 * - Aborting `signal` (SIGINT/SIGTERM) stops the run: no snapshot is written, uploads in flight
 *   are cancelled, blobs whose upload had completed stay recorded in the cache, so the next run
 *   reuses them; the cache stays consistent; runBackup rejects with an INTERRUPTED VaultikError.
 * - runBackup may be called again and again in one process (a daemon): it keeps no global state,
 *   and a caller may lend it a long-lived ChunkPool.
 */
import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { chunkBuffer, chunkStream, chunkerOptions, type ChunkerOptions } from '../chunker/index.js';
import { ChunkPool } from '../compress/pool.js';
import type { Config } from '../config/index.js';
import { parseRecipient, type Recipient } from '../crypto/index.js';
import { ExitCode, UsageError, VaultikError, errorMessage } from '../errors.js';
import { SNAPSHOT_NAMESPACE, SignError, loadSigningKey, signMessage, snapshotStatement, type SigningKey } from '../sign/index.js';
import { DEFAULT_READ_SIZE, SourceFileError, displayPath, openSourceFile, sameStat, type ChangeReason, type FileStat, type SourceFile, type WalkWarning } from '../fs/index.js';
import { jsonPath } from '../fs/paths.js';
import { StateCache, acquireLock, lockPathFor, storeIdentity, type CachedFile, type StateCacheOptions } from '../cache/index.js';
import { LocationSpool, makeSnapshotId, parseSnapshotId, publishSnapshot, writeRoot, type ChunkLocation, type Entry, type ShardLimits } from '../snapshot/index.js';
import { ShardAssembler, type ShardSlot } from './shards.js';
import type { StoreWriter } from '../storage/types.js';
import { BlobSizes } from './blobSizes.js';
import { emptyProgress, type BackupEvent, type BackupProgress, type BackupSummary, type BackupWarning } from './events.js';
import { BlobPacker, type SealedBlob } from './packer.js';
import { readSmallFileSync } from './smallFile.js';
import { AsyncQueue } from './queue.js';
import { scanSources, selfPaths, type ScanOptions, type SourceEntry } from './sources.js';
import { killPoint, killableStorage, testShardLimits } from './testHooks.js';
import { ByteBudget, TaskWindow } from '../util/concurrency.js';

/** Knobs with sensible defaults; tests and benchmarks turn them. */
export interface BackupTuning {
  /**
   * Chunk bytes held between reading and packing (default max(32 MiB, 4 × chunk_size): room for
   * the largest chunk being cut plus work for every core; with the 10 MB default, 40 MB instead of
   * 64 MiB lowered the peak RSS of a 2 GB initial backup by ~30 MiB at the same speed, 24 MiB
   * made it ~2 s slower).
   */
  budgetBytes?: number;
  /**
   * Blob uploads in flight (default 4, fewer for big blobs: as many as fit in 2 GiB, at least 1).
   * Each sealed blob waiting for its upload sits in the spool directory (ciphertext), so with the
   * default 10 GB blob_size_limit one upload runs while the next blob is packed: about two blobs
   * of local disk next to the state cache.
   */
  maxUploads?: number;
  /** Files up to this size are read in one go, several at once (default 1 MiB). */
  smallFileSize?: number;
  /** Small files read at once by the asynchronous readers (default 16). */
  smallReaders?: number;
  /** Read small files with synchronous calls while they come from the page cache (default true). */
  syncSmallReads?: boolean;
  /** Blob ciphertext kept in memory before spooling to disk (default 16 MiB). */
  blobMemoryThreshold?: number;
  /** The run's first blob is sealed at this size, to find out early whether the store takes
   *  writes (default 8 MiB; never above blob_size_limit). */
  firstBlobLimit?: number;
  /** Blobs are sealed at this size (default 256 MiB; never above blob_size_limit). See DEFAULT_PACK_TARGET. */
  packTarget?: number;
}

/**
 * blob_size_limit is a limit, not a target: with the default 10 GB, a first backup of 2 GB put
 * all new data into one blob whose upload (≈3 s to a local store: read, hash, write, fsync) ran
 * alone after the last chunk. Sealing at 256 MiB lets uploads overlap packing; the cost is more,
 * still large, objects. Restoring one file still reads only its segments.
 */
export const DEFAULT_PACK_TARGET = 256 * 1024 * 1024;

export interface BackupDeps {
  /** The store; put-only (the caller closes it). */
  storage: StoreWriter;
  /** Abort to stop the run cleanly (no snapshot). */
  signal?: AbortSignal;
  /** Receives every event, synchronously; must not throw. */
  onEvent?: (event: BackupEvent) => void;
  /** Clock for the snapshot id and times (default: new Date()). */
  now?: () => Date;
  /** Worker threads for hashing and compression (default: os.availableParallelism()). */
  workers?: number;
  /** A pool to use instead of starting one (a daemon keeps one across runs); not closed here. */
  pool?: ChunkPool;
  /** Minimum interval between 'progress' events in ms (default 250; 0 = only at the end). */
  progressIntervalMs?: number;
  cache?: StateCacheOptions;
  tuning?: BackupTuning;
  /**
   * Where the entries come from (default: scanSources, a full walk of config.sourceDirs). A
   * daemon can pass a walk limited to dirty paths; it must keep scanSources' contract (path
   * order, each directory before its contents, hard-link groups, self paths left out).
   */
  scan?: (config: Config, options: ScanOptions) => AsyncIterable<SourceEntry>;
  /** Where shards are cut (default: snapshot/shardCut.ts); tests make them small. */
  shardLimits?: ShardLimits;
  /**
   * The key of `config.signingKey`, already loaded (a daemon loads it once); runBackup loads it
   * itself when this is undefined and the config names one.
   */
  signingKey?: SigningKey;
  /**
   * Called synchronously after each read of a file's bytes, before the file is checked for a
   * change during that read; `read` counts the reads of this file in the run, from 1. Must not
   * throw. The CLI never sets it; tests change files here to make "changed while read" exact.
   */
  onFileRead?: (absPath: Buffer, read: number) => void;
}

const DEFAULT_SMALL_FILE = DEFAULT_READ_SIZE;

/**
 * Reads of a file that changes while it is read, in all. A file written in one burst (an
 * editor's save, a log rotation) is stable on the second read; a third covers a burst that
 * straddled two reads. A file that changes under three reads is being written all the time (a
 * busy log, a database): each further read costs a full read of it and is no more likely to
 * give a consistent copy, so the third read is stored as it is, with a 'changed' warning (restic
 * and borg store their one read and warn). Bounded, so such a file never stalls the run.
 */
export const READ_ATTEMPTS = 3;

/**
 * The ctime recorded in the state cache for a file stored from a read that saw it change. No
 * file has it, so the next run reads the file again whatever its stat says (a change within one
 * timestamp tick leaves size, mtime and ctime alike) and replaces the possibly torn copy.
 */
const TORN_CTIME = -1n;
/** Items (chunks, file ends) between readers and the packer, whatever their size. */
const WINDOW_ITEMS = 4096;

/** vaultik's version, written into the snapshot row. */
function toolVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

function interrupted(reason: unknown): VaultikError {
  if (reason instanceof VaultikError && reason.exitCode === ExitCode.INTERRUPTED) return reason;
  return new VaultikError(`interrupted${reason instanceof Error && reason.message ? ` (${reason.message})` : ''}`, ExitCode.INTERRUPTED, { cause: reason });
}

/**
 * Runs one backup of `config` into `deps.storage` and resolves to its summary. A summary with
 * `warnings > 0` means the snapshot was written but some paths were left out (exit code 3).
 * @throws VaultikError LOCKED when another backup holds the cache lock; INTERRUPTED when
 *   `deps.signal` was aborted (no snapshot written); StorageError when the store fails;
 *   UsageError for an unusable config (a source dir inside another, a bad recipient).
 */
export async function runBackup(config: Config, deps: BackupDeps): Promise<BackupSummary> {
  if (deps.signal?.aborted) throw interrupted(deps.signal.reason);
  const recipients = config.recipients.map((r) => {
    try {
      return parseRecipient(r);
    } catch (err) {
      throw new UsageError(`invalid recipient ${r}: ${errorMessage(err)}`, { cause: err });
    }
  });
  // Before the lock and any upload: a key that cannot sign fails the run with nothing written.
  const signingKey = deps.signingKey ?? (config.signingKey !== undefined ? await loadBackupSigningKey(config) : undefined);
  let lock: ReturnType<typeof acquireLock>;
  try {
    lock = acquireLock(lockPathFor(config.indexPath));
  } catch (err) {
    throw diskFull(err, config.indexPath) ?? err;
  }
  let cache: StateCache | undefined;
  try {
    cache = StateCache.open(
      config.indexPath,
      // The config's store, not deps.storage.description: that leaves out the endpoint.
      storeIdentity({ spec: config.storage, indexPrefix: config.indexPrefix, recipients: config.recipients }),
      deps.cache,
    );
    if (cache.resetReason !== undefined) {
      deps.onEvent?.({ type: 'notice', message: `state cache reset: ${cache.resetReason}; this backup uploads everything again` });
    }
    return await new BackupRun(config, { ...deps, ...(signingKey ? { signingKey } : {}) }, cache, recipients).execute();
  } catch (err) {
    throw diskFull(err, config.indexPath) ?? err;
  } finally {
    cache?.close();
    lock.release();
  }
}

/**
 * Loads `config.signingKey` (docs/CONFIG.md `signing_key`).
 * @throws UsageError (exit 2) naming the config key, the file and what is wrong with it; never
 *   the key's bytes.
 */
export async function loadBackupSigningKey(config: Pick<Config, 'signingKey' | 'sourcePath'>): Promise<SigningKey> {
  try {
    return await loadSigningKey(config.signingKey!);
  } catch (err) {
    if (err instanceof SignError) throw new UsageError(`${config.sourcePath}: signing_key: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Signs a snapshot's statement (docs/FORMAT.md "Signatures") for publishSnapshot. */
export function snapshotSigner(key: SigningKey): (names: { snapshot: string; root: string; manifest: string }) => Buffer {
  return (names) => Buffer.from(signMessage(key, SNAPSHOT_NAMESPACE, Buffer.from(snapshotStatement(names))));
}

/**
 * A full disk under the state cache or the work directory (SQLITE_FULL, ENOSPC) as a clear
 * error naming where room is needed; undefined for any other error.
 */
function diskFull(err: unknown, indexPath: string): VaultikError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (code !== 'SQLITE_FULL' && code !== 'ENOSPC') return undefined;
  return new VaultikError(
    `no space left on the disk of the state cache (${dirname(indexPath)}): ${errorMessage(err)}; no snapshot was written, the next run resumes once there is room`,
    ExitCode.FAILURE,
    { cause: err },
  );
}

/** A file to read, from the walk to its entry in the snapshot. */
interface FileJob {
  walked: SourceEntry;
  /** The cache's record of the previous version, if any. */
  cached: CachedFile | undefined;
  /** Hash chunks on the main thread and compress only new ones (a changed file: expect dups). */
  hashFirst: boolean;
  /** Reads of the file finished so far (more than one when it changed while read). */
  reads: number;
  /** Chunk ids, in file order, as they are placed. */
  ids: Buffer[];
  /** Locations of the chunks found in the state cache (the others are packed in this run). */
  locations: ChunkLocation[];
  /** Its place in the snapshot's shards. */
  slot: ShardSlot;
}

/** What a worker (or the dedup check in hash-first mode) made of a chunk. */
interface ChunkOutcome {
  id: Buffer;
  plainLength: number;
  frame?: Buffer;
  /** Already known where it lives (hash-first dedup). */
  known?: ChunkLocation | 'packed';
  /** Counted in `inflight` (hash-first mode, sent for compression). */
  counted?: boolean;
}

/** A file's last read: the stat at its open, the bytes it got, and whether the file changed meanwhile. */
interface ReadOutcome {
  ok: true;
  stat: FileStat;
  bytesRead: number;
  changed: boolean;
  reasons: ChangeReason[];
}

type FileOutcome = ReadOutcome | { ok: false; error: SourceFileError };

type WindowItem =
  | { kind: 'chunk'; job: FileJob; result: Promise<ChunkOutcome>; bytes: number }
  /** The file is read again: forget the chunks placed for it so far. */
  | { kind: 'restart'; job: FileJob }
  | { kind: 'end'; job: FileJob; outcome: FileOutcome };

/** State of a hard-link group while its paths come by. */
interface LinkGroup {
  /** The leader's recorded entry; undefined while it is being read; null when it was left out. */
  leader: Entry | null | undefined;
  /** The leader's chunk ids and the cached locations among them (a follower may carry them). */
  chunks: readonly Buffer[];
  locations: readonly ChunkLocation[];
  waiting: { walked: SourceEntry; slot: ShardSlot }[];
  /** Links not seen yet. */
  remaining: number;
}

const noop = (): void => undefined;
const NO_LOCATIONS: readonly ChunkLocation[] = [];

class BackupRun {
  private readonly progress: BackupProgress = emptyProgress();
  private readonly controller = new AbortController();
  private readonly signal = this.controller.signal;
  private failure: { err: unknown } | undefined;
  private readonly startTime: Date;
  private readonly snapshotId: string;
  private readonly workDir: string;
  private readonly chunker: ChunkerOptions;
  private readonly tuning: Required<BackupTuning>;
  private readonly budget: ByteBudget;
  private readonly window: AsyncQueue<WindowItem>;
  private readonly largeQueue: AsyncQueue<FileJob>;
  /** Small files read by the asynchronous readers, `smallReaders` at once. */
  private readonly smallReads: TaskWindow;
  private readonly syncReads = new SyncReadGovernor();
  /** Chunk ids sent for compression in hash-first mode and not placed yet (latin1 keys). */
  private readonly inflight = new Map<string, number>();
  private readonly links = new Map<number, LinkGroup>();
  private readonly blobSizes: BlobSizes;
  private shards: ShardAssembler | undefined;
  /** Locations of the chunks packed in this run, for the shards that use them. */
  private spool: LocationSpool | undefined;
  private packer: BlobPacker | undefined;
  private pool: ChunkPool | undefined;
  private walkDone = false;
  private lastProgress = 0;
  private progressTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: Config,
    private readonly deps: BackupDeps,
    private readonly cache: StateCache,
    private readonly recipients: Recipient[],
  ) {
    // Every reader, queue wait and upload listens to the run's signal: dozens at once is normal.
    setMaxListeners(0, this.signal);
    this.startTime = (deps.now ?? (() => new Date()))();
    this.snapshotId = this.uniqueSnapshotId();
    this.workDir = `${config.indexPath}.work`;
    this.chunker = chunkerOptions(config.chunkSize);
    const t = deps.tuning ?? {};
    this.tuning = {
      budgetBytes: t.budgetBytes ?? Math.max(32 * 1024 * 1024, 4 * config.chunkSize),
      packTarget: Math.min(config.blobSizeLimit, t.packTarget ?? DEFAULT_PACK_TARGET),
      maxUploads: t.maxUploads ?? Math.max(1, Math.min(4, Math.floor((2 * 1024 ** 3) / Math.min(config.blobSizeLimit, t.packTarget ?? DEFAULT_PACK_TARGET)))),
      smallFileSize: t.smallFileSize ?? DEFAULT_SMALL_FILE,
      smallReaders: t.smallReaders ?? 16,
      syncSmallReads: t.syncSmallReads ?? true,
      blobMemoryThreshold: t.blobMemoryThreshold ?? 16 * 1024 * 1024,
      firstBlobLimit: t.firstBlobLimit ?? 8 * 1024 * 1024,
    };
    this.budget = new ByteBudget(this.tuning.budgetBytes);
    this.window = new AsyncQueue<WindowItem>(WINDOW_ITEMS, this.signal);
    this.largeQueue = new AsyncQueue<FileJob>(2, this.signal);
    this.smallReads = new TaskWindow(this.tuning.smallReaders, (err) => this.fail(err));
    this.blobSizes = new BlobSizes(cache);
  }

  /** `<host>-<time>`, strictly after the cache's latest snapshot (ids name immutable objects). */
  private uniqueSnapshotId(): string {
    let time = this.startTime;
    const base = this.cache.baseSnapshot();
    if (base !== undefined) {
      const prev = parseSnapshotId(base);
      if (prev.host === this.config.hostname && prev.time.getTime() >= time.getTime()) time = new Date(prev.time.getTime() + 1);
    }
    return makeSnapshotId(this.config.hostname, time);
  }

  private emit(event: BackupEvent): void {
    this.deps.onEvent?.(event);
  }

  private warn(w: BackupWarning): void {
    this.progress.warnings++;
    this.emit({ type: 'warning', ...w });
  }

  private emitProgress(force = false): void {
    const now = Date.now();
    const interval = this.deps.progressIntervalMs ?? 250;
    if (!force && (interval <= 0 || now - this.lastProgress < interval)) return;
    this.lastProgress = now;
    this.emit({ type: 'progress', elapsedMs: now - this.startTime.getTime(), walkDone: this.walkDone, ...this.progress });
  }

  /** Records the first failure and stops everything else. */
  private fail(err: unknown): void {
    if (this.failure) return;
    this.failure = { err };
    if (!this.signal.aborted) this.controller.abort(err);
  }

  async execute(): Promise<BackupSummary> {
    const { config, deps, cache } = this;
    const external = deps.signal;
    const onExternalAbort = (): void => this.fail(interrupted(external!.reason));
    external?.addEventListener('abort', onExternalAbort, { once: true });
    cache.beginRun(this.snapshotId);
    let runEnded = false;
    const ownPool = deps.pool === undefined;
    try {
      await this.checkSourcesExist();
      await rm(this.workDir, { recursive: true, force: true });
      await mkdir(this.workDir, { recursive: true, mode: 0o700 });
      this.spool = new LocationSpool(join(this.workDir, 'locations.db'));
      const limits = deps.shardLimits ?? testShardLimits(); // test-only (testHooks.ts); the default cut otherwise
      this.shards = new ShardAssembler({ workDir: this.workDir, cache, blobSizes: this.blobSizes, ...(limits ? { limits } : {}) });
      if (deps.pool && deps.pool.level !== config.compressionLevel) {
        throw new VaultikError(`chunk pool compresses at level ${deps.pool.level}, the config asks for ${config.compressionLevel}`);
      }
      this.packer = new BlobPacker({
        storage: killableStorage(deps.storage), // test-only crash points; the storage itself when unset
        recipients: this.recipients,
        blobSizeLimit: this.tuning.packTarget,
        firstBlobLimit: this.tuning.firstBlobLimit,
        spoolDir: this.workDir,
        memoryThreshold: this.tuning.blobMemoryThreshold,
        maxUploads: this.tuning.maxUploads,
        signal: this.signal,
        onSealed: (b) => this.onSealed(b),
        onUploaded: (b) => this.onUploaded(b),
        onFailure: (err) => this.fail(err),
      });
      this.emit({ type: 'start', snapshotId: this.snapshotId, store: deps.storage.description, sourceDirs: [...config.sourceDirs], time: this.startTime.toISOString() });
      this.emit({ type: 'phase', phase: 'scan' });
      const interval = deps.progressIntervalMs ?? 250;
      if (interval > 0) {
        this.progressTimer = setInterval(() => this.emitProgress(), interval);
        this.progressTimer.unref();
      }

      await this.scanAndPack();
      this.emit({ type: 'phase', phase: 'flush' });
      await this.packer.flush();
      this.signal.throwIfAborted();
      killPoint('blobs-done'); // test-only (testHooks.ts, installed by test entries only); no-op otherwise

      this.emit({ type: 'phase', phase: 'metadata' });
      this.spool.flush();
      const assembled = await this.shards.finish(killableStorage(deps.storage, true), this.recipients, this.spool.dbPath, this.signal);
      killPoint('shards-done'); // test-only
      const endTime = (deps.now ?? (() => new Date()))();
      const rootPath = join(this.workDir, 'root.db');
      const info = writeRoot(
        rootPath,
        {
          id: this.snapshotId,
          startTime: this.startTime,
          endTime: endTime < this.startTime ? this.startTime : endTime,
          toolVersion: toolVersion(),
          sourceDirs: [...config.sourceDirs],
          excludes: [...config.exclude],
          chunkSize: config.chunkSize,
          blobSizeLimit: config.blobSizeLimit,
          compressionLevel: config.compressionLevel,
          warnings: this.progress.warnings,
        },
        assembled,
      );
      const dataBlobs = assembled.blobs.map((b) => b.hash);
      // Should the run die between the metadata upload and completeSnapshot, the next run
      // knows which blobs and shards the possibly-published snapshot holds (cache.ts: the cache may lag).
      cache.preparePublish(this.snapshotId, dataBlobs, assembled.digests);
      const published = await publishSnapshot(killableStorage(deps.storage), {
        indexPrefix: config.indexPrefix,
        id: this.snapshotId,
        rootPath,
        blobs: [...assembled.blobs, ...assembled.shards.map((sh) => ({ hash: sh.hash, size: sh.size }))],
        recipients: this.recipients,
        signal: this.signal,
        ...(deps.signingKey ? { sign: snapshotSigner(deps.signingKey) } : {}),
      });
      killPoint('cache-commit'); // test-only
      cache.completeSnapshot(this.snapshotId, dataBlobs, assembled.digests);
      runEnded = true;
      const done = new Date();
      this.emit({ type: 'phase', phase: 'done' });
      this.emitProgress(true);
      const summary: BackupSummary = {
        ...this.progress,
        snapshotId: this.snapshotId,
        store: deps.storage.description,
        startTime: this.startTime.toISOString(),
        endTime: done.toISOString(),
        durationMs: done.getTime() - this.startTime.getTime(),
        metadataBytes: published.metadataSize + assembled.writtenBytes,
        shardsWritten: assembled.written,
        shardsReused: assembled.reused,
        snapshotBlobs: info.blobCount,
        snapshotBlobBytes: info.blobBytes,
        entries: info.fileCount + info.dirCount + info.symlinkCount + info.otherCount,
      };
      this.emit({ type: 'summary', ...summary });
      return summary;
    } catch (err) {
      this.fail(err);
      await this.packer?.abort();
      if (!runEnded) cache.abortRun();
      runEnded = true;
      const first = this.failure!.err;
      if (external?.aborted) throw interrupted(external.reason);
      throw first;
    } finally {
      external?.removeEventListener('abort', onExternalAbort);
      if (this.progressTimer) clearInterval(this.progressTimer);
      if (!runEnded) cache.abortRun();
      if (ownPool) await this.pool?.close();
      this.blobSizes.close();
      this.spool?.dispose();
      await rm(this.workDir, { recursive: true, force: true }).catch(noop);
    }
  }

  /**
   * Refuses to run when no source dir exists (an unmounted disk): the snapshot would be empty and,
   * as the next run's dedup base, would make it upload everything again. One missing dir among
   * others is only a warning (the walk reports it).
   * @throws VaultikError naming the missing dirs.
   */
  private async checkSourcesExist(): Promise<void> {
    const problems: string[] = [];
    for (const dir of this.config.sourceDirs) {
      try {
        if ((await stat(dir)).isDirectory()) return;
        problems.push(`${dir}: not a directory`);
      } catch (err) {
        problems.push(`${dir}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : errorMessage(err)}`);
      }
    }
    throw new VaultikError(`none of the source directories can be backed up (${problems.join('; ')}); no snapshot was written`);
  }

  // ---- scan: walk, unchanged detection, dispatch of reads ----

  /** Walks, reads and packs everything; resolves when every file's entry is written. */
  private async scanAndPack(): Promise<void> {
    const consumer = this.consume().catch((err: unknown) => this.fail(err));
    const lane = this.largeLane().catch((err: unknown) => this.fail(err));
    try {
      const self = selfPaths(this.config);
      const scan = this.deps.scan ?? scanSources;
      for await (const e of scan(this.config, { signal: this.signal, self, onWarning: (w) => this.walkWarning(w) })) {
        killPoint('scan'); // test-only
        await this.onEntry(e);
      }
      // Every file was looked up in walk order: the cache forgets the ones gone from the source.
      if (!this.failure) this.cache.endOrderedScan();
      this.shards!.endWalk();
      this.walkDone = true;
      await this.smallReads.settle();
      this.largeQueue.close();
      await lane;
      this.window.close();
      await consumer;
    } catch (err) {
      this.fail(err);
    }
    if (this.failure) {
      this.window.close();
      this.largeQueue.close();
      await Promise.allSettled([consumer, lane, this.smallReads.settle()]);
      throw this.failure.err;
    }
  }

  private walkWarning(w: WalkWarning): void {
    this.warn({ ...jsonPath(w.absPath), kind: w.code === 'ENOENT' ? 'vanished' : 'walk', message: w.message });
  }

  private async onEntry(e: SourceEntry): Promise<void> {
    const shards = this.shards!;
    const { entry } = e;
    const slot = shards.reserve(entry, entry.linkGroup !== undefined && e.hardLinkTo === undefined);
    switch (entry.type) {
      case 'file':
        break;
      case 'dir':
        this.progress.dirs++;
        shards.fill(slot, entry);
        return;
      case 'symlink':
        this.progress.symlinks++;
        shards.fill(slot, entry);
        return;
      default:
        this.progress.others++;
        shards.fill(slot, entry);
        return;
    }
    this.progress.files++;
    this.progress.bytesScanned += entry.size;
    if (e.hardLinkTo !== undefined) {
      this.progress.hardLinks++;
      this.onFollower(e, slot);
      return;
    }
    if (entry.linkGroup !== undefined) {
      this.links.set(entry.linkGroup, { leader: undefined, chunks: [], locations: [], waiting: [], remaining: e.stat.nlink - 1 });
    }

    const cached = this.cache.lookupInOrder(entry.path);
    const cachedLocations = cached && sameStat(cached, e.stat) ? this.usableCached(cached) : undefined;
    if (cached && cachedLocations) {
      this.progress.filesUnchanged++;
      // The cache's row already says exactly this: only the snapshot gets the entry.
      shards.fill(slot, entry, cached.chunks, cachedLocations);
      if (entry.linkGroup !== undefined) this.settleLinks(entry.linkGroup, entry, cached.chunks, cachedLocations);
      return;
    }
    if (cached) this.progress.filesChanged++;
    else this.progress.filesNew++;
    const job: FileJob = { walked: e, cached, hashFirst: cached !== undefined, reads: 0, ids: [], locations: [], slot };
    if (entry.size === 0) {
      // Nothing to read; the stat tuple in the cache catches any later write.
      this.recordFile(job, entry, [], [], e.stat);
      return;
    }
    this.progress.bytesToRead += entry.size;
    if (entry.size <= this.tuning.smallFileSize && this.tuning.syncSmallReads && this.syncReads.useSync()) {
      await this.readSmallSync(job);
    } else if (entry.size <= this.tuning.smallFileSize) {
      await this.smallReads.add(() => this.readSmall(job), this.signal);
    } else {
      await this.largeQueue.push(job);
    }
  }

  /**
   * Whether an unchanged file's chunks can be referenced in this run, with the locations found
   * (see usable). A file of one chunk in a usable blob needs no lookup at all: its location is
   * looked up only if its shard is written (ShardAssembler), and most shards are reused.
   */
  private usableCached(cached: CachedFile): readonly ChunkLocation[] | undefined {
    if (cached.chunks.length === 1 && cached.blob0 !== undefined && this.cache.isUsableBlob(cached.blob0)) return NO_LOCATIONS;
    return this.usable(cached.chunks);
  }

  /**
   * The cached locations of a file's chunks when every one can be referenced in this run (in a
   * blob the cache offers for dedup, or packed earlier in this run), else undefined.
   */
  private usable(ids: readonly Buffer[]): ChunkLocation[] | undefined {
    const locs: ChunkLocation[] = [];
    for (const id of ids) {
      if (this.packer!.has(id.toString('latin1'))) continue;
      const loc = this.cache.findChunk(id);
      if (!loc) return undefined;
      locs.push(loc);
    }
    return locs;
  }

  /** Settles a read file's entry and its cache record, and releases hard links waiting for it. */
  private recordFile(job: FileJob, entry: Entry, ids: Buffer[], locations: readonly ChunkLocation[], stat: FileStat | CachedFile): void {
    this.shards!.fill(job.slot, entry, ids, locations);
    const first = ids[0];
    this.cache.recordFile(entry.path, stat, ids, first && locations.find((l) => l.id.equals(first))?.blob);
    if (entry.linkGroup !== undefined) this.settleLinks(entry.linkGroup, entry, ids, locations);
  }

  private onFollower(e: SourceEntry, slot: ShardSlot): void {
    const groupId = e.entry.linkGroup!;
    const group = this.links.get(groupId);
    if (!group) {
      // Its leader was not seen in this walk (cannot happen in path order): keep it as a plain file.
      throw new VaultikError(`hard link ${displayPath(e.absPath)}: its first path was not walked`);
    }
    group.remaining--;
    if (group.leader === undefined) group.waiting.push({ walked: e, slot });
    else this.addFollower(group, e, slot);
    if (group.remaining <= 0 && group.leader !== undefined) this.endGroup(groupId);
  }

  private endGroup(groupId: number): void {
    this.links.delete(groupId);
    this.shards!.endGroup(groupId);
  }

  private addFollower(group: LinkGroup, e: SourceEntry, slot: ShardSlot): void {
    const leader = group.leader;
    if (!leader) {
      this.shards!.skip(slot);
      this.warn({ ...jsonPath(e.absPath), kind: 'skipped', message: `hard link ${displayPath(e.absPath)} left out: its first path could not be backed up` });
      return;
    }
    // One inode: the follower carries the leader's recorded size, time and mode (the format
    // requires equal sizes in a group, and the leader's are those of the bytes stored). The
    // group's chunks go with it: in a shard without the leader, it carries the content.
    this.shards!.fill(
      slot,
      { ...e.entry, size: leader.size, mtimeNs: leader.mtimeNs, mode: leader.mode, uid: leader.uid, gid: leader.gid },
      group.chunks,
      group.locations,
    );
  }

  private settleLinks(groupId: number, leader: Entry | null, chunks: readonly Buffer[] = [], locations: readonly ChunkLocation[] = []): void {
    const group = this.links.get(groupId);
    if (!group) return;
    group.leader = leader;
    group.chunks = chunks;
    group.locations = locations;
    for (const w of group.waiting.splice(0)) this.addFollower(group, w.walked, w.slot);
    if (group.remaining <= 0) this.endGroup(groupId);
  }

  // ---- reading ----

  /**
   * Reads a small file with synchronous calls (see smallFile.ts) and queues its chunks. Times
   * itself: reads that take long mean a cold disk, and the engine then switches to the
   * asynchronous readers for a while so the event loop keeps running. A read that saw the file
   * change is dropped and the file read again (readAgain).
   */
  private async readSmallSync(job: FileJob): Promise<void> {
    const { walked } = job;
    for (;;) {
      const started = performance.now();
      let read;
      try {
        read = readSmallFileSync(walked.absPath, walked.stat, this.tuning.smallFileSize, this.afterRead(job));
      } catch (err) {
        return await this.endWithError(job, err);
      } finally {
        this.syncReads.record(performance.now() - started);
      }
      if (read === 'too-big') {
        await this.largeQueue.push(job);
        return;
      }
      if (job.reads++ === 0) this.progress.filesRead++;
      this.progress.bytesRead += read.data.length;
      if (read.changed && this.readAgain(job, read.data.length)) continue;
      await this.budget.acquire(read.data.length, 0, this.signal);
      await this.queueWhole(job, read.data, { ok: true, stat: read.stat, bytesRead: read.data.length, changed: read.changed, reasons: read.reasons });
      return;
    }
  }

  /**
   * Reads a small file in one go with the asynchronous reader and queues its chunks; a read that
   * saw the file change is dropped and the file read again (readAgain).
   */
  private async readSmall(job: FileJob): Promise<void> {
    const { walked } = job;
    for (;;) {
      let file: SourceFile;
      try {
        file = await openSourceFile(walked.absPath, walked.stat, { signal: this.signal, readSize: Math.max(1, walked.stat.size) });
      } catch (err) {
        return await this.endWithError(job, err);
      }
      let reserved = 0;
      try {
        const size = file.stat.size;
        if (size > this.tuning.smallFileSize) {
          // It grew since the walk: stream it like any large file (the lane is open until every
          // small read is done).
          await file.close();
          await this.largeQueue.push(job);
          return;
        }
        await this.budget.acquire(size, 0, this.signal);
        reserved = size;
        if (job.reads === 0) this.progress.filesRead++;
        const parts: Buffer[] = [];
        for await (const b of file.chunks()) {
          parts.push(b);
          this.progress.bytesRead += b.length;
        }
        this.afterRead(job)?.();
        const report = await file.finish();
        job.reads++;
        if (report.changed && this.readAgain(job, report.bytesRead)) {
          this.budget.release(reserved);
          reserved = 0;
          continue; // the finally block closes this descriptor first
        }
        const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
        // Budget: trade the reservation for exactly what was read.
        this.budget.release(reserved - data.length);
        reserved = 0;
        await this.queueWhole(job, data, { ok: true, stat: file.stat, bytesRead: data.length, changed: report.changed, reasons: report.reasons });
        return;
      } catch (err) {
        this.budget.release(reserved);
        return await this.endWithError(job, err);
      } finally {
        await file.close().catch(noop);
      }
    }
  }

  /**
   * After a read of `job` that saw its file change: whether to read it again, that is whether it
   * has been read fewer than READ_ATTEMPTS times. The bytes read again are added to the work.
   */
  private readAgain(job: FileJob, bytes: number): boolean {
    if (job.reads >= READ_ATTEMPTS) return false;
    if (job.reads === 1) this.progress.filesReread++;
    this.progress.bytesToRead += bytes;
    return true;
  }

  /** Cuts a whole file's bytes (held under the budget) into chunks and queues them and the file's end. */
  private async queueWhole(job: FileJob, data: Buffer, outcome: ReadOutcome): Promise<void> {
    let unqueued = data.length;
    try {
      let pos = 0;
      for (const n of chunkBuffer(data, this.chunker)) {
        unqueued -= n;
        await this.pushChunk(job, data.subarray(pos, pos + n));
        pos += n;
      }
    } finally {
      this.budget.release(unqueued);
    }
    await this.window.push({ kind: 'end', job, outcome });
  }

  /** Streams large files one after the other (sequential reads suit disks; CPU work is parallel). */
  private async largeLane(): Promise<void> {
    for (;;) {
      const job = await this.largeQueue.take();
      if (!job) return;
      await this.readLarge(job);
    }
  }

  /**
   * Streams a large file, and again while its reads see it change (readAgain). Its chunks are
   * queued as they are cut, before the read is known to be good: a dropped read is followed by a
   * 'restart' item, which makes the consumer forget the chunks placed for the file so far. Those
   * stay packed (the next read usually finds most of them again: it hashes first, so they are
   * not compressed twice) and the snapshot never references them for this file.
   */
  private async readLarge(job: FileJob): Promise<void> {
    for (;;) {
      const outcome = await this.readLargeOnce(job);
      if (outcome === undefined) return;
      if (outcome.changed && this.readAgain(job, outcome.bytesRead)) {
        job.hashFirst = true;
        await this.window.push({ kind: 'restart', job });
        continue;
      }
      await this.window.push({ kind: 'end', job, outcome });
      return;
    }
  }

  /** One read of a large file, its chunks queued; undefined when it failed (its end is queued). */
  private async readLargeOnce(job: FileJob): Promise<ReadOutcome | undefined> {
    const { walked } = job;
    let file: SourceFile;
    try {
      file = await openSourceFile(walked.absPath, walked.stat, { signal: this.signal, readSize: walked.stat.size <= this.chunker.minSize ? Math.max(1, walked.stat.size) : DEFAULT_READ_SIZE });
    } catch (err) {
      await this.endWithError(job, err);
      return undefined;
    }
    // Bytes read and held under the budget but not yet cut into a queued chunk.
    let held = 0;
    try {
      if (job.reads === 0) this.progress.filesRead++;
      const budget = this.budget;
      const signal = this.signal;
      const progress = this.progress;
      const reads = async function* (): AsyncGenerator<Buffer> {
        for await (const b of file.chunks()) {
          await budget.acquire(b.length, held, signal);
          held += b.length;
          progress.bytesRead += b.length;
          yield b;
        }
      };
      // FastCDC runs in a worker (the main thread only routes reads and chunks); a file that
      // fits in one chunk needs no cut, and is read in one go.
      const chunks = walked.stat.size <= this.chunker.minSize ? chunkStream(reads(), this.chunker) : this.chunkPool().cutStream(reads(), this.chunker, { transfer: true });
      for await (const chunk of chunks) {
        held -= chunk.length;
        await this.pushChunk(job, chunk);
      }
      this.afterRead(job)?.();
      const report = await file.finish();
      job.reads++;
      return { ok: true, stat: file.stat, bytesRead: report.bytesRead, changed: report.changed, reasons: report.reasons };
    } catch (err) {
      this.budget.release(held);
      await this.endWithError(job, err);
      return undefined;
    } finally {
      await file.close().catch(noop);
    }
  }

  /** deps.onFileRead for the read of `job` that just ended, if set. */
  private afterRead(job: FileJob): (() => void) | undefined {
    const hook = this.deps.onFileRead;
    return hook && (() => hook(job.walked.absPath, job.reads + 1));
  }

  /** A per-file failure becomes the file's end; anything else (abort, a bug) fails the run. */
  private async endWithError(job: FileJob, err: unknown): Promise<void> {
    if (err instanceof SourceFileError && !this.signal.aborted) {
      await this.window.push({ kind: 'end', job, outcome: { ok: false, error: err } });
      return;
    }
    throw err;
  }

  /** The worker pool, started on first use: a run where nothing changed never needs it. */
  private chunkPool(): ChunkPool {
    this.pool ??= this.deps.pool ?? new ChunkPool({ size: this.deps.workers ?? availableParallelism(), level: this.config.compressionLevel });
    return this.pool;
  }

  /**
   * Queues one chunk (whose bytes are already held under the budget) for hashing and
   * compression. In hash-first mode a chunk that is already stored is not compressed at all.
   */
  private async pushChunk(job: FileJob, chunk: Buffer): Promise<void> {
    const plainLength = chunk.length;
    let result: Promise<ChunkOutcome>;
    if (job.hashFirst) {
      const id = createHash('sha256').update(chunk).digest();
      const key = id.toString('latin1');
      const known: ChunkLocation | 'packed' | undefined =
        this.inflight.has(key) || this.packer!.has(key) ? 'packed' : this.cache.findChunk(id);
      if (known !== undefined) {
        result = Promise.resolve({ id, plainLength, known });
      } else {
        this.inflight.set(key, (this.inflight.get(key) ?? 0) + 1);
        result = this.chunkPool().compress(chunk, { transfer: true }).then((frame) => ({ id, plainLength, frame, counted: true }));
      }
    } else {
      // Small chunks (whole small files) travel to the workers in batches, large ones alone.
      result = this.chunkPool().processBatched(chunk, { transfer: true });
    }
    result.catch(noop); // surfaced when the consumer reaches it
    await this.window.push({ kind: 'chunk', job, result, bytes: plainLength });
  }

  // ---- placing chunks and finishing files (one consumer, in queue order) ----

  private async consume(): Promise<void> {
    for (;;) {
      const item = await this.window.take();
      if (!item) return;
      if (item.kind === 'end') {
        this.finishFile(item.job, item.outcome);
        continue;
      }
      if (item.kind === 'restart') {
        // The file is read again: what was placed for it so far is not its content.
        item.job.ids.length = 0;
        item.job.locations.length = 0;
        continue;
      }
      let out: ChunkOutcome;
      try {
        out = await item.result;
      } finally {
        this.budget.release(item.bytes);
      }
      const loc = await this.place(out);
      if (loc) item.job.locations.push(loc);
      item.job.ids.push(out.id);
    }
  }

  /** Dedups or packs one chunk; returns its location when the state cache had it. */
  private async place(out: ChunkOutcome): Promise<ChunkLocation | undefined> {
    const key = out.id.toString('latin1');
    if (out.counted === true) {
      const n = this.inflight.get(key);
      if (n !== undefined) {
        if (n <= 1) this.inflight.delete(key);
        else this.inflight.set(key, n - 1);
      }
    }
    const packer = this.packer!;
    if (packer.has(key)) return undefined;
    const loc = out.known !== undefined && out.known !== 'packed' ? out.known : this.cache.findChunk(out.id);
    if (loc) return loc;
    if (out.frame === undefined) {
      throw new VaultikError(`internal error: chunk ${out.id.toString('hex')} was deduplicated against nothing`);
    }
    await packer.add(key, out.id, out.frame, out.plainLength);
    killPoint('chunk'); // test-only
    this.progress.bytesNew += out.plainLength;
    this.progress.bytesPacked += out.frame.length;
    return undefined;
  }

  private finishFile(job: FileJob, outcome: FileOutcome): void {
    const { walked } = job;
    const where = displayPath(walked.absPath);
    if (outcome.ok) {
      const st = outcome.stat;
      const entry: Entry = { ...walked.entry, size: outcome.bytesRead, mtimeNs: st.mtimeNs, mode: st.mode & 0o7777 };
      if (!outcome.changed) {
        this.recordFile(job, entry, job.ids, job.locations, st);
        return;
      }
      // Every read saw a change: the last one is stored as read (its bytes may mix versions,
      // like any copy of a file being written), with the stat of its open, and recorded so
      // that the next run reads the file again.
      this.progress.filesChangedWhileRead++;
      this.warn({
        ...jsonPath(walked.absPath),
        kind: 'changed',
        reads: job.reads,
        message: `file changed while it was read, ${job.reads} times (${outcome.reasons.join(', ')}): ${where}; stored as last read`,
      });
      this.recordFile(job, entry, job.ids, job.locations, { ...st, ctimeNs: TORN_CTIME });
      return;
    }
    const p = outcome.error.problem;
    this.warn({ ...jsonPath(walked.absPath), kind: p === 'vanished' ? 'vanished' : p === 'unreadable' ? 'unreadable' : 'replaced', message: outcome.error.message });
    // Not in this snapshot: the cache must not offer its chunks as the file's any more.
    if (job.cached) this.cache.forgetFile(walked.entry.path);
    this.shards!.skip(job.slot);
    if (walked.entry.linkGroup !== undefined) this.settleLinks(walked.entry.linkGroup, null);
  }

  // ---- blobs ----

  private onSealed(b: SealedBlob): void {
    this.spool!.addBlob(
      b.hash,
      b.size,
      b.chunks.map((c) => ({ id: c.id, blob: b.hash, offset: c.offset, length: c.length, plainLength: c.plainLength })),
    );
    this.blobSizes.set(b.hash, b.size);
    this.progress.blobsSealed++;
  }

  private onUploaded(b: SealedBlob): void {
    this.cache.recordBlob(
      b.hash,
      b.size,
      b.chunks.map((c) => ({ id: c.id, blob: b.hash, offset: c.offset, length: c.length, plainLength: c.plainLength })),
    );
    killPoint('blob-recorded'); // test-only
    this.progress.blobsUploaded++;
    this.progress.bytesUploaded += b.size;
    this.emit({ type: 'blob', hash: b.hash, size: b.size, chunks: b.chunks.length, bytesPacked: b.bytesPacked });
  }
}

/**
 * Decides between synchronous and asynchronous small-file reads. Synchronous reads are several
 * times cheaper for the main thread while the data comes from the page cache; from a cold disk
 * each one blocks the event loop for a seek. When the recent average goes over SLOW_MS, the next
 * ASYNC_SPELL files go through the concurrent asynchronous readers (which keep many reads in
 * flight), then synchronous reads are tried again.
 */
class SyncReadGovernor {
  private static readonly SLOW_MS = 0.5;
  private static readonly ASYNC_SPELL = 512;
  private avgMs = 0;
  private asyncLeft = 0;

  useSync(): boolean {
    if (this.asyncLeft <= 0) return true;
    this.asyncLeft--;
    return false;
  }

  record(ms: number): void {
    this.avgMs = 0.9 * this.avgMs + 0.1 * ms;
    if (this.avgMs > SyncReadGovernor.SLOW_MS) {
      this.asyncLeft = SyncReadGovernor.ASYNC_SPELL;
      this.avgMs = 0;
    }
  }
}
