/**
 * What happens around one backup run, for `backup`, `--cron` and each run of the daemon
 * (docs/MONITORING.md):
 *
 *   ping /start → `before` hook (fails: the run is skipped, exit 9) → the backup →
 *   `after` hook → ping success → metrics textfile
 *   on failure (the before hook, the backup, the after hook): `on_error` hook → ping /fail →
 *   metrics textfile; an interrupted run (SIGINT/SIGTERM) runs no on_error hook.
 *
 * Pings and the textfile only warn (onWarning); they never change a run's result.
 */
import type { BackupSummary } from '../backup/index.js';
import type { Config } from '../config/index.js';
import { ExitCode, VaultikError, errorMessage } from '../errors.js';
import { HookError, runHook, type HookContext, type HookName } from './hooks.js';
import { emptyMetrics, readPreviousMetrics, renderMetrics, writeFileAtomic, type MetricsState, type RunCounters } from './metrics.js';
import { ping, type PingKind } from './ping.js';

export interface RunMonitorOptions {
  onWarning: (message: string) => void;
  /** Whether the run was cancelled (SIGINT/SIGTERM): then no on_error hook. Default: exit code 130. */
  interrupted?: () => boolean;
  /** Environment the hooks' few passed-through variables come from (default process.env). */
  env?: NodeJS.ProcessEnv;
  now?: () => number;
}

export function countersOf(s: BackupSummary): RunCounters {
  return {
    bytesRead: s.bytesRead,
    bytesNew: s.bytesNew,
    bytesUploaded: s.bytesUploaded + s.metadataBytes,
    files: s.files,
    filesChanged: s.filesNew + s.filesChanged,
    warnings: s.warnings,
  };
}

export class RunMonitor {
  readonly metrics: MetricsState;
  private readonly now: () => number;
  /** The textfile the state was read from; read again when the config names another. */
  private metricsFile: string | undefined;

  constructor(
    config: Config,
    private readonly options: RunMonitorOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.metricsFile = config.monitoring?.metricsFile;
    this.metrics = this.metricsFile !== undefined ? readPreviousMetrics(this.metricsFile) : emptyMetrics();
  }

  /** The exposition text of the current state (labelled with the config file), plus `live` values (the HTTP endpoint's). */
  text(config: Config, live: Partial<MetricsState> = {}): string {
    return renderMetrics({ ...this.metrics, ...live }, config.sourcePath);
  }

  /**
   * Runs `backup` inside the hooks and pings, and records the result.
   * @returns the backup's summary. @throws the backup's error, or a HookError (exit 9) when a
   *   hook failed (the after hook's message says the snapshot was written).
   */
  async run(config: Config, backup: () => Promise<BackupSummary>): Promise<BackupSummary> {
    const m = config.monitoring;
    const started = this.now();
    const base: Omit<HookContext, 'status'> = { config: config.sourcePath, hostname: config.hostname };
    let errors = 0;
    await this.ping(config, 'start', `vaultik backup of ${config.sourcePath} started`);
    let summary: BackupSummary | undefined;
    try {
      await this.hook(config, 'before', { ...base, status: 'running' });
      summary = await backup();
      const counters = countersOf(summary);
      const status = summary.warnings > 0 ? 'warnings' : 'success';
      const exitCode = summary.warnings > 0 ? ExitCode.WARNINGS : ExitCode.OK;
      try {
        await this.hook(config, 'after', { ...base, status, snapshotId: summary.snapshotId, exitCode, counters, durationSeconds: (this.now() - started) / 1000 });
      } catch (err) {
        throw new HookError(`snapshot ${summary.snapshotId} was written, but ${errorMessage(err)}`, summary);
      }
      this.record(config, started, { success: true, exitCode, errors, counters });
      await this.ping(config, 'success', `snapshot ${summary.snapshotId}: ${counters.files} files, ${counters.filesChanged} read, ${counters.bytesUploaded} bytes uploaded, ${counters.warnings} warnings`);
      this.writeTextfile(config);
      return summary;
    } catch (err) {
      errors++;
      const exitCode = err instanceof VaultikError ? err.exitCode : ExitCode.FAILURE;
      const interrupted = this.options.interrupted?.() ?? exitCode === ExitCode.INTERRUPTED;
      const counters = summary ? countersOf(summary) : undefined;
      if (!interrupted && m?.hooks?.onError) {
        try {
          await this.hook(config, 'on_error', {
            ...base,
            status: 'failure',
            exitCode,
            error: errorMessage(err),
            durationSeconds: (this.now() - started) / 1000,
            ...(summary ? { snapshotId: summary.snapshotId } : {}),
            ...(counters ? { counters } : {}),
          });
        } catch (hookErr) {
          errors++;
          this.options.onWarning(errorMessage(hookErr));
        }
      }
      // An after hook that failed leaves a snapshot written: that is still a success for the data.
      this.record(config, started, { success: summary !== undefined, exitCode, errors, ...(counters ? { counters } : {}) });
      await this.ping(config, 'fail', `vaultik backup failed (exit ${exitCode}): ${errorMessage(err)}`);
      this.writeTextfile(config);
      throw err;
    }
  }

  /** Daemon: a check found nothing changed, so the backup is up to date; pings success. */
  async upToDate(config: Config): Promise<void> {
    this.metrics.lastSuccess = this.now() / 1000;
    await this.ping(config, 'success', 'nothing changed since the last snapshot');
    this.writeTextfile(config);
  }

  /** Writes the textfile (if configured) with the current state; a failure is a warning. */
  writeTextfile(config: Config): void {
    const file = config.monitoring?.metricsFile;
    if (file === undefined) return;
    try {
      writeFileAtomic(file, this.text(config));
    } catch (err) {
      this.options.onWarning(`could not write the metrics file ${file}: ${errorMessage(err)}`);
    }
  }

  private record(config: Config, started: number, run: { success: boolean; exitCode: number; errors: number; counters?: RunCounters }): void {
    if (config.monitoring?.metricsFile !== this.metricsFile) {
      // A reloaded config names another textfile: carry on from what that one holds.
      this.metricsFile = config.monitoring?.metricsFile;
      if (this.metricsFile !== undefined) Object.assign(this.metrics, readPreviousMetrics(this.metricsFile));
    }
    const end = this.now();
    const m = this.metrics;
    m.lastRun = { end: end / 1000, durationSeconds: (end - started) / 1000, ...run };
    if (run.success) {
      m.lastSuccess = end / 1000;
      m.lastSnapshot = end / 1000;
      m.snapshots++;
    }
    if (run.success && run.errors === 0) {
      m.runsSuccess++;
      m.consecutiveFailures = 0;
    } else {
      m.runsFailure++;
      m.consecutiveFailures++;
    }
  }

  private async hook(config: Config, name: HookName, ctx: HookContext): Promise<void> {
    const hooks = config.monitoring?.hooks;
    const cmd = name === 'before' ? hooks?.before : name === 'after' ? hooks?.after : hooks?.onError;
    if (!hooks || !cmd) return;
    try {
      await runHook(name, cmd, ctx, hooks.timeout, this.options.env);
    } catch (err) {
      if (name === 'before' && err instanceof HookError) throw new HookError(`${err.message}\nthe backup was skipped: no snapshot was written`);
      throw err;
    }
  }

  private async ping(config: Config, kind: PingKind, body: string): Promise<void> {
    const m = config.monitoring;
    if (m?.healthcheckUrl === undefined) return;
    const warning = await ping(m.healthcheckUrl, kind, m.healthcheckTimeout, body);
    if (warning !== undefined) this.options.onWarning(warning);
  }
}
