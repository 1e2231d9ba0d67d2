/**
 * `vaultik backup --daemon` execs itself with glibc's malloc settings (src/cli/daemonEnv.ts): the
 * rule, and the real executable (dist/cli/bin.js): the daemon process, same pid, has them; a
 * value the user set stays.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { daemonExecEnv } from '../../src/cli/daemonEnv.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { MAIN, cleanEnv, ensureBuilt } from '../backup/cli.js';
import { waitFor } from './kit.js';

describe('daemonExecEnv', () => {
  const env = { PATH: '/usr/bin' };
  const malloc = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_TRIM_THRESHOLD_: '65536' };
  it('sets the malloc settings for backup --daemon on Linux, keeping the rest of the environment', () => {
    expect(daemonExecEnv(['backup', 'c.yaml', '--daemon'], env, 'linux')).toEqual({ PATH: '/usr/bin', ...malloc });
    expect(daemonExecEnv(['backup', '--daemon', 'c.yaml', '--json'], env, 'linux')).toEqual({ PATH: '/usr/bin', ...malloc });
  });
  it('keeps a value the user set, and execs no more once all are set', () => {
    expect(daemonExecEnv(['backup', 'c.yaml', '--daemon'], { ...env, MALLOC_ARENA_MAX: '8' }, 'linux')).toEqual({ PATH: '/usr/bin', ...malloc, MALLOC_ARENA_MAX: '8' });
    expect(daemonExecEnv(['backup', 'c.yaml', '--daemon'], { ...env, ...malloc, MALLOC_ARENA_MAX: '8' }, 'linux')).toBeUndefined();
  });
  it('leaves every other command, --help and other systems alone', () => {
    expect(daemonExecEnv(['backup', 'c.yaml'], env, 'linux')).toBeUndefined();
    expect(daemonExecEnv(['backup', 'c.yaml', '--cron'], env, 'linux')).toBeUndefined();
    expect(daemonExecEnv(['restore', '--daemon'], env, 'linux')).toBeUndefined();
    expect(daemonExecEnv(['backup', '--daemon', '--help'], env, 'linux')).toBeUndefined();
    expect(daemonExecEnv(['backup', 'c.yaml', '--daemon'], env, 'darwin')).toBeUndefined();
  });
});

describe.skipIf(process.platform !== 'linux')('vaultik backup --daemon (dist/cli/bin.js)', () => {
  let ws: Workspace | undefined;
  let child: ChildProcess | undefined;
  beforeAll(() => ensureBuilt(), 120_000);
  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    child = undefined;
    ws?.cleanup();
    ws = undefined;
  });

  /** Starts the daemon; returns its pid as its 'started' event says and its environment then. */
  async function daemonEnviron(extra: NodeJS.ProcessEnv): Promise<{ eventPid: unknown; environ: string[] }> {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'a.txt'), 'a');
    mkdirSync(join(ws.src, 'd'));
    ws.writeConfig('backup_interval: 1h');
    child = spawn(process.execPath, [MAIN, 'backup', ws.configPath, '--daemon', '--json'], { env: cleanEnv(extra), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const started = await waitFor('the started event', () => out.split('\n').find((l) => l.includes('"type":"started"')));
    const environ = readFileSync(`/proc/${child.pid}/environ`, 'utf8').split('\0');
    return { eventPid: (JSON.parse(started) as { pid: unknown }).pid, environ };
  }

  it('runs with the malloc settings, in the process it was started as', async () => {
    const { eventPid, environ } = await daemonEnviron({});
    expect(environ).toEqual(expect.arrayContaining(['MALLOC_ARENA_MAX=2', 'MALLOC_MMAP_THRESHOLD_=65536', 'MALLOC_TRIM_THRESHOLD_=65536']));
    expect(eventPid).toBe(child!.pid);
  });

  it('keeps a MALLOC_ARENA_MAX the user set', async () => {
    const { environ } = await daemonEnviron({ MALLOC_ARENA_MAX: '4' });
    expect(environ).toContain('MALLOC_ARENA_MAX=4');
    expect(environ).not.toContain('MALLOC_ARENA_MAX=2');
    expect(environ).toContain('MALLOC_TRIM_THRESHOLD_=65536');
  });
});
