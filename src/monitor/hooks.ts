/**
 * The `hooks:` commands run around a backup (docs/MONITORING.md "Hooks").
 *
 * Contracts:
 * - A string runs through `/bin/sh -c`, a list is exec'd as an argv (no shell). Each hook runs
 *   in its own process group; past the timeout the whole group gets SIGTERM, then SIGKILL after
 *   5 s, and the hook counts as failed.
 * - The environment is built here, never inherited wholesale: a few harmless variables of
 *   vaultik's own environment (PATH, HOME, USER, LOGNAME, LANG, LC_*, TZ, TMPDIR) plus the
 *   documented VAULTIK_* values. Nothing from the config's s3: block, no AWS_* or other
 *   VAULTIK_* variable reaches a hook.
 * - Output: stdout and stderr are collected (the last 4 KiB) and shown only when the hook fails.
 */
import { spawn } from 'node:child_process';
import type { BackupSummary } from '../backup/index.js';
import type { HookCommand } from '../config/index.js';
import { ExitCode, VaultikError } from '../errors.js';
import type { RunCounters } from './metrics.js';

export type HookName = 'before' | 'after' | 'on_error';

/** What a hook learns about the run (its VAULTIK_* variables). */
export interface HookContext {
  /** Absolute path of the config file. */
  config: string;
  hostname: string;
  /** 'running' for `before`; the run's result for `after` and `on_error`. */
  status: 'running' | 'success' | 'warnings' | 'failure';
  snapshotId?: string;
  exitCode?: number;
  /** on_error: what went wrong. */
  error?: string;
  durationSeconds?: number;
  counters?: RunCounters;
}

/** A hook failed: `before` skips the run; exit code 9 (README "Exit codes"). */
export class HookError extends VaultikError {
  /**
   * @param written the run's summary when the failed hook is `after`: the snapshot exists.
   */
  constructor(
    message: string,
    readonly written?: BackupSummary,
  ) {
    super(message, ExitCode.HOOK);
    this.name = 'HookError';
  }
}

const PASSED_THROUGH = ['PATH', 'HOME', 'USER', 'LOGNAME', 'LANG', 'LANGUAGE', 'TZ', 'TMPDIR'];
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const KILL_GRACE_MS = 5000;
const OUTPUT_TAIL = 4096;
const OUTPUT_DRAIN_MS = 500;

/** The whole environment a hook gets (docs/MONITORING.md lists it). */
export function hookEnv(name: HookName, ctx: HookContext, parent: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(parent)) {
    if (v !== undefined && (PASSED_THROUGH.includes(k) || k.startsWith('LC_'))) env[k] = v;
  }
  env.PATH ??= DEFAULT_PATH;
  env.VAULTIK_HOOK = name;
  env.VAULTIK_CONFIG = ctx.config;
  env.VAULTIK_HOSTNAME = ctx.hostname;
  env.VAULTIK_STATUS = ctx.status;
  if (ctx.snapshotId !== undefined) env.VAULTIK_SNAPSHOT_ID = ctx.snapshotId;
  if (ctx.exitCode !== undefined) env.VAULTIK_EXIT_CODE = String(ctx.exitCode);
  if (ctx.error !== undefined) env.VAULTIK_ERROR = ctx.error;
  if (ctx.durationSeconds !== undefined) env.VAULTIK_DURATION_SECONDS = ctx.durationSeconds.toFixed(3);
  const c = ctx.counters;
  if (c) {
    env.VAULTIK_FILES = String(c.files);
    env.VAULTIK_FILES_CHANGED = String(c.filesChanged);
    env.VAULTIK_BYTES_READ = String(c.bytesRead);
    env.VAULTIK_BYTES_NEW = String(c.bytesNew);
    env.VAULTIK_BYTES_UPLOADED = String(c.bytesUploaded);
    env.VAULTIK_WARNINGS = String(c.warnings);
  }
  return env;
}

/**
 * Runs one hook to its end. @throws HookError when it cannot start, exits non-zero, dies of a
 * signal or outlives `timeoutMs`.
 */
export function runHook(name: HookName, cmd: HookCommand, ctx: HookContext, timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const [file, ...args] = cmd.shell ? ['/bin/sh', '-c', cmd.argv[0]!] : cmd.argv;
  return new Promise((resolve, reject) => {
    let output = '';
    const keep = (d: Buffer): void => {
      output = (output + d.toString('utf8')).slice(-OUTPUT_TAIL);
    };
    const child = spawn(file!, args, { env: hookEnv(name, ctx, env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    let killTimer: NodeJS.Timeout | undefined;
    const killGroup = (sig: NodeJS.Signals): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
    }, timeoutMs);
    const what = `the ${name} hook (${cmd.shell ? cmd.argv[0] : cmd.argv.join(' ')})`;
    let finished = false;
    const finish = (err?: string): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      // A background process of the hook may hold the pipes open: stop reading them.
      child.stdout.destroy();
      child.stderr.destroy();
      if (err === undefined) return resolve();
      const tail = output.trim();
      reject(new HookError(`${what} ${err}${tail ? `; its output ended with:\n${tail}` : ''}`));
    };
    child.on('error', (e) => finish(`could not start: ${e.message}`));
    child.on('exit', (code, signal) => {
      const result = timedOut
        ? `timed out after ${timeoutMs / 1000}s and was killed`
        : signal !== null
          ? `was killed by ${signal}`
          : code !== 0
            ? `exited with status ${code}`
            : undefined;
      // Let the pipes drain (their 'close' comes after 'exit'), but not for long: a background
      // process of the hook may keep them open.
      const drained = setTimeout(() => finish(result), OUTPUT_DRAIN_MS);
      child.once('close', () => {
        clearTimeout(drained);
        finish(result);
      });
    });
  });
}
