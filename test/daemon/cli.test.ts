/**
 * `vaultik backup <config> --daemon` as a real process (the TypeScript sources through the test
 * loader): SIGTERM in the middle of a run (s3rver behind the fault proxy, uploads held back),
 * SIGHUP with a broken and then a good config, the text and JSON logs, and the inotify watch
 * limit hit for real (a private user namespace with a limit of 3 watches: no change to the
 * machine's own limit).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openStorage } from '../../src/storage/index.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy.js';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.js';
import { compareTrees } from '../helpers/tree.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { cliNodeArgs } from '../restore/helpers.js';
import { restoreLatest, waitFor } from './kit.js';

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

let ws: Workspace | undefined;
let children: ChildProcess[] = [];
let s3: S3rverHandle;
let proxy: FaultProxy;

beforeAll(async () => {
  // The test process itself lists and restores through the SDK: no Node-version notice.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  s3 = await startS3rver();
  proxy = await startFaultProxy(s3.endpoint);
});
afterAll(async () => {
  await proxy?.close();
  await s3?.stop();
});
afterEach(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children = [];
  proxy.clearFaults();
  ws?.cleanup();
  ws = undefined;
});

interface DaemonProcess {
  child: ChildProcess;
  /** JSON log events (with --json), in order. */
  events: { type: string; [k: string]: unknown }[];
  stderr: () => string;
  /** The first event of `type` from index `from` on. */
  next(type: string, from?: number): Promise<{ type: string; [k: string]: unknown }>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnDaemon(configPath: string, options: { json?: boolean; wrap?: string[] } = {}): DaemonProcess {
  const args = [...cliNodeArgs(), CLI, 'backup', configPath, '--daemon', ...(options.json === false ? [] : ['--json'])];
  const [cmd, ...rest] = options.wrap ? [...options.wrap, process.execPath, ...args] : [process.execPath, ...args];
  const child = spawn(cmd!, rest, { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const events: DaemonProcess['events'] = [];
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      events.push(JSON.parse(out.slice(0, nl)) as DaemonProcess['events'][number]);
      out = out.slice(nl + 1);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  return {
    child,
    events,
    stderr: () => err,
    next: (type, from = 0) =>
      waitFor(`'${type}' from the daemon (events: ${events.map((e) => e.type).join(', ')}; stderr: ${err})`, () => events.slice(from).find((e) => e.type === type), 30_000),
    exit,
  };
}

function s3Yaml(prefix: string): string {
  return `s3: {endpoint: '${proxy.endpoint}', bucket: ${s3.bucket}, prefix: ${prefix}, region: us-east-1, access_key_id: S3RVER, secret_access_key: S3RVER}`;
}

async function snapshotsIn(prefix: string): Promise<string[]> {
  const storage = openStorage(s3.spec(prefix), { retry: false });
  const keys: string[] = [];
  try {
    for await (const o of storage.list('index/')) if (o.key.endsWith('.db.zst.age')) keys.push(o.key);
  } finally {
    await storage.close();
  }
  return keys;
}

const TIMING = 'backup_interval: 1s\nfull_scan_interval: 1h\nmin_time_between_run: 0';

describe('vaultik backup --daemon (real process)', () => {
  it('SIGTERM during a run: exit 0, no snapshot half written, the earlier one intact; the next start backs up what changed', async () => {
    ws = makeWorkspace();
    mkdirSync(join(ws.src, 'd'));
    for (let i = 0; i < 5; i++) writeFileSync(join(ws.src, `d/f${i}`), `file ${i}\n`.repeat(100));
    ws.writeConfig(TIMING, s3Yaml('sigterm/'));
    const copy = join(ws.root, 'copy');
    const first = spawnDaemon(ws.configPath);
    await first.next('run');
    spawnSync('cp', ['-a', ws.src, copy]);

    // Uploads are held back: the next run is surely in progress when the signal comes.
    proxy.addFault({ match: 'PutObject', fault: { kind: 'delay', ms: 5000 } });
    appendFileSync(join(ws.src, 'd/f0'), 'changed\n');
    const from = first.events.length;
    await first.next('run-start', from);
    await waitFor('an upload in flight', () => proxy.requests.some((r) => r.op === 'PutObject' && r.status === undefined));
    first.child.kill('SIGTERM');
    const exit = await first.exit;
    expect(exit).toEqual({ code: 0, signal: null });
    // From the run's start (a tick may find nothing dirty and log `skipped` just before it).
    const start = first.events.findIndex((e, i) => i >= from && e.type === 'run-start');
    const types = first.events.slice(start).map((e) => e.type);
    expect(types).toEqual(['run-start', 'stopping', 'stopped']);
    expect(first.events.at(-2)).toMatchObject({ type: 'stopping', runInProgress: true, reason: 'interrupted by SIGTERM' });
    expect(first.events.at(-1)).toMatchObject({ type: 'stopped', interruptedRun: true });
    expect(await snapshotsIn('sigterm/')).toHaveLength(1);
    proxy.clearFaults();
    expect(compareTrees(copy, await restoreLatest(ws, openStorage(s3.spec('sigterm/'))))).toEqual([]);

    // Started again: the start-up full scan finds the change and backs it up.
    const second = spawnDaemon(ws.configPath);
    const run = await second.next('run');
    expect(run).toMatchObject({ scan: 'dirty', fullScan: true, filesChanged: 1 });
    expect(await snapshotsIn('sigterm/')).toHaveLength(2);
    expect(compareTrees(ws.src, await restoreLatest(ws, openStorage(s3.spec('sigterm/'))))).toEqual([]);
    second.child.kill('SIGINT');
    expect(await second.exit).toEqual({ code: 0, signal: null });
    expect(second.events.at(-1)).toMatchObject({ type: 'stopped', interruptedRun: false });
  });

  it('SIGHUP: a broken config is logged and the running one stays; a good one applies; text log lines carry ISO timestamps', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'f'), 'f');
    ws.writeConfig(TIMING);
    const d = spawnDaemon(ws.configPath, { json: false });
    const lines = (): string[] => d.stderr().split('\n').filter((l) => l !== '');
    await waitFor('the first snapshot line', () => lines().some((l) => / snapshot \S+: 1 file changed \(1 new\), .* \(full walk\)$/.test(l)));

    writeFileSync(ws.configPath, 'source_dirs: [\n');
    d.child.kill('SIGHUP');
    await waitFor('the reload error', () => lines().some((l) => l.includes('error: config reload failed, the running config stays: ')));
    writeFileSync(join(ws.src, 'g'), 'new after the broken reload');
    await waitFor('a snapshot of g', () => lines().some((l) => / snapshot \S+: 1 file changed \(1 new\), .* \(\d+ dirty paths? re-checked\)$/.test(l)));

    ws.writeConfig(`backup_interval: 2s\nfull_scan_interval: 1h\nmin_time_between_run: 0\nexclude: ['*.tmp']`);
    d.child.kill('SIGHUP');
    await waitFor('the reload', () => lines().some((l) => l.includes('config reloaded from') && l.includes('(changed: exclude, backup_interval); applies from the next run')));
    writeFileSync(join(ws.src, 'h.tmp'), 'excluded now');
    await waitFor('a full walk under the new config', () => lines().filter((l) => l.endsWith('(full walk)')).length === 2);
    d.child.kill('SIGTERM');
    expect(await d.exit).toEqual({ code: 0, signal: null });
    const all = lines();
    for (const l of all) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /);
    expect(all[0]).toMatch(/vaultik daemon started \(pid \d+\): 1 source dir to file:\/\//);
    expect(all.at(-1)).toMatch(/ stopped$/);
    const restored = await restoreLatest(ws);
    expect(compareTrees(ws.src, restored, { ignore: (rel) => rel.toString().endsWith('.tmp') })).toEqual([]);
  });

  const unshareWorks = spawnSync('unshare', ['-Ur', 'sh', '-c', 'echo 3 > /proc/sys/user/max_inotify_watches'], { stdio: 'ignore' }).status === 0;

  it.runIf(unshareWorks)('past the inotify watch limit (3 watches in a private user namespace): one warning, full scans, still backs up', async () => {
    ws = makeWorkspace();
    for (let i = 0; i < 6; i++) mkdirSync(join(ws.src, `dir${i}/sub`), { recursive: true });
    writeFileSync(join(ws.src, 'dir0/f'), 'f');
    ws.writeConfig(TIMING);
    const d = spawnDaemon(ws.configPath, { wrap: ['unshare', '-Ur', 'sh', '-c', 'echo 3 > /proc/sys/user/max_inotify_watches && exec "$0" "$@"'] });
    const failed = await d.next('watch-failed');
    expect(failed.message).toMatch(/^inotify watch limit reached after 3 directories \(fs\.inotify\.max_user_watches = \d+\); raise it/);
    await d.next('run');
    writeFileSync(join(ws.src, 'dir5/sub/new'), 'found by a full scan');
    const run = await d.next('run', d.events.findIndex((e) => e.type === 'run') + 1);
    expect(run).toMatchObject({ fullScan: true, filesChanged: 1 });
    expect(compareTrees(ws.src, await restoreLatest(ws))).toEqual([]);
    d.child.kill('SIGTERM');
    expect((await d.exit).code).toBe(0);
    expect(d.events.filter((e) => e.type === 'watch-failed')).toHaveLength(1);
  });
});
