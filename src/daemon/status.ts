/**
 * Keeps the daemon's status file (src/monitor/state.ts) up to date: written at each change of
 * state, and every STATUS_REFRESH_MS while the number of dirty paths changes. A status file that
 * cannot be written is reported once (a warning) and the daemon goes on.
 */
import type { Config } from '../config/index.js';
import { errorMessage } from '../errors.js';
import { selfIdentity, statusPathFor, writeStatus, type DaemonStatus, type LastRun, type MetricsState } from '../monitor/index.js';

export const STATUS_REFRESH_MS = 5000;

export class DaemonStatusKeeper {
  private status: DaemonStatus | undefined;
  private config: Config | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failing = false;

  constructor(
    private readonly now: () => number,
    private readonly dirtyPaths: () => number,
    private readonly onWarning: (message: string) => void,
  ) {}

  private iso(ms: number): string {
    return new Date(ms).toISOString();
  }

  start(config: Config, metrics: MetricsState): void {
    const now = this.iso(this.now());
    this.status = {
      version: 1,
      ...selfIdentity(),
      config: config.sourcePath,
      startedAt: now,
      updatedAt: now,
      state: 'starting',
      watching: false,
      dirtyPaths: 0,
      consecutiveFailures: metrics.consecutiveFailures,
      ...(metrics.lastSuccess !== undefined ? { lastSuccessAt: this.iso(metrics.lastSuccess * 1000) } : {}),
    };
    this.save(config);
    this.timer = setInterval(() => {
      if (this.status && this.config && this.status.dirtyPaths !== this.dirtyPaths()) this.save(this.config);
    }, STATUS_REFRESH_MS);
    this.timer.unref();
  }

  update(config: Config, patch: { state: DaemonStatus['state']; watching: boolean; nextRunAt?: number }): void {
    if (!this.status) return;
    this.status.state = patch.state;
    this.status.watching = patch.watching;
    if (patch.nextRunAt !== undefined) this.status.nextRunAt = this.iso(patch.nextRunAt);
    this.save(config);
  }

  /** A run ended, or (result 'skipped') a check found nothing to do. */
  ran(config: Config, run: { result: LastRun['result'] | 'skipped'; started: number; snapshotId?: string; message?: string; exitCode?: number }, metrics: MetricsState): void {
    if (!this.status) return;
    const end = this.now();
    if (run.result === 'skipped') this.status.lastCheckAt = this.iso(end);
    else this.status.lastRun = {
      result: run.result,
      startedAt: this.iso(run.started),
      endedAt: this.iso(end),
      durationMs: Math.max(0, Math.round(end - run.started)),
      ...(run.snapshotId !== undefined ? { snapshotId: run.snapshotId } : {}),
      ...(run.exitCode !== undefined ? { exitCode: run.exitCode } : {}),
      ...(run.message !== undefined ? { message: run.message } : {}),
    };
    if (run.result === 'failure') this.status.lastError = { time: this.iso(end), message: run.message ?? '', exitCode: run.exitCode ?? 1 };
    if (metrics.lastSuccess !== undefined) this.status.lastSuccessAt = this.iso(metrics.lastSuccess * 1000);
    this.status.consecutiveFailures = metrics.consecutiveFailures;
    this.status.state = 'idle';
    delete this.status.nextRunAt;
    this.save(config);
  }

  stop(config: Config): void {
    clearInterval(this.timer);
    if (!this.status) return;
    this.status.state = 'stopped';
    delete this.status.nextRunAt;
    this.save(config);
  }

  private save(config: Config): void {
    const s = this.status!;
    this.config = config;
    s.config = config.sourcePath;
    s.dirtyPaths = this.dirtyPaths();
    s.updatedAt = this.iso(this.now());
    try {
      writeStatus(statusPathFor(config.indexPath), s);
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.onWarning(`cannot write the status file ${statusPathFor(config.indexPath)}: ${errorMessage(err)}`);
      this.failing = true;
    }
  }
}
