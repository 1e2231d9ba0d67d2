/**
 * `vaultik backup` (one-shot and --cron) as a real process with the monitoring keys: the metrics
 * textfile (parsed with a strict text-format parser, holding every documented name, keeping the
 * last success across a failed run), hooks in order with their documented environment and no
 * secret, a failing before hook (exit 9, no snapshot), and health-check pings to a local server,
 * to a closed port and to a server that never answers.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { snapshotCount } from '../daemon/kit.js';
import { parsePromText, sampleValue } from '../helpers/promText.js';
import { runCli } from '../restore/helpers.js';
import { documentedMetricNames, envHook, freePort, readEnvFile, readOrder, startPingServer, type PingServer } from './kit.js';

let ws: Workspace | undefined;
let server: PingServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  ws?.cleanup();
  ws = undefined;
});

const ENV = { HOME: '/nonexistent', VAULTIK_RETRY_TIME: '1s' };

function setup(extra: string): { w: Workspace; hooksDir: string; metricsFile: string } {
  const w = (ws = makeWorkspace());
  const hooksDir = join(w.root, 'hooks');
  mkdirSync(hooksDir);
  for (let i = 0; i < 5; i++) writeFileSync(join(w.src, `f${i}`), `file ${i}\n`.repeat(100 * (i + 1)));
  const metricsFile = join(w.root, 'textfile', 'vaultik.prom');
  w.writeConfig(`metrics_file: ${metricsFile}\n${extra}`);
  return { w, hooksDir, metricsFile };
}

describe('backup with monitoring', () => {
  it('writes the metrics textfile after a success and after a failure, keeping the last success', async () => {
    const { w, metricsFile } = setup('');
    const t0 = Date.now() / 1000;
    const ok = await runCli(['backup', w.configPath, '--cron'], ENV);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    const first = parsePromText(readFileSync(metricsFile, 'utf8'));
    // Every documented name is there, except the daemon's own.
    const documented = documentedMetricNames();
    expect(documented.length).toBeGreaterThan(10);
    for (const name of documented.filter((n) => !n.startsWith('vaultik_daemon_'))) expect(first.has(name), name).toBe(true);
    for (const f of first.values()) {
      expect(f.help, f.name).toBeTruthy();
      expect(['gauge', 'counter'], f.name).toContain(f.type);
      if (f.type === 'counter') expect(f.name).toMatch(/_total$/);
      for (const s of f.samples) expect(s.labels.config).toBe(w.configPath);
    }
    const lastSuccess = sampleValue(first, 'vaultik_backup_last_success_timestamp_seconds');
    expect(lastSuccess).toBeGreaterThanOrEqual(t0 - 1);
    expect(lastSuccess).toBeLessThanOrEqual(Date.now() / 1000 + 1);
    expect(sampleValue(first, 'vaultik_backup_last_run_success')).toBe(1);
    expect(sampleValue(first, 'vaultik_backup_last_run_files')).toBe(5);
    expect(sampleValue(first, 'vaultik_backup_last_run_read_bytes')).toBe(7 * 100 * 15);
    expect(sampleValue(first, 'vaultik_backup_last_run_uploaded_bytes')).toBeGreaterThan(0);
    expect(sampleValue(first, 'vaultik_backup_runs_total', { result: 'success' })).toBe(1);
    expect(sampleValue(first, 'vaultik_backup_snapshots_total')).toBe(1);

    // The store goes away: the run fails (exit 6), the last success stays the one before.
    rmSync(w.store, { recursive: true });
    const failed = await runCli(['backup', w.configPath, '--cron'], ENV);
    expect(failed.code).toBe(6);
    const second = parsePromText(readFileSync(metricsFile, 'utf8'));
    expect(sampleValue(second, 'vaultik_backup_last_success_timestamp_seconds')).toBe(lastSuccess);
    expect(sampleValue(second, 'vaultik_backup_last_run_success')).toBe(0);
    expect(sampleValue(second, 'vaultik_backup_last_run_exit_code')).toBe(6);
    expect(sampleValue(second, 'vaultik_backup_last_run_errors')).toBe(1);
    expect(sampleValue(second, 'vaultik_backup_consecutive_failures')).toBe(1);
    expect(sampleValue(second, 'vaultik_backup_runs_total', { result: 'success' })).toBe(1);
    expect(sampleValue(second, 'vaultik_backup_runs_total', { result: 'failure' })).toBe(1);
    expect(sampleValue(second, 'vaultik_backup_snapshots_total')).toBe(1);
    // Written atomically: no temp file is left beside it.
    expect(readdirSync(join(w.root, 'textfile'))).toEqual(['vaultik.prom']);
  });

  it('runs before and after hooks in order with the documented environment and no secret; pings start and success', async () => {
    server = await startPingServer();
    const { w, hooksDir } = setup('');
    w.writeConfig(
      [
        `metrics_file: ${join(w.root, 'textfile', 'vaultik.prom')}`,
        'hooks:',
        `  before: ${envHook(hooksDir, 'before')}`,
        `  after: ${envHook(hooksDir, 'after')}`,
        `  on_error: ${envHook(hooksDir, 'on_error')}`,
        '  timeout: 10s',
        `healthcheck_url: ${server.url}`,
      ].join('\n'),
    );
    const secrets = {
      AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'secret-do-not-leak',
      VAULTIK_PRIVATE_KEY: 'AGE-SECRET-KEY-1NOTREAL',
      SOME_TOKEN: 'token-do-not-leak',
      LANG: 'C.UTF-8',
    };
    const res = await runCli(['backup', w.configPath, '--json'], { ...ENV, ...secrets });
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const summary = res.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; snapshotId?: string })
      .find((e) => e.type === 'summary');
    expect(summary?.snapshotId).toMatch(/^testhost-/);

    expect(readOrder(hooksDir)).toEqual(['before', 'after']);
    const before = readEnvFile(hooksDir, 'before');
    const after = readEnvFile(hooksDir, 'after');
    expect(before).toMatchObject({ VAULTIK_HOOK: 'before', VAULTIK_STATUS: 'running', VAULTIK_CONFIG: w.configPath, VAULTIK_HOSTNAME: 'testhost', LANG: 'C.UTF-8' });
    expect(before.VAULTIK_SNAPSHOT_ID).toBeUndefined();
    expect(after).toMatchObject({
      VAULTIK_HOOK: 'after',
      VAULTIK_STATUS: 'success',
      VAULTIK_EXIT_CODE: '0',
      VAULTIK_SNAPSHOT_ID: summary!.snapshotId!,
      VAULTIK_FILES: '5',
      VAULTIK_FILES_CHANGED: '5',
      VAULTIK_BYTES_READ: String(7 * 100 * 15),
      VAULTIK_WARNINGS: '0',
    });
    expect(Number(after.VAULTIK_BYTES_UPLOADED)).toBeGreaterThan(0);
    expect(Number(after.VAULTIK_DURATION_SECONDS)).toBeGreaterThan(0);
    // The environment is built, not inherited: only the documented variables (the shell adds PWD, SHLVL, _).
    const allowed = /^(VAULTIK_(HOOK|CONFIG|HOSTNAME|STATUS|SNAPSHOT_ID|EXIT_CODE|ERROR|DURATION_SECONDS|FILES|FILES_CHANGED|BYTES_READ|BYTES_NEW|BYTES_UPLOADED|WARNINGS)|PATH|HOME|USER|LOGNAME|LANG|LANGUAGE|TZ|TMPDIR|LC_\w+|PWD|OLDPWD|SHLVL|_)$/;
    for (const env of [before, after]) {
      for (const k of Object.keys(env)) expect(k).toMatch(allowed);
      for (const secret of Object.values(secrets).filter((v) => v !== 'C.UTF-8')) expect(JSON.stringify(env)).not.toContain(secret);
    }
    expect(server.paths).toEqual(['/hc/start', '/hc']);
  });

  it('a failing before hook skips the run (exit 9, no snapshot), runs on_error and pings /fail', async () => {
    server = await startPingServer();
    const { w, hooksDir, metricsFile } = setup('');
    w.writeConfig(
      [
        `metrics_file: ${metricsFile}`,
        'hooks:',
        `  before: ${envHook(hooksDir, 'before', 3)}`,
        `  after: ${envHook(hooksDir, 'after')}`,
        `  on_error: ${envHook(hooksDir, 'on_error')}`,
        `healthcheck_url: ${server.url}`,
      ].join('\n'),
    );
    const res = await runCli(['backup', w.configPath], ENV);
    expect(res.code).toBe(9);
    expect(res.stderr).toContain('the before hook');
    expect(res.stderr).toContain('exited with status 3');
    expect(res.stderr).toContain('the backup was skipped');
    expect(snapshotCount(w.store)).toBe(0);
    expect(readOrder(hooksDir)).toEqual(['before', 'on_error']);
    expect(readEnvFile(hooksDir, 'on_error')).toMatchObject({ VAULTIK_HOOK: 'on_error', VAULTIK_STATUS: 'failure', VAULTIK_EXIT_CODE: '9' });
    expect(readEnvFile(hooksDir, 'on_error').VAULTIK_ERROR).toContain('before hook');
    expect(server.paths).toEqual(['/hc/start', '/hc/fail']);
    const m = parsePromText(readFileSync(metricsFile, 'utf8'));
    expect(sampleValue(m, 'vaultik_backup_last_run_exit_code')).toBe(9);
    expect(m.has('vaultik_backup_last_success_timestamp_seconds')).toBe(false);
  });

  it('a dead ping URL (closed port) and one that never answers do not fail the backup; the warning names no path', async () => {
    const { w } = setup('');
    const dead = await freePort();
    w.writeConfig(`healthcheck_url: http://127.0.0.1:${dead}/secret-uuid\nhealthcheck_timeout: 300ms`);
    const closed = await runCli(['backup', w.configPath, '--cron'], ENV);
    expect(closed.code).toBe(0);
    expect(closed.stderr).toContain(`health-check ping (start) to http://127.0.0.1:${dead} failed: ECONNREFUSED`);
    expect(closed.stderr).toContain('health-check ping (success)');
    expect(closed.stderr).not.toContain('secret-uuid');
    expect(snapshotCount(w.store)).toBe(1);

    server = await startPingServer({ hang: true });
    w.writeConfig(`healthcheck_url: ${server.url}/secret-uuid\nhealthcheck_timeout: 300ms`);
    writeFileSync(join(w.src, 'new'), 'new');
    const started = Date.now();
    const hung = await runCli(['backup', w.configPath, '--cron'], ENV);
    expect(hung.code).toBe(0);
    expect(hung.stderr).toContain('no answer within 0.3s');
    expect(hung.stderr).not.toContain('secret-uuid');
    expect(server.paths).toEqual(['/hc/secret-uuid/start', '/hc/secret-uuid']);
    expect(snapshotCount(w.store)).toBe(2);
    // Two pings of 0.3 s at most: the run is not held up by the hanging server.
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});
