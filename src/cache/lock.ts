/**
 * One backup at a time per state cache: a lock file next to the cache (`<index_path>.lock`)
 * holding the owner's pid, hostname, start time and (on Linux) a process-start fingerprint.
 *
 * Taking it is atomic: the content is written to a private temp file first, then hard-linked to
 * the lock name (link fails if the name exists), so no one ever sees a half-written lock.
 *
 * A lock is stale when its owner is on this host and is gone: the pid does not exist, or it now
 * belongs to a different process (the start fingerprint differs; pids get reused). A stale lock
 * is taken over under a short-lived guard file (`.lock.takeover`, itself created with O_EXCL):
 * the taker re-reads the lock inside the guard and removes it only if it is still the same stale
 * one, then competes for the lock name like anyone else. Two processes finding the same stale
 * lock therefore cannot both win. A lock owned by another host cannot be checked and is never
 * taken over: the user must remove it.
 */
import { closeSync, linkSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeSync, fsyncSync, mkdirSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { dirname } from 'node:path';
import { ExitCode, VaultikError } from '../errors.js';

export interface LockOwner {
  pid: number;
  hostname: string;
  /** ISO 8601 time the lock was taken. */
  startedAt: string;
  /** Linux: boot id + process start time, to tell a reused pid from the owner. */
  processStart?: string;
}

export interface LockOptions {
  /** Overrides for tests. */
  pid?: number;
  hostname?: string;
  /** Whether `pid` is a live process on this host (default: kill(pid, 0)). */
  isAlive?: (owner: LockOwner) => boolean;
}

/** The lock file of the cache at `indexPath`. */
export function lockPathFor(indexPath: string): string {
  return `${indexPath}.lock`;
}

/** Linux process fingerprint: "<boot id>:<start time in clock ticks>", or undefined. */
export function processStartOf(pid: number): string | undefined {
  try {
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces and ')': split after the last ')'. starttime is field 22.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = fields[19];
    return start ? `${boot}:${start}` : undefined;
  } catch {
    return undefined;
  }
}

/** Default liveness: the pid exists (EPERM means it exists under another user) and, where
 *  known, is the same process that took the lock. */
export function isOwnerAlive(owner: LockOwner): boolean {
  try {
    process.kill(owner.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (owner.processStart === undefined) return true;
  const now = processStartOf(owner.pid);
  return now === undefined || now === owner.processStart;
}

function parseOwner(text: string): LockOwner | undefined {
  try {
    const o = JSON.parse(text) as Partial<LockOwner>;
    if (typeof o.pid === 'number' && Number.isSafeInteger(o.pid) && o.pid > 0 && typeof o.hostname === 'string' && typeof o.startedAt === 'string') {
      return { pid: o.pid, hostname: o.hostname, startedAt: o.startedAt, ...(typeof o.processStart === 'string' ? { processStart: o.processStart } : {}) };
    }
  } catch {
    // fall through
  }
  return undefined;
}

function readOwner(path: string): { text: string; owner: LockOwner | undefined; ageMs: number } | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    return { text, owner: parseOwner(text), ageMs: Date.now() - statSync(path).mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** The owner recorded in the lock file at `lockPath`, or undefined (no lock, or unreadable). */
export function readLockOwner(lockPath: string): LockOwner | undefined {
  try {
    return readOwner(lockPath)?.owner;
  } catch {
    return undefined;
  }
}

/** Creates `path` with `content` atomically; false when it already exists. */
function createExclusive(path: string, content: string): boolean {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** An unparseable lock older than this is debris (the link makes partial writes impossible). */
const GARBAGE_AGE_MS = 60_000;
/** A takeover guard older than this belongs to a process that died mid-takeover. */
const GUARD_AGE_MS = 30_000;

export class CacheLock {
  private held = true;

  /** @internal Use acquireLock. */
  constructor(
    readonly path: string,
    readonly owner: LockOwner,
    private readonly content: string,
  ) {}

  /** Removes the lock if it is still ours. Idempotent. */
  release(): void {
    if (!this.held) return;
    this.held = false;
    const cur = readOwner(this.path);
    if (cur?.text === this.content) rmSync(this.path, { force: true });
  }
}

function lockedError(path: string, owner: LockOwner | undefined, why: string): VaultikError {
  const who = owner ? `pid ${owner.pid} on host ${owner.hostname} since ${owner.startedAt}` : 'an unknown process';
  return new VaultikError(
    `another backup holds the state cache lock (${who})${why}; lock file: ${path}`,
    ExitCode.LOCKED,
  );
}

/**
 * Takes the lock at `lockPath` (creating its directory), taking over a stale one.
 * @throws VaultikError (ExitCode.LOCKED) naming the owner's pid when a live process (or a
 *   process on another host) holds it.
 */
export function acquireLock(lockPath: string, options: LockOptions = {}): CacheLock {
  const owner: LockOwner = {
    pid: options.pid ?? process.pid,
    hostname: options.hostname ?? osHostname(),
    startedAt: new Date().toISOString(),
  };
  const start = options.pid === undefined ? processStartOf(process.pid) : undefined;
  if (start !== undefined) owner.processStart = start;
  const content = `${JSON.stringify(owner)}\n`;
  const isAlive = options.isAlive ?? isOwnerAlive;
  mkdirSync(dirname(lockPath), { recursive: true, mode: 0o700 });

  for (let attempt = 0; attempt < 5; attempt++) {
    if (createExclusive(lockPath, content)) return new CacheLock(lockPath, owner, content);
    const cur = readOwner(lockPath);
    if (!cur) continue; // released meanwhile: try again
    if (!cur.owner) {
      if (cur.ageMs < GARBAGE_AGE_MS) throw lockedError(lockPath, undefined, ' (unreadable lock file)');
    } else {
      if (cur.owner.hostname !== owner.hostname) {
        throw lockedError(lockPath, cur.owner, '; it cannot be checked from this host: remove the lock file if no backup runs there');
      }
      if (isAlive(cur.owner)) throw lockedError(lockPath, cur.owner, '');
    }
    takeOver(lockPath, cur.text, owner, isAlive);
  }
  throw lockedError(lockPath, readOwner(lockPath)?.owner, ' (the lock keeps changing hands)');
}

/** Removes the stale lock whose content is `staleText`, under the takeover guard. */
function takeOver(lockPath: string, staleText: string, me: LockOwner, isAlive: (o: LockOwner) => boolean): void {
  const guard = `${lockPath}.takeover`;
  const guardContent = `${JSON.stringify(me)}\n`;
  if (!createExclusive(guard, guardContent)) {
    const g = readOwner(guard);
    const dead = !g || !g.owner || g.ageMs > GUARD_AGE_MS || (g.owner.hostname === me.hostname && !isAlive(g.owner));
    if (!dead) throw lockedError(lockPath, g.owner, ' (another process is taking over a stale lock)');
    rmSync(guard, { force: true });
    if (!createExclusive(guard, guardContent)) return; // someone else got it: retry from the top
  }
  try {
    if (readOwner(lockPath)?.text === staleText) unlinkSync(lockPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  } finally {
    if (readOwner(guard)?.text === guardContent) rmSync(guard, { force: true });
  }
}
