/**
 * `vaultik backup <config.yaml> [--cron | --daemon] [--json] [--one-file-system]`: argument
 * parsing and output mode only; the run itself is runBackup() (src/backup), the daemon is
 * src/daemon. `--one-file-system` sets the config's `one_file_system` (also after a reload).
 *
 * `--daemon` runs in the foreground until SIGTERM or SIGINT (exit 0; a run in progress is
 * cancelled, no snapshot half written); SIGHUP reloads the config. It logs one line per event
 * to stderr, each starting with an ISO 8601 timestamp; with `--json`, one JSON object per line
 * on stdout instead (like every --json of vaultik).
 *
 * Exit codes: 0 snapshot written; 3 snapshot written with warnings (paths left out); 2 bad
 * arguments or config; 6 store unreachable or refusing; 7 another backup holds the cache lock;
 * 9 a hook failed (`before`: no snapshot; `after`: the snapshot was written); 130 interrupted (no snapshot written); 1 anything else.
 */
import { runBackup } from '../../backup/index.js';
import { loadConfig, parseDuration, type Config } from '../../config/index.js';
import { Daemon, type DaemonEvent } from '../../daemon/index.js';
import { ExitCode, UsageError, VaultikError, errorMessage } from '../../errors.js';
import { RunMonitor } from '../../monitor/index.js';
import { openStorage } from '../../storage/index.js';
import { expectPositionals, parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { CronRenderer, JsonRenderer, TextRenderer, type BackupRenderer } from '../render/backup.js';
import { daemonLogLine } from '../render/daemon.js';
import { JsonLines } from '../render/json.js';

const USAGE = 'vaultik backup <config.yaml> [--cron | --daemon] [--json] [--one-file-system]';

const OPTIONS = {
  cron: { type: 'boolean', help: 'print nothing on success, only warnings and errors (for cron and systemd timers)' },
  daemon: { type: 'boolean', help: 'keep running: watch the sources and back up on the schedule (SIGHUP reloads the config)' },
  json: { type: 'boolean', help: 'print JSON Lines (one object per event) instead of text' },
  'one-file-system': { type: 'boolean', help: 'stay on the file system of each source dir (as one_file_system: true in the config)' },
} as const satisfies CommandOptions;

/**
 * How long one store operation may keep being retried after transient failures (a duration such
 * as `30s`; default: the storage layer's 2 minutes). Lets a cron job on a flaky link wait longer,
 * or a test fail fast.
 */
export const RETRY_TIME_ENV = 'VAULTIK_RETRY_TIME';

/** The AWS SDK's switch for its "Node.js version support" notice (printed on Node < 22). */
export const AWS_SDK_NODE_WARNING_ENV = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED';

/**
 * Runs `fn` with process warnings (Node's and libraries', e.g. deprecation notices) dropped,
 * so `--cron` prints nothing on success. Restores process.emitWarning afterwards.
 */
async function withoutProcessWarnings<T>(fn: () => Promise<T>): Promise<T> {
  const original = process.emitWarning;
  process.emitWarning = (() => undefined) as typeof process.emitWarning;
  try {
    return await fn();
  } finally {
    process.emitWarning = original;
  }
}

async function backup(argv: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
  expectPositionals(positionals, 1, 1, USAGE);
  if (values.cron && values.daemon) throw new UsageError(`--cron and --daemon exclude each other\n\nusage: ${USAGE}`);
  if (values.cron && values.json) throw new UsageError(`--cron prints nothing on success; it cannot be combined with --json\n\nusage: ${USAGE}`);

  // The flag can only turn one_file_system on, like restic's and borg's.
  const oneFileSystem = values['one-file-system'] === true;
  const load = (): Config => {
    const c = loadConfig(positionals[0]!);
    return oneFileSystem ? { ...c, oneFileSystem: true } : c;
  };
  const config = load();
  // The SDK reads this from process.env when the S3 client is created; a user's explicit
  // setting wins.
  if (process.env[AWS_SDK_NODE_WARNING_ENV] === undefined && io.env[AWS_SDK_NODE_WARNING_ENV] === undefined) {
    process.env[AWS_SDK_NODE_WARNING_ENV] = 'true';
  }
  const retryTime = io.env[RETRY_TIME_ENV];
  let maxElapsedMs: number | undefined;
  if (retryTime !== undefined && retryTime !== '') {
    try {
      maxElapsedMs = parseDuration(retryTime);
    } catch (err) {
      throw new UsageError(`${RETRY_TIME_ENV}=${retryTime}: ${(err as Error).message}`);
    }
  }
  if (values.daemon) return runDaemon(load, config, values.json === true, io, maxElapsedMs);

  const renderer: BackupRenderer = values.json
    ? new JsonRenderer(io.stdout)
    : values.cron
      ? new CronRenderer(io.stderr)
      : new TextRenderer(io.stdout, io.stderr, io.isTTY);

  // Hooks, pings and the metrics textfile (docs/MONITORING.md). Their warnings show even with
  // --cron: a dead ping URL or textfile means the monitoring is blind.
  const monitor = new RunMonitor(config, {
    onWarning: (message) => (values.cron ? io.stderr.write(`vaultik: warning: ${message}\n`) : renderer.onEvent({ type: 'notice', message })),
  });
  const run = async (): Promise<number> => {
    const storage = openStorage(config.storage, {
      retry: {
        ...(maxElapsedMs !== undefined ? { maxElapsedMs } : {}),
        onRetry: (r) => renderer.onEvent({ type: 'notice', message: `retrying (attempt ${r.attempt + 1} in ${Math.round(r.delayMs)} ms): ${r.error.message}` }),
      },
    });
    try {
      const summary = await monitor.run(config, () =>
        runBackup(config, {
          storage,
          signal: io.signal,
          onEvent: (e) => renderer.onEvent(e),
          progressIntervalMs: values.json ? 1000 : io.isTTY && !values.cron ? 200 : 0,
        }),
      );
      renderer.done(summary);
      return summary.warnings > 0 ? ExitCode.WARNINGS : ExitCode.OK;
    } catch (caught) {
      const err =
        caught instanceof VaultikError && caught.exitCode === ExitCode.INTERRUPTED
          ? new VaultikError(`${caught.message}; no snapshot was written (the blobs uploaded so far are reused by the next run)`, ExitCode.INTERRUPTED, { cause: caught })
          : caught;
      renderer.failed(err);
      throw err;
    } finally {
      await storage.close();
    }
  };
  return values.cron ? withoutProcessWarnings(run) : run();
}

/** `--daemon`: runs until io.signal is aborted; SIGHUP reloads the config. */
async function runDaemon(reloadConfig: () => Config, config: Config, json: boolean, io: CommandIO, maxElapsedMs: number | undefined): Promise<number> {
  const out = json ? new JsonLines(io.stdout) : undefined;
  const log = (e: DaemonEvent): void => {
    if (out) return out.write(e);
    const line = daemonLogLine(e);
    if (line !== undefined) io.stderr.write(line + '\n');
  };
  const daemon = new Daemon({
    config,
    reloadConfig,
    openStorage: (c) =>
      openStorage(c.storage, {
        retry: {
          ...(maxElapsedMs !== undefined ? { maxElapsedMs } : {}),
          onRetry: (r) =>
            log({ time: new Date().toISOString(), type: 'notice', message: `retrying (attempt ${r.attempt + 1} in ${Math.round(r.delayMs)} ms): ${errorMessage(r.error)}` }),
        },
      }),
    signal: io.signal,
    onEvent: log,
  });
  // SIGHUP would end the process by default; for a daemon it means "read your config again".
  const onHangup = (): void => daemon.reload();
  process.on('SIGHUP', onHangup);
  try {
    await daemon.run();
  } finally {
    process.off('SIGHUP', onHangup);
  }
  return ExitCode.OK;
}

export const backupCommand: Command = {
  name: 'backup',
  summary: 'back up the source dirs of a config file',
  usage: USAGE,
  options: OPTIONS,
  run: backup,
};
