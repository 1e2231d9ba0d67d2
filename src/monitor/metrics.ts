/**
 * Backup metrics in the Prometheus text exposition format (version 0.0.4): written as a
 * node_exporter textfile after every run (`metrics_file`) and, for the daemon, served on
 * `metrics_listen` (http.ts). The names, types and help texts are documented in
 * docs/MONITORING.md; keep the two in step.
 *
 * Contracts:
 * - The textfile is replaced atomically (a temp file in the same directory, fsync, rename, fsync
 *   of the directory): node_exporter never reads half a file. The temp name does not end in
 *   `.prom`, so the collector ignores it.
 * - What must outlive one process (the last success time, the counters) is read back from the
 *   previous textfile, so a failed `--cron` run keeps the last success of the run before it.
 *   A missing or unreadable file starts from nothing (counters reset, as Prometheus allows).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** The counters of the run that just ended (absent for a run that failed before its summary). */
export interface RunCounters {
  bytesRead: number;
  bytesNew: number;
  /** Data blobs and metadata uploaded (stored, encrypted bytes). */
  bytesUploaded: number;
  files: number;
  filesChanged: number;
  warnings: number;
}

export interface MetricsState {
  /** Unix seconds: the last time the backup was known up to date (a snapshot, or a daemon check that found nothing changed). */
  lastSuccess?: number;
  /** Unix seconds: the last snapshot written. */
  lastSnapshot?: number;
  lastRun?: {
    /** Unix seconds the run ended. */
    end: number;
    durationSeconds: number;
    success: boolean;
    exitCode: number;
    /** Errors of the run: the backup's failure and every failed hook. */
    errors: number;
    counters?: RunCounters;
  };
  runsSuccess: number;
  runsFailure: number;
  snapshots: number;
  consecutiveFailures: number;
  /** Daemon: Unix seconds of the next planned run. */
  nextRun?: number;
  /** Daemon: changed paths waiting for the next run. */
  dirtyPaths?: number;
}

export function emptyMetrics(): MetricsState {
  return { runsSuccess: 0, runsFailure: 0, snapshots: 0, consecutiveFailures: 0 };
}

/** The metric names (docs/MONITORING.md lists each with its meaning). */
export const METRIC = {
  lastSuccess: 'vaultik_backup_last_success_timestamp_seconds',
  lastSnapshot: 'vaultik_backup_last_snapshot_timestamp_seconds',
  lastRun: 'vaultik_backup_last_run_timestamp_seconds',
  lastRunSuccess: 'vaultik_backup_last_run_success',
  lastRunExitCode: 'vaultik_backup_last_run_exit_code',
  lastRunDuration: 'vaultik_backup_last_run_duration_seconds',
  lastRunRead: 'vaultik_backup_last_run_read_bytes',
  lastRunNew: 'vaultik_backup_last_run_new_bytes',
  lastRunUploaded: 'vaultik_backup_last_run_uploaded_bytes',
  lastRunFiles: 'vaultik_backup_last_run_files',
  lastRunChanged: 'vaultik_backup_last_run_changed_files',
  lastRunWarnings: 'vaultik_backup_last_run_warnings',
  lastRunErrors: 'vaultik_backup_last_run_errors',
  runs: 'vaultik_backup_runs_total',
  snapshots: 'vaultik_backup_snapshots_total',
  consecutiveFailures: 'vaultik_backup_consecutive_failures',
  nextRun: 'vaultik_daemon_next_run_timestamp_seconds',
  dirtyPaths: 'vaultik_daemon_dirty_paths',
} as const;

type Family = { name: string; type: 'gauge' | 'counter'; help: string; samples: { labels?: Record<string, string>; value: number }[] };

/** A label value escaped for the text format (backslash, double quote, newline). */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf';
  return String(v);
}

/**
 * The exposition text of `state`. Every sample carries `config="<config file>"`, so several
 * configs on one host can share a textfile directory. Families with no value yet are left out.
 */
export function renderMetrics(state: MetricsState, config: string): string {
  const g = (name: string, help: string, value: number | undefined): Family | undefined =>
    value === undefined ? undefined : { name, type: 'gauge', help, samples: [{ value }] };
  const run = state.lastRun;
  const c = run?.counters;
  const families: (Family | undefined)[] = [
    g(METRIC.lastSuccess, 'Unix time the backup was last known up to date: a snapshot was written, or the daemon found nothing changed.', state.lastSuccess),
    g(METRIC.lastSnapshot, 'Unix time the last snapshot was written.', state.lastSnapshot),
    g(METRIC.lastRun, 'Unix time the last backup run ended, successful or not.', run?.end),
    g(METRIC.lastRunSuccess, '1 if the last backup run wrote a snapshot, else 0.', run === undefined ? undefined : run.success ? 1 : 0),
    g(METRIC.lastRunExitCode, 'Exit code of the last backup run (README "Exit codes").', run?.exitCode),
    g(METRIC.lastRunDuration, 'Duration of the last backup run, hooks included.', run?.durationSeconds),
    g(METRIC.lastRunRead, 'Bytes read from source files by the last run.', c?.bytesRead),
    g(METRIC.lastRunNew, 'New (not deduplicated) chunk bytes of the last run, before compression.', c?.bytesNew),
    g(METRIC.lastRunUploaded, 'Stored bytes the last run uploaded: data blobs and metadata.', c?.bytesUploaded),
    g(METRIC.lastRunFiles, 'Regular files in the last snapshot.', c?.files),
    g(METRIC.lastRunChanged, 'Files the last run read because they were new or changed.', c?.filesChanged),
    g(METRIC.lastRunWarnings, 'Warnings of the last run: paths left out, files stored as last read after changing during every read.', c?.warnings ?? (run ? 0 : undefined)),
    g(METRIC.lastRunErrors, 'Errors of the last run: a failed backup and each failed hook.', run?.errors),
    {
      name: METRIC.runs,
      type: 'counter',
      help: 'Backup runs by result (success: a snapshot was written and no hook failed).',
      samples: [
        { labels: { result: 'success' }, value: state.runsSuccess },
        { labels: { result: 'failure' }, value: state.runsFailure },
      ],
    },
    { name: METRIC.snapshots, type: 'counter', help: 'Snapshots written with this config (counted on this host).', samples: [{ value: state.snapshots }] },
    g(METRIC.consecutiveFailures, 'Backup runs that failed in a row since the last success.', state.consecutiveFailures),
    g(METRIC.nextRun, 'Unix time of the daemon\'s next planned run.', state.nextRun),
    g(METRIC.dirtyPaths, 'Changed paths the daemon has marked for its next run.', state.dirtyPaths),
  ];
  const lines: string[] = [];
  for (const f of families) {
    if (!f) continue;
    lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries({ config, ...s.labels }).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
      lines.push(`${f.name}{${labels.join(',')}} ${formatValue(s.value)}`);
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * What carries over from a previous textfile of ours: the last success and snapshot times and
 * the counters. Lines that do not parse are ignored (it is our own file; a damaged one only
 * costs the counters).
 */
export function readPreviousMetrics(path: string): MetricsState {
  const state = emptyMetrics();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return state;
  }
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (!Number.isFinite(value) || value < 0) continue;
    const labels = m[2] ?? '';
    switch (m[1]) {
      case METRIC.lastSuccess:
        state.lastSuccess = value;
        break;
      case METRIC.lastSnapshot:
        state.lastSnapshot = value;
        break;
      case METRIC.snapshots:
        state.snapshots = value;
        break;
      case METRIC.consecutiveFailures:
        state.consecutiveFailures = value;
        break;
      case METRIC.runs:
        if (labels.includes('result="success"')) state.runsSuccess = value;
        else if (labels.includes('result="failure"')) state.runsFailure = value;
        break;
    }
  }
  return state;
}

/**
 * Replaces `path` with `text` atomically: a temp file beside it (same filesystem), fsync, rename,
 * fsync of the directory. Creates the directory (`dirMode`) if needed. Default mode 0644 (the
 * textfile: node_exporter runs as its own user, and metrics hold no secret).
 */
export function writeFileAtomic(path: string, text: string, mode = 0o644, dirMode = 0o755): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: dirMode });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is done.
  }
}
