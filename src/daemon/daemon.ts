/**
 * The daemon: keeps a machine backed up with little I/O. A foreground loop (for systemd or a
 * container; no double fork) around runBackup:
 *
 *   watch the sources (watcher.ts) → every backup_interval, and never sooner than
 *   min_time_between_run after the previous run ended: take the dirty marks → nothing dirty:
 *   skip (logged) → else back up with a scan that re-stats only the dirty paths and carries
 *   everything else over from the previous scan's record (scan.ts, tree.ts).
 *
 * Contracts:
 * - Full stat scan at start-up and every full_scan_interval (scan.ts diffTree), whatever the
 *   events said; with no usable record (first start, changed sources or excludes) the run walks
 *   everything. A full scan that finds nothing writes no snapshot.
 * - Changes that happen while a run is going on are marked for the next run: a run works on
 *   the marks taken when it began.
 * - When the watcher fails (inotify watch limit, a source dir removed) the daemon says so once
 *   and does a full stat scan at every run; it tries to watch again at each full_scan_interval.
 * - A failed run (store unreachable, lock held) is reported, its marks are kept, and it is
 *   retried with backoff (schedule.ts); the daemon keeps going. No snapshot is ever half
 *   written: that is runBackup's contract, and the scan record is replaced only after a
 *   snapshot was written.
 * - Aborting `signal` (SIGTERM/SIGINT) cancels a run in progress (no snapshot) and `run()`
 *   resolves once everything is closed. `reload()` (SIGHUP) reads the config again: an invalid
 *   one is reported and the running config stays; a valid one applies from the next run.
 * - One chunk pool (worker threads) serves every run while runs come close together; it is
 *   released while the next run is more than `poolIdleMs` away (an idle worker costs ~11 MB),
 *   and so is the memory the run left free (memory.ts: glibc keeps it otherwise).
 * - Each run goes through the hooks, pings and metrics of src/monitor (a failing `before` hook
 *   fails the run like any other failure: exit code 9, retried with backoff); a check that finds
 *   nothing changed counts as up to date (metrics, success ping). The status file
 *   (`<index_path>.status.json`, status.ts) and, with `metrics_listen`, the /metrics endpoint
 *   say how the daemon is doing.
 * - Core code: it emits DaemonEvents and never writes to the terminal itself.
 */
import { availableParallelism } from 'node:os';
import { loadBackupSigningKey, runBackup, scanSources, selfPaths, type BackupDeps, type BackupSummary, type ScanOptions } from '../backup/index.js';
import { ChunkPool } from '../compress/pool.js';
import type { Config } from '../config/index.js';
import { ExitCode, VaultikError, errorMessage } from '../errors.js';
import { displayPath } from '../fs/index.js';
import { HookError, RunMonitor, startMetricsServer, type MetricsServer } from '../monitor/index.js';
import type { SigningKey } from '../sign/index.js';
import type { StoreWriter } from '../storage/types.js';
import { DEFAULT_DIRTY_LIMIT, DirtySet } from './dirty.js';
import { DaemonStatusKeeper } from './status.js';
import type { DaemonEvent, DaemonEventBody, ScanKind } from './events.js';
import { SourceMap, diffTree, dirtyScan, recordingScan, type ScanFn } from './scan.js';
import { fullScanDue, nextDue, retryDelay, startAt } from './schedule.js';
import { TreeRecordError, TreeWriter, readTreeBatches, removeTree, treeFingerprint, treeMatches, treePathFor, type TreeRecord } from './tree.js';
import { inotifyWatcher, type Watcher, type WatcherFactory } from './watcher.js';
import { releaseMemory } from './memory.js';

export interface DaemonOptions {
  config: Config;
  /** Reads the config file again (SIGHUP). @throws ConfigError (or anything) for an unusable one. */
  reloadConfig: () => Config;
  /** Opens the store for one run (backups only put); closed after it. */
  openStorage: (config: Config) => StoreWriter & { close(): Promise<void> };
  /** Abort to stop (SIGTERM/SIGINT). */
  signal: AbortSignal;
  /** Receives every event, synchronously; must not throw. */
  onEvent: (event: DaemonEvent) => void;
  /** Default: inotify, one watch per directory (watcher.ts). */
  watcher?: WatcherFactory;
  /** Worker threads of the chunk pool (default os.availableParallelism()). */
  workers?: number;
  /** Makes the chunk pool (default: a ChunkPool of `workers` at the config's level). */
  makePool?: (config: Config) => ChunkPool;
  /** Release the pool while the next run is further away than this (default 10 min). */
  poolIdleMs?: number;
  /**
   * Called once after a run (or a check) when the next is further away than `poolIdleMs`, after
   * the pool was released: gives the memory the run left free back to the system (default
   * memory.ts releaseMemory).
   */
  releaseMemory?: () => void;
  /** Marked paths kept before falling back to a full scan (default 100,000). */
  dirtyLimit?: number;
  /** Passed to every runBackup. */
  backup?: Pick<BackupDeps, 'tuning' | 'cache'>;
  /** Clock in ms since the epoch (default Date.now). */
  now?: () => number;
}

const DEFAULT_POOL_IDLE_MS = 10 * 60 * 1000;
const MAX_SLEEP_MS = 60 * 60 * 1000;

type CycleResult = 'ran' | 'skipped' | 'failed' | 'stopped';

/** The config keys (YAML names) whose values differ. */
function changedKeys(a: Config, b: Config): string[] {
  const pairs: [string, unknown, unknown][] = [
    ['source_dirs', a.sourceDirs, b.sourceDirs],
    ['exclude', a.exclude, b.exclude],
    ['one_file_system', a.oneFileSystem === true, b.oneFileSystem === true],
    ['age_recipients', a.recipients, b.recipients],
    ['store', a.storage, b.storage],
    ['backup_interval', a.backupInterval, b.backupInterval],
    ['full_scan_interval', a.fullScanInterval, b.fullScanInterval],
    ['min_time_between_run', a.minTimeBetweenRun, b.minTimeBetweenRun],
    ['index_path', a.indexPath, b.indexPath],
    ['chunk_size', a.chunkSize, b.chunkSize],
    ['blob_size_limit', a.blobSizeLimit, b.blobSizeLimit],
    ['index_prefix', a.indexPrefix, b.indexPrefix],
    ['compression_level', a.compressionLevel, b.compressionLevel],
    ['hostname', a.hostname, b.hostname],
    ['signing_key', a.signingKey, b.signingKey],
    ['metrics_file', a.monitoring?.metricsFile, b.monitoring?.metricsFile],
    ['metrics_listen', a.monitoring?.metricsListen, b.monitoring?.metricsListen],
    ['hooks', a.monitoring?.hooks, b.monitoring?.hooks],
    ['healthcheck_url', a.monitoring?.healthcheckUrl, b.monitoring?.healthcheckUrl],
    ['healthcheck_timeout', a.monitoring?.healthcheckTimeout, b.monitoring?.healthcheckTimeout],
  ];
  return pairs.filter(([, x, y]) => JSON.stringify(x) !== JSON.stringify(y)).map(([k]) => k);
}

export class Daemon {
  private config: Config;
  private pending: Config | undefined;
  private readonly now: () => number;
  private readonly dirty: DirtySet;
  private watcher: Watcher | undefined;
  private watcherToken: symbol | undefined;
  private watching = false;
  private pool: ChunkPool | undefined;
  private running = false;
  /** A run or check ended since memory was last released. */
  private memoryToRelease = false;
  private started = false;
  private lastFullScan: number | undefined;
  private lastWatchAttempt: number | undefined;
  private lastRunEnd: number | undefined;
  private failures = 0;
  private wake: (() => void) | undefined;
  /** The signing key loaded for the config's `signing_key` path (loaded again when it changes). */
  private signer: { path: string; key: SigningKey } | undefined;
  private readonly monitor: RunMonitor;
  private readonly status: DaemonStatusKeeper;
  private metricsServer: MetricsServer | undefined;

  constructor(private readonly options: DaemonOptions) {
    this.config = options.config;
    this.now = options.now ?? Date.now;
    this.dirty = new DirtySet(options.dirtyLimit ?? DEFAULT_DIRTY_LIMIT);
    const onWarning = (message: string): void => this.emit({ type: 'warning', message });
    this.monitor = new RunMonitor(this.config, { onWarning, interrupted: () => options.signal.aborted, now: this.now });
    this.status = new DaemonStatusKeeper(this.now, () => this.dirty.size, onWarning);
  }

  private emit(body: DaemonEventBody): void {
    this.options.onEvent({ time: new Date(this.now()).toISOString(), ...body } as DaemonEvent);
  }

  /**
   * Reads the config again (SIGHUP). An invalid config is reported ('reload-failed') and
   * changes nothing; a valid one applies before the next run ('reloaded').
   */
  reload(): void {
    let next: Config;
    try {
      next = this.options.reloadConfig();
    } catch (err) {
      this.emit({ type: 'reload-failed', config: this.config.sourcePath, message: errorMessage(err) });
      return;
    }
    this.pending = next;
    this.emit({ type: 'reloaded', config: next.sourcePath, changed: changedKeys(this.config, next), deferred: this.running });
    this.wake?.();
  }

  /**
   * Runs until `options.signal` is aborted; resolves once the watcher, the pool and every timer
   * are closed. Failed runs do not end it.
   * @throws VaultikError when called twice; anything unexpected from the loop itself (a bug).
   */
  async run(): Promise<void> {
    if (this.started) throw new VaultikError('the daemon is already running');
    this.started = true;
    // A key that cannot sign stops the daemon at start (exit 2), before any run.
    await this.signingKeyFor(this.config);
    const { signal } = this.options;
    const onAbort = (): void => {
      this.emit({ type: 'stopping', reason: errorMessage(signal.reason), runInProgress: this.running });
      // Also ends a start-up crawl of a large tree at once (the watcher's `ready` resolves).
      this.watcher?.close();
      this.wake?.();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    let interruptedRun = false;
    try {
      const c = this.config;
      this.emit({
        type: 'started',
        config: c.sourcePath,
        pid: process.pid,
        sourceDirs: [...c.sourceDirs],
        store: describeStore(c),
        backupIntervalMs: c.backupInterval,
        fullScanIntervalMs: c.fullScanInterval,
        minTimeBetweenRunMs: c.minTimeBetweenRun,
      });
      this.status.start(c, this.monitor.metrics);
      await this.startMetricsServer();
      await this.startWatcher();
      let dueAt = this.now();
      while (!signal.aborted) {
        if (this.pending) {
          dueAt = await this.applyConfig(dueAt);
          continue;
        }
        const at = startAt(dueAt, this.lastRunEnd, this.config.minTimeBetweenRun);
        this.monitor.metrics.nextRun = at / 1000;
        this.status.update(this.config, { state: 'idle', watching: this.watching, nextRunAt: at });
        if (at > this.now()) {
          if (at - this.now() > (this.options.poolIdleMs ?? DEFAULT_POOL_IDLE_MS)) {
            await this.releasePool();
            if (this.memoryToRelease) (this.options.releaseMemory ?? releaseMemory)();
            this.memoryToRelease = false;
          }
          await this.sleepUntil(at);
          continue; // woken early by a reload or a stop: decide again
        }
        const result = await this.cycle();
        this.memoryToRelease = true;
        if (result === 'stopped') {
          interruptedRun = true;
          break;
        }
        const now = this.now();
        if (result === 'failed') {
          dueAt = now + retryDelay(this.config.backupInterval, this.failures);
        } else {
          dueAt = nextDue(dueAt, this.config.backupInterval, now);
        }
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.watcher?.close();
      this.watcher = undefined;
      await this.releasePool();
      await this.metricsServer?.close();
      this.metricsServer = undefined;
      this.status.stop(this.config);
      this.emit({ type: 'stopped', interruptedRun });
    }
  }

  /** Sleeps until `at`, at most an hour at a time (setTimeout overflows past 24.8 days; the loop decides again on waking). */
  private sleepUntil(at: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.min(MAX_SLEEP_MS, Math.max(0, at - this.now())));
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = undefined;
        done();
      };
      if (this.options.signal.aborted) done();
    });
  }

  private async releasePool(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.close();
  }

  /** Applies a reloaded config between runs; returns when the next run is due. */
  private async applyConfig(dueAt: number): Promise<number> {
    const next = this.pending!;
    this.pending = undefined;
    const old = this.config;
    this.config = next;
    const changed = changedKeys(old, next);
    if (changed.includes('compression_level')) await this.releasePool();
    if (changed.includes('metrics_listen')) {
      await this.metricsServer?.close();
      this.metricsServer = undefined;
      await this.startMetricsServer();
    }
    const watched = ['source_dirs', 'exclude', 'one_file_system', 'index_path', 'store'];
    if (changed.some((k) => watched.includes(k))) {
      // Other sources or excludes: the record no longer fits (its fingerprint changes) and the
      // next run walks everything; the old marks mean nothing any more.
      this.watcher?.close();
      this.watcher = undefined;
      this.dirty.clear();
      await this.startWatcher();
    }
    // The new interval counts from when the previous run was due.
    return Math.max(dueAt - old.backupInterval + next.backupInterval, this.now());
  }

  /** Serves /metrics on `metrics_listen`; a port that cannot be had is a warning (the daemon goes on). */
  private async startMetricsServer(): Promise<void> {
    const listen = this.config.monitoring?.metricsListen;
    if (listen === undefined) return;
    try {
      this.metricsServer = await startMetricsServer(listen, () => this.monitor.text(this.config, { dirtyPaths: this.dirty.size }));
    } catch (err) {
      this.emit({ type: 'warning', message: `metrics_listen ${listen.host}:${listen.port}: cannot listen: ${errorMessage(err)}` });
    }
  }

  private async startWatcher(): Promise<void> {
    const map = new SourceMap(this.config, selfPaths(this.config));
    const factory = this.options.watcher ?? inotifyWatcher;
    const started = this.now();
    this.lastWatchAttempt = started;
    // Identifies this watcher: a replaced one may still report, and must not count.
    const token = Symbol('watcher');
    this.watcherToken = token;
    let failed = false;
    const watcher = factory({
      roots: map.sources.map((s) => ({ dir: s.dir, exclude: s.exclude })),
      oneFileSystem: this.config.oneFileSystem === true,
      onChange: (abs, flags) => {
        if (this.watcherToken === token && !map.ignores(abs)) this.dirty.markAbs(abs, flags);
      },
      onError: (err) => {
        failed = true;
        if (this.watcherToken !== token) return;
        this.watching = false;
        this.emit({ type: 'watch-failed', message: errorMessage(err), fullScanEveryMs: this.config.backupInterval });
      },
    });
    this.watcher = watcher;
    this.watching = !failed;
    await watcher.ready;
    if (!failed && this.watcherToken === token && !this.options.signal.aborted) {
      this.emit({ type: 'watching', directories: watcher.watchedDirs, ms: this.now() - started });
    }
  }

  /** One tick: decide, maybe back up. Never throws for a failed run. */
  private async cycle(): Promise<CycleResult> {
    const { signal } = this.options;
    const config = this.config;
    const started = this.now();
    if (!this.watching && fullScanDue(this.lastWatchAttempt, config.fullScanInterval, started)) {
      // Watching failed earlier: try again once per full_scan_interval (the limit may have been
      // raised, the source dir may be back).
      this.watcher?.close();
      await this.startWatcher(); // 'watching' again, or one more 'watch-failed'
    }
    // Without a working watcher the marks are incomplete: only a full scan finds every change.
    const full = !this.watching || fullScanDue(this.lastFullScan, config.fullScanInterval, started) || this.dirty.overflowed;

    const self = selfPaths(config);
    const treePath = treePathFor(config.indexPath);
    const fingerprint = treeFingerprint(config, self);
    const openTree = (): AsyncIterable<TreeRecord[]> => readTreeBatches(treePath, fingerprint);
    const marks = this.dirty.take();
    const scanOptions: ScanOptions = {
      signal,
      self,
      onWarning: (w) => this.emit({ type: 'warning', message: w.message, path: displayPath(w.absPath) }),
    };
    let writer: TreeWriter | undefined;
    let attempted = false;
    this.running = true;
    try {
      let useRecord = treeMatches(treePath, fingerprint) && !marks.overflowed;
      if (useRecord && full) {
        const diff = await diffTree(config, scanOptions, openTree, this.options.dirtyLimit);
        if (diff.structural || diff.marks.overflowed) useRecord = false;
        else marks.merge(diff.marks);
      }
      if (useRecord && marks.empty) {
        if (full) this.lastFullScan = started;
        this.emit({ type: 'skipped', fullScan: full, reason: full ? 'nothing changed (full scan)' : 'nothing changed' });
        await this.monitor.upToDate(config);
        this.status.ran(config, { result: 'skipped', started }, this.monitor.metrics);
        return 'skipped';
      }
      const kind: ScanKind = useRecord ? 'dirty' : 'full';
      const dirtyPaths = useRecord ? marks.size : 0;
      attempted = true;
      this.emit({ type: 'run-start', scan: kind, fullScan: full || !useRecord, dirtyPaths });
      this.status.update(config, { state: 'running', watching: this.watching });
      writer = new TreeWriter(treePath, fingerprint);
      const inner: ScanFn = useRecord ? dirtyScan({ openTree, marks }) : scanSources;
      const scan = recordingScan(inner, writer);
      const summary = await this.monitor.run(config, () => this.backup(config, scan));
      writer.commit();
      writer = undefined;
      if (full || !useRecord) this.lastFullScan = started;
      this.failures = 0;
      this.emit({
        type: 'run',
        snapshotId: summary.snapshotId,
        scan: kind,
        fullScan: full || !useRecord,
        dirtyPaths,
        filesChanged: summary.filesNew + summary.filesChanged,
        filesNew: summary.filesNew,
        files: summary.files,
        bytesAdded: summary.bytesUploaded + summary.metadataBytes,
        bytesRead: summary.bytesRead,
        durationMs: this.now() - started,
        warnings: summary.warnings,
        filesChangedWhileRead: summary.filesChangedWhileRead,
      });
      this.status.ran(config, { result: summary.warnings > 0 ? 'warnings' : 'success', started, snapshotId: summary.snapshotId }, this.monitor.metrics);
      return 'ran';
    } catch (err) {
      if (err instanceof HookError && err.written && writer) {
        // The after hook failed, but the snapshot was written: its scan record stands.
        writer.commit();
      } else {
        writer?.abort();
        // What this run was to look at is still to be looked at.
        this.dirty.merge(marks);
      }
      writer = undefined;
      // Whatever failed after a stop was asked for failed because of it.
      if (signal.aborted) return 'stopped';
      attempted = true;
      if (err instanceof TreeRecordError || !(err instanceof VaultikError)) {
        // The record may be what is wrong: the next run walks everything and writes a new one.
        removeTree(treePath);
      }
      this.failures++;
      const retryInMs = retryDelay(config.backupInterval, this.failures);
      this.emit({
        type: 'run-failed',
        message: errorMessage(err),
        exitCode: err instanceof VaultikError ? err.exitCode : ExitCode.FAILURE,
        failures: this.failures,
        retryInMs,
      });
      this.status.ran(config, { result: 'failure', started, message: errorMessage(err), exitCode: err instanceof VaultikError ? err.exitCode : ExitCode.FAILURE }, this.monitor.metrics);
      return 'failed';
    } finally {
      this.running = false;
      if (attempted) this.lastRunEnd = this.now();
    }
  }

  /**
   * The key of `config.signingKey`, loaded once per path: a reload that names another key loads
   * it before the next run (a bad one fails that run, reported like any failed run).
   */
  private async signingKeyFor(config: Config): Promise<SigningKey | undefined> {
    if (config.signingKey === undefined) return undefined;
    if (this.signer?.path !== config.signingKey) this.signer = { path: config.signingKey, key: await loadBackupSigningKey(config) };
    return this.signer.key;
  }

  private async backup(config: Config, scan: ScanFn): Promise<BackupSummary> {
    const signingKey = await this.signingKeyFor(config);
    this.pool ??= this.options.makePool?.(config) ?? new ChunkPool({ size: this.options.workers ?? availableParallelism(), level: config.compressionLevel });
    const storage = this.options.openStorage(config);
    try {
      return await runBackup(config, {
        storage,
        signal: this.options.signal,
        pool: this.pool,
        scan,
        progressIntervalMs: 0,
        ...(signingKey ? { signingKey } : {}),
        ...this.options.backup,
        onEvent: (e) => {
          if (e.type === 'warning') this.emit({ type: 'warning', message: e.message, path: e.path });
          else if (e.type === 'notice') this.emit({ type: 'notice', message: e.message });
        },
      });
    } finally {
      await storage.close();
    }
  }
}

/** The store, for the start-up line (no credentials: the endpoint, bucket and prefix only). */
function describeStore(config: Config): string {
  const s = config.storage;
  if (s.type === 'local') return `file://${s.path}/${s.prefix}`;
  return `s3://${s.bucket}/${s.prefix}${s.endpoint !== undefined ? ` at ${s.endpoint}` : ''}`;
}
