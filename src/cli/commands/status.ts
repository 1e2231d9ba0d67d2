/**
 * `vaultik status <config.yaml> [--json]`: how the config's daemon is doing, read from the status
 * file it keeps beside its state cache (`<index_path>.status.json`, src/monitor/state.ts) plus a
 * liveness check of the pid it names. Reads nothing from the store and needs no key.
 *
 * Exit codes: 0 the status was shown (whether or not the daemon runs: see `running`); 2 bad
 * arguments or config; 1 a status file that cannot be read.
 */
import { loadConfig } from '../../config/index.js';
import { VaultikError } from '../../errors.js';
import { escapeControlText } from '../../fs/paths.js';
import { liveness, readStatus, statusPathFor, type DaemonStatus } from '../../monitor/index.js';
import { expectPositionals, parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { formatDuration } from '../render/format.js';
import { JsonLines } from '../render/json.js';

const USAGE = 'vaultik status <config.yaml> [--json]';
const OPTIONS = { json: { type: 'boolean', help: 'print one JSON line instead of text' } } as const satisfies CommandOptions;

function when(iso: string | undefined, now: number): string {
  if (iso === undefined) return 'unknown';
  const ms = Date.parse(iso) - now;
  if (!Number.isFinite(ms)) return iso;
  return `${iso} (${ms >= 0 ? `in ${formatDuration(ms)}` : `${formatDuration(-ms)} ago`})`;
}

function textLines(s: DaemonStatus, running: boolean, lockPid: number | undefined, now: number): string[] {
  const lines: string[] = [];
  if (running) lines.push(`daemon: running, pid ${s.pid}, since ${when(s.startedAt, now)}`);
  else lines.push(`daemon: not running (${s.state === 'stopped' ? 'stopped' : `pid ${s.pid} is gone`}; status updated ${when(s.updatedAt, now)})`);
  if (running) {
    lines.push(`state: ${s.state === 'running' ? 'backing up' : s.state}`);
    lines.push(`watching: ${s.watching ? 'yes' : 'no (a full stat scan at every run)'}`);
    if (s.nextRunAt !== undefined) lines.push(`next run: ${when(s.nextRunAt, now)}`);
    lines.push(`dirty paths: ${s.dirtyPaths}`);
  }
  if (lockPid !== undefined) lines.push(`cache lock: held by pid ${lockPid}`);
  const r = s.lastRun;
  if (r) {
    const what = r.result === 'failure' ? `failed (exit ${r.exitCode ?? 1})` : `${r.result}, snapshot ${r.snapshotId ?? '?'}`;
    lines.push(`last run: ${what}, ended ${when(r.endedAt, now)}, took ${formatDuration(r.durationMs)}`);
  } else lines.push('last run: none yet');
  if (s.lastCheckAt !== undefined) lines.push(`last check: nothing changed, ${when(s.lastCheckAt, now)}`);
  lines.push(`last success: ${s.lastSuccessAt !== undefined ? when(s.lastSuccessAt, now) : 'none yet'}`);
  if (s.consecutiveFailures > 0) lines.push(`failures in a row: ${s.consecutiveFailures}`);
  if (s.lastError) lines.push(`last error: ${when(s.lastError.time, now)}: ${escapeControlText(s.lastError.message)} (exit ${s.lastError.exitCode})`);
  return lines;
}

async function status(argv: string[], io: CommandIO): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
  expectPositionals(positionals, 1, 1, USAGE);
  const config = loadConfig(positionals[0]!);
  const path = statusPathFor(config.indexPath);
  let s: DaemonStatus | undefined;
  try {
    s = readStatus(path);
  } catch (err) {
    throw new VaultikError((err as Error).message, undefined, { cause: err });
  }
  const now = Date.now();
  if (s === undefined) {
    if (values.json) new JsonLines(io.stdout).write({ type: 'status', config: config.sourcePath, statusFile: path, running: false, known: false });
    else io.stdout.write(`daemon: no status: no daemon has run with this config (no ${path})\n`);
    return 0;
  }
  const { running, lockPid } = liveness(s, config.indexPath);
  if (values.json) {
    // The file's fields first: what was computed here wins over anything the file says.
    new JsonLines(io.stdout).write({ ...s, type: 'status', statusFile: path, running, known: true, ...(lockPid !== undefined ? { lockPid } : {}) });
  } else {
    io.stdout.write(textLines(s, running, lockPid, now).join('\n') + '\n');
  }
  return 0;
}

export const statusCommand: Command = {
  name: 'status',
  summary: "show how the config's daemon is doing (running, last and next run, errors)",
  usage: USAGE,
  options: OPTIONS,
  run: status,
};
