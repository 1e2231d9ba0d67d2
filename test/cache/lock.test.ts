import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { acquireLock, lockPathFor, processStartOf, type LockOwner } from '../../src/cache/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import ts from 'typescript';

let tmp: { dir: string; cleanup: () => void };
let lockPath: string;
beforeEach(() => {
  tmp = makeTempDir('vaultik-lock-');
  lockPath = lockPathFor(join(tmp.dir, 'state', 'index.sqlite'));
  mkdirSync(join(tmp.dir, 'state'));
});
afterEach(() => tmp.cleanup());

function lockedError(fn: () => unknown): VaultikError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(VaultikError);
    expect((e as VaultikError).exitCode).toBe(ExitCode.LOCKED);
    return e as VaultikError;
  }
  throw new Error('expected LOCKED');
}

function writeLock(owner: LockOwner): void {
  writeFileSync(lockPath, `${JSON.stringify(owner)}\n`);
}

/** A pid that no longer exists. */
function deadPid(): number {
  const r = spawnSync('sh', ['-c', 'echo $$']);
  return Number(r.stdout.toString().trim());
}

describe('state cache lock', () => {
  it('is exclusive while held, names the holder, and is reusable after release', () => {
    expect(lockPath.endsWith('index.sqlite.lock')).toBe(true);
    const a = acquireLock(lockPath);
    const content = JSON.parse(readFileSync(lockPath, 'utf8')) as LockOwner;
    expect(content).toMatchObject({ pid: process.pid, hostname: hostname() });
    expect(new Date(content.startedAt).getTime()).toBeGreaterThan(Date.now() - 60_000);
    const err = lockedError(() => acquireLock(lockPath));
    expect(err.message).toContain(`pid ${process.pid} on host ${hostname()}`);
    expect(err.message).toContain(lockPath);
    a.release();
    a.release();
    expect(existsSync(lockPath)).toBe(false);
    const b = acquireLock(lockPath);
    b.release();
    expect(readdirSync(join(tmp.dir, 'state'))).toEqual([]);
  });

  it('a lock held by a live process fails with LOCKED; once that process dies the lock is taken over', async () => {
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const pid = child.pid!;
    await new Promise((r) => setTimeout(r, 50));
    const start = processStartOf(pid);
    writeLock({ pid, hostname: hostname(), startedAt: new Date().toISOString(), ...(start ? { processStart: start } : {}) });
    expect(lockedError(() => acquireLock(lockPath)).message).toContain(`pid ${pid}`);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const lock = acquireLock(lockPath);
    expect((JSON.parse(readFileSync(lockPath, 'utf8')) as LockOwner).pid).toBe(process.pid);
    lock.release();
  });

  it('takes over a stale lock whose pid is gone, or reused by another process', () => {
    writeLock({ pid: deadPid(), hostname: hostname(), startedAt: '2020-01-01T00:00:00.000Z' });
    acquireLock(lockPath).release();
    // Our own pid, but a different process start: the pid was reused after a crash or reboot.
    writeLock({ pid: process.pid, hostname: hostname(), startedAt: '2020-01-01T00:00:00.000Z', processStart: 'other-boot:1' });
    if (processStartOf(process.pid) !== undefined) acquireLock(lockPath).release();
  });

  it('never takes over a lock of another host', () => {
    writeLock({ pid: deadPid(), hostname: 'elsewhere.example', startedAt: '2020-01-01T00:00:00.000Z' });
    expect(lockedError(() => acquireLock(lockPath)).message).toMatch(/on host elsewhere\.example.*cannot be checked from this host/);
    expect(existsSync(lockPath)).toBe(true);
  });

  it('respects a live takeover guard and clears a dead one', () => {
    writeLock({ pid: deadPid(), hostname: hostname(), startedAt: '2020-01-01T00:00:00.000Z' });
    const guard = `${lockPath}.takeover`;
    writeFileSync(guard, JSON.stringify({ pid: process.pid, hostname: hostname(), startedAt: new Date().toISOString() }));
    expect(lockedError(() => acquireLock(lockPath, { pid: 424242 })).message).toMatch(/taking over a stale lock/);
    writeFileSync(guard, JSON.stringify({ pid: deadPid(), hostname: hostname(), startedAt: new Date().toISOString() }));
    const lock = acquireLock(lockPath);
    expect(existsSync(guard)).toBe(false);
    lock.release();
  });

  it('after one taker wins a stale lock, the next sees a live lock', () => {
    writeLock({ pid: deadPid(), hostname: hostname(), startedAt: '2020-01-01T00:00:00.000Z' });
    // Both see the same stale lock; liveness is decided per pid (424242 / 424243 are "alive").
    const alive = (o: LockOwner): boolean => o.pid === 424242 || o.pid === 424243;
    const first = acquireLock(lockPath, { pid: 424242, isAlive: alive });
    expect(lockedError(() => acquireLock(lockPath, { pid: 424243, isAlive: alive })).message).toContain('pid 424242');
    first.release();
  });

  it('release never removes a lock that is no longer ours', () => {
    const a = acquireLock(lockPath);
    writeLock({ pid: 424242, hostname: hostname(), startedAt: new Date().toISOString() });
    a.release();
    expect(existsSync(lockPath)).toBe(true);
  });
});

describe('state cache lock: unreadable content', () => {
  it('is respected while fresh and treated as debris when old', () => {
    writeFileSync(lockPath, 'garbage');
    expect(lockedError(() => acquireLock(lockPath)).message).toMatch(/unreadable lock file/);
    const old = (Date.now() - 3600_000) / 1000;
    utimesSync(lockPath, old, old);
    acquireLock(lockPath).release();
  });
});

/**
 * Real contention: lock.ts (and errors.ts) transpiled to plain JS, run by 8 processes at once
 * against the same stale lock. Each winner holds the lock until the test ends: exactly one may win.
 */
describe('state cache lock: concurrent processes', () => {
  it('exactly one of 8 processes racing for a stale lock gets it', async () => {
    const outDir = join(tmp.dir, 'js');
    mkdirSync(join(outDir, 'cache'), { recursive: true });
    for (const [src, dst] of [
      ['src/cache/lock.ts', 'cache/lock.js'],
      ['src/errors.ts', 'errors.js'],
    ] as const) {
      const out = ts.transpileModule(readFileSync(src, 'utf8'), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
      writeFileSync(join(outDir, dst.replace(/\.js$/, '.mjs')), out.outputText.replace(/'\.\.\/errors\.js'/, "'../errors.mjs'"));
    }
    writeLock({ pid: deadPid(), hostname: hostname(), startedAt: '2020-01-01T00:00:00.000Z' });
    const script = `
      import { acquireLock } from ${JSON.stringify(join(outDir, 'cache', 'lock.mjs'))};
      try { acquireLock(process.argv[1]); console.log('won'); process.stdin.resume(); }
      catch (e) { console.log(e.exitCode === 7 ? 'locked' : 'error ' + e.message); }
    `;
    const children = Array.from({ length: 8 }, () => spawn(process.execPath, ['--input-type=module', '-e', script, lockPath], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const results = await Promise.all(
      children.map(
        (c) =>
          new Promise<string>((resolve) => {
            let out = '';
            c.stdout.on('data', (d: Buffer) => {
              out += d.toString();
              if (out.includes('\n')) resolve(out.trim());
            });
            c.once('exit', () => resolve(out.trim()));
          }),
      ),
    );
    for (const c of children) c.stdin.end();
    await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
    expect(results.filter((r) => r === 'won')).toHaveLength(1);
    expect(results.filter((r) => r === 'locked')).toHaveLength(7);
  });
});
