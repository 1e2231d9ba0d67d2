/**
 * The daemon's status file, `<index_path>.status.json` beside the state cache, which
 * `vaultik status` reads (docs/MONITORING.md "vaultik status").
 *
 * Contracts:
 * - The daemon replaces it atomically (metrics.ts writeFileAtomic) at each change of state:
 *   start, run start and end, a skipped check, the next run planned, stop; and every few
 *   seconds while the count of dirty paths changes. Mode 0600: it names paths and errors.
 * - Whether the daemon is running is not taken from the file alone: the pid it names must be
 *   alive and be the same process (Linux process-start fingerprint, as for the cache lock).
 * - A reader treats the file as untrusted input: anything that is not the expected shape is
 *   reported as unreadable, never half used.
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { isOwnerAlive, lockPathFor, processStartOf, readLockOwner } from '../cache/lock.js';
import { writeFileAtomic } from './metrics.js';

export const STATUS_VERSION = 1;

/** A backup run (a check that found nothing changed is not one: see `lastCheckAt`). */
export interface LastRun {
  result: 'success' | 'warnings' | 'failure';
  startedAt: string;
  endedAt: string;
  durationMs: number;
  snapshotId?: string;
  exitCode?: number;
  message?: string;
}

export interface DaemonStatus {
  version: typeof STATUS_VERSION;
  pid: number;
  /** Linux: boot id + process start time (tells a reused pid from the daemon). */
  processStart?: string;
  hostname: string;
  config: string;
  startedAt: string;
  updatedAt: string;
  /** What the daemon is doing. 'stopped': it exited cleanly. */
  state: 'starting' | 'idle' | 'running' | 'stopped';
  watching: boolean;
  nextRunAt?: string;
  dirtyPaths: number;
  lastRun?: LastRun;
  /** The last check that found nothing changed (no run, no snapshot: the backup is up to date). */
  lastCheckAt?: string;
  lastSuccessAt?: string;
  lastError?: { time: string; message: string; exitCode: number };
  consecutiveFailures: number;
}

/** This process as a status file names it: pid, process-start fingerprint, host name. */
export function selfIdentity(): Pick<DaemonStatus, 'pid' | 'processStart' | 'hostname'> {
  const processStart = processStartOf(process.pid);
  return { pid: process.pid, ...(processStart !== undefined ? { processStart } : {}), hostname: hostname() };
}

export function statusPathFor(indexPath: string): string {
  return `${indexPath}.status.json`;
}

export function writeStatus(path: string, status: DaemonStatus): void {
  // Beside the state cache: a directory created here gets the cache's own 0700.
  writeFileAtomic(path, JSON.stringify(status, null, 2) + '\n', 0o600, 0o700);
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isOptStr = (v: unknown): boolean => v === undefined || isStr(v);
const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function validLastRun(v: unknown): boolean {
  if (v === undefined) return true;
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    ['success', 'warnings', 'failure'].includes(r.result as string) &&
    isStr(r.startedAt) &&
    isStr(r.endedAt) &&
    isCount(r.durationMs) &&
    isOptStr(r.snapshotId) &&
    (r.exitCode === undefined || isCount(r.exitCode)) &&
    isOptStr(r.message)
  );
}

/**
 * The status file's content. @returns undefined when there is none;
 * @throws Error with a reason when it exists but is not a status file of this version.
 */
export function readStatus(path: string): DaemonStatus | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`${path} is not JSON`);
  }
  const e = v.lastError as Record<string, unknown> | undefined;
  const ok =
    typeof v === 'object' &&
    v !== null &&
    v.version === STATUS_VERSION &&
    isCount(v.pid) &&
    (v.pid as number) > 0 &&
    isOptStr(v.processStart) &&
    isStr(v.hostname) &&
    isStr(v.config) &&
    isStr(v.startedAt) &&
    isStr(v.updatedAt) &&
    ['starting', 'idle', 'running', 'stopped'].includes(v.state as string) &&
    typeof v.watching === 'boolean' &&
    isOptStr(v.nextRunAt) &&
    isCount(v.dirtyPaths) &&
    validLastRun(v.lastRun) &&
    isOptStr(v.lastCheckAt) &&
    isOptStr(v.lastSuccessAt) &&
    (e === undefined || (typeof e === 'object' && e !== null && isStr(e.time) && isStr(e.message) && isCount(e.exitCode))) &&
    isCount(v.consecutiveFailures);
  if (!ok) throw new Error(`${path} is not a vaultik status file (version ${STATUS_VERSION})`);
  return v as unknown as DaemonStatus;
}

/** Whether the daemon the status names is alive (its pid, same process), and who holds the cache lock. */
export function liveness(status: DaemonStatus, indexPath: string): { running: boolean; lockPid?: number } {
  const running =
    status.state !== 'stopped' &&
    isOwnerAlive({ pid: status.pid, hostname: status.hostname, startedAt: status.startedAt, ...(status.processStart !== undefined ? { processStart: status.processStart } : {}) });
  const owner = readLockOwner(lockPathFor(indexPath));
  return { running, ...(owner ? { lockPid: owner.pid } : {}) };
}
