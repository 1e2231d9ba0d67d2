/**
 * src/monitor's parts on their own: the exposition text against the strict parser (label
 * escaping, counters carried over through the textfile), and a hook past its timeout (its whole
 * process group killed).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HookError, STATUS_VERSION, emptyMetrics, statusPathFor, readPreviousMetrics, renderMetrics, runHook, writeFileAtomic } from '../../src/monitor/index.js';
import { makeWorkspace } from '../backup/helpers.js';
import { parsePromText, sampleValue } from '../helpers/promText.js';
import { runCli } from '../restore/helpers.js';
import { makeTempDir } from '../helpers/tmp.js';

let tmp: ReturnType<typeof makeTempDir> | undefined;
afterEach(() => {
  tmp?.cleanup();
  tmp = undefined;
});

describe('metrics text', () => {
  it('escapes the config label and carries the counters and last success over through the file', () => {
    tmp = makeTempDir();
    const config = '/etc/odd "name"\\with\nnewline.yaml';
    const state = { ...emptyMetrics(), lastSuccess: 1796600000.5, lastSnapshot: 1796600000.5, runsSuccess: 4, runsFailure: 2, snapshots: 4, consecutiveFailures: 1, nextRun: 1796603600 };
    const text = renderMetrics(state, config);
    const parsed = parsePromText(text);
    expect(sampleValue(parsed, 'vaultik_backup_runs_total', { config, result: 'failure' })).toBe(2);
    expect(sampleValue(parsed, 'vaultik_daemon_next_run_timestamp_seconds', { config })).toBe(1796603600);
    // No run yet: no last-run families.
    expect(parsed.has('vaultik_backup_last_run_success')).toBe(false);
    const file = join(tmp.dir, 'sub', 'v.prom');
    writeFileAtomic(file, text);
    expect(readFileSync(file, 'utf8')).toBe(text);
    expect(readPreviousMetrics(file)).toEqual({ ...emptyMetrics(), lastSuccess: 1796600000.5, lastSnapshot: 1796600000.5, runsSuccess: 4, runsFailure: 2, snapshots: 4, consecutiveFailures: 1 });
    expect(readPreviousMetrics(join(tmp.dir, 'missing.prom'))).toEqual(emptyMetrics());
  });
});

describe('hooks', () => {
  it('a hook past its timeout fails, and its whole process group is killed', async () => {
    tmp = makeTempDir();
    const marker = join(tmp.dir, 'survived');
    const started = Date.now();
    const err = await runHook('before', { argv: [`(sleep 3; touch ${marker}) & sleep 30`], shell: true }, { config: '/c.yaml', hostname: 'h', status: 'running' }, 1000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HookError);
    expect((err as HookError).exitCode).toBe(9);
    expect((err as Error).message).toContain('timed out after 1s and was killed');
    expect(Date.now() - started).toBeLessThan(5000);
    // The background child of the shell was in the group: it never gets to touch the marker.
    await new Promise((r) => setTimeout(r, 3000));
    expect(existsSync(marker)).toBe(false);
  });

  it('a hook that cannot start or exits non-zero fails with its output', async () => {
    const ctx = { config: '/c.yaml', hostname: 'h', status: 'running' } as const;
    await expect(runHook('after', { argv: ['/nonexistent/hook'], shell: false }, ctx, 5000)).rejects.toThrow('the after hook (/nonexistent/hook) could not start: spawn /nonexistent/hook ENOENT');
    await expect(runHook('after', { argv: ['echo out; echo err >&2; exit 4'], shell: true }, ctx, 5000)).rejects.toThrow(/exited with status 4; its output ended with:\nout\nerr/);
  });
});

describe('status', () => {
  it('a status file whose daemon is gone reads as not running, whatever extra fields it holds; a malformed one is exit 1', async () => {
    const ws = makeWorkspace();
    try {
      const forged = {
        version: STATUS_VERSION,
        pid: 2 ** 22 + 7, // above the kernel's pid_max default range: no such process
        hostname: 'h',
        config: ws.configPath,
        startedAt: '2026-01-01T00:00:00.000Z',
        updatedAt: '2026-01-01T00:00:00.000Z',
        state: 'idle',
        watching: true,
        dirtyPaths: 3,
        consecutiveFailures: 0,
        running: true,
        known: false,
      };
      writeFileSync(statusPathFor(ws.indexPath), JSON.stringify(forged));
      const res = await runCli(['status', ws.configPath, '--json'], { HOME: '/nonexistent' });
      expect(res.code).toBe(0);
      expect(JSON.parse(res.stdout)).toMatchObject({ type: 'status', running: false, known: true, dirtyPaths: 3 });
      const text = await runCli(['status', ws.configPath], { HOME: '/nonexistent' });
      expect(text.stdout).toContain(`daemon: not running (pid ${forged.pid} is gone`);

      writeFileSync(statusPathFor(ws.indexPath), JSON.stringify({ ...forged, dirtyPaths: -1 }));
      const bad = await runCli(['status', ws.configPath], { HOME: '/nonexistent' });
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain('is not a vaultik status file');
    } finally {
      ws.cleanup();
    }
  });
});
