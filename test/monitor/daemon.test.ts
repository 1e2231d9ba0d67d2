/**
 * The daemon with the monitoring keys, run in process (test/daemon/kit.ts): /metrics on a
 * loopback port (and not on the machine's other addresses), hooks around each run, a failing
 * before hook (exit code 9 in the failed-run event, no snapshot), and `vaultik status` (the real
 * CLI) against the running and then the stopped daemon.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { snapshotCount, startDaemon, waitFor, type RunningDaemon } from '../daemon/kit.js';
import { parsePromText, sampleValue } from '../helpers/promText.js';
import { runCli } from '../restore/helpers.js';
import { envHook, freePort, readEnvFile, readOrder } from './kit.js';

let ws: Workspace | undefined;
let running: RunningDaemon | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
  ws?.cleanup();
  ws = undefined;
});

const TIMING = 'backup_interval: 1s\nfull_scan_interval: 1h\nmin_time_between_run: 0';

/** An IPv4 address of this machine that is not loopback, if it has one. */
const external = Object.values(networkInterfaces())
  .flat()
  .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address;

function connectError(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(3000, () => {
      socket.destroy();
      resolve('timeout');
    });
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

interface StatusLine {
  type: string;
  running: boolean;
  known: boolean;
  state: string;
  pid: number;
  dirtyPaths: number;
  nextRunAt?: string;
  lastRun?: { result: string; snapshotId?: string; exitCode?: number };
  lastCheckAt?: string;
  lastSuccessAt?: string;
  lastError?: { message: string; exitCode: number };
  consecutiveFailures: number;
}

async function status(configPath: string): Promise<StatusLine> {
  const res = await runCli(['status', configPath, '--json'], { HOME: '/nonexistent' });
  expect(res.stderr).toBe('');
  expect(res.code).toBe(0);
  const lines = res.stdout.split('\n').filter(Boolean);
  expect(lines).toHaveLength(1);
  return JSON.parse(lines[0]!) as StatusLine;
}

describe('daemon with monitoring', () => {
  it('serves /metrics on 127.0.0.1 only, with the textfile written after each run', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'f'), 'f');
    const port = await freePort();
    const metricsFile = join(ws.root, 'vaultik.prom');
    ws.writeConfig(`${TIMING}\nmetrics_listen: 127.0.0.1:${port}\nmetrics_file: ${metricsFile}`);
    running = startDaemon(ws);
    await running.next('run');
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const m = parsePromText(await res.text());
    expect(sampleValue(m, 'vaultik_backup_last_run_success')).toBe(1);
    expect(sampleValue(m, 'vaultik_backup_snapshots_total')).toBe(1);
    expect(sampleValue(m, 'vaultik_daemon_dirty_paths')).toBeGreaterThanOrEqual(0);
    expect(sampleValue(m, 'vaultik_daemon_next_run_timestamp_seconds')).toBeGreaterThan(Date.now() / 1000 - 60);
    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);
    // The textfile holds the same families (the HTTP-only dirty count aside).
    const file = parsePromText(readFileSync(metricsFile, 'utf8'));
    expect(sampleValue(file, 'vaultik_backup_last_run_success')).toBe(1);
    // A check that finds nothing changed keeps the last success current.
    const before = sampleValue(m, 'vaultik_backup_last_success_timestamp_seconds');
    await running.next('skipped');
    // The metrics follow the 'skipped' event (after its ping, if any).
    const later = await waitFor('the last success to advance', async () => {
      const now = parsePromText(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
      return sampleValue(now, 'vaultik_backup_last_success_timestamp_seconds') > before ? now : undefined;
    });
    expect(sampleValue(later, 'vaultik_backup_snapshots_total')).toBe(1);
  });

  it.skipIf(external === undefined)(`/metrics is not reachable on the machine's non-loopback address (${external ?? 'none: skipped'})`, async () => {
    ws = makeWorkspace();
    const port = await freePort();
    ws.writeConfig(`${TIMING}\nmetrics_listen: 127.0.0.1:${port}`);
    running = startDaemon(ws);
    await running.next('run');
    expect(await connectError('127.0.0.1', port)).toBe('connected');
    expect(await connectError(external!, port)).toBe('ECONNREFUSED');
  });

  it('runs the hooks around each run; status reports the running daemon, its last run and then its stop', async () => {
    ws = makeWorkspace();
    const hooksDir = join(ws.root, 'hooks');
    mkdirSync(hooksDir);
    writeFileSync(join(ws.src, 'f'), 'f');
    ws.writeConfig(`${TIMING}\nhooks:\n  before: ${envHook(hooksDir, 'before')}\n  after: ${envHook(hooksDir, 'after')}\n  on_error: ${envHook(hooksDir, 'on_error')}`);
    const none = await status(ws.configPath);
    expect(none).toMatchObject({ type: 'status', running: false, known: false });

    running = startDaemon(ws);
    const run = await running.next('run');
    expect(readOrder(hooksDir).slice(0, 2)).toEqual(['before', 'after']);
    expect(readEnvFile(hooksDir, 'after')).toMatchObject({ VAULTIK_HOOK: 'after', VAULTIK_SNAPSHOT_ID: run.snapshotId, VAULTIK_STATUS: 'success' });
    await running.next('skipped');
    // Checks that find nothing changed run no hook.
    expect(readOrder(hooksDir)).toEqual(['before', 'after']);

    // The status file follows the 'skipped' event.
    const s = await waitFor('the skipped check in the status', async () => {
      const st = await status(ws!.configPath);
      return st.lastCheckAt !== undefined ? st : undefined;
    });
    expect(s).toMatchObject({ running: true, known: true, pid: process.pid, consecutiveFailures: 0 });
    expect(['idle', 'running']).toContain(s.state);
    // The last run stays the one that wrote the snapshot; the check after it is apart.
    expect(s.lastRun).toMatchObject({ result: 'success', snapshotId: run.snapshotId });
    expect(s.lastSuccessAt).toBeDefined();
    expect(s.nextRunAt).toBeDefined();
    // Text mode, as a person reads it.
    const text = await runCli(['status', ws.configPath], { HOME: '/nonexistent' });
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`daemon: running, pid ${process.pid}`);
    expect(text.stdout).toContain('dirty paths: ');
    expect(text.stdout).toContain(`last run: success, snapshot ${run.snapshotId}`);
    expect(text.stdout).toContain('last check: nothing changed');

    await running.stop();
    running = undefined;
    const stopped = await status(ws.configPath);
    expect(stopped).toMatchObject({ running: false, known: true, state: 'stopped' });
  });

  it('a metrics textfile inside a source dir is left out: writing it after a run does not trigger the next run', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'f'), 'f');
    mkdirSync(join(ws.src, 'textfile'));
    ws.writeConfig(`${TIMING}\nmetrics_file: ${join(ws.src, 'textfile', 'vaultik.prom')}`);
    running = startDaemon(ws);
    await running.next('run');
    const from = running.events.length;
    await running.next('skipped', from);
    await running.next('skipped', running.events.length);
    expect(running.count('run')).toBe(1);
    expect(running.count('run-failed')).toBe(0);
  });

  it('a failing before hook fails the run with exit code 9 and writes no snapshot; status shows the error', async () => {
    ws = makeWorkspace();
    const hooksDir = join(ws.root, 'hooks');
    mkdirSync(hooksDir);
    writeFileSync(join(ws.src, 'f'), 'f');
    ws.writeConfig(`${TIMING}\nhooks:\n  before: ${envHook(hooksDir, 'before', 1)}\n  on_error: ${envHook(hooksDir, 'on_error')}`);
    running = startDaemon(ws);
    const failed = await running.next('run-failed');
    expect(failed.exitCode).toBe(9);
    expect(failed.message).toContain('the backup was skipped');
    expect(snapshotCount(ws.store)).toBe(0);
    await waitFor('the on_error hook', () => readOrder(hooksDir).includes('on_error'));
    expect(readEnvFile(hooksDir, 'on_error')).toMatchObject({ VAULTIK_STATUS: 'failure', VAULTIK_EXIT_CODE: '9' });
    const s = await waitFor('the status after the failure', async () => {
      const st = await status(ws!.configPath);
      return st.lastError ? st : undefined;
    });
    expect(s).toMatchObject({ running: true, lastRun: { result: 'failure', exitCode: 9 }, lastError: { exitCode: 9 } });
    // Retried with backoff: one failure or more by now.
    expect(s.consecutiveFailures).toBeGreaterThanOrEqual(1);
    expect(s.lastSuccessAt).toBeUndefined();
  });
});
