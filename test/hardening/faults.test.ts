/**
 * Storage and disk faults at system level (issue 9): the real `vaultik backup` CLI and the
 * restore engine against s3rver through the fault proxy — seeded random 500/503, connection
 * resets mid-upload and mid-download, lost responses, slow responses, and a total outage — and a
 * full disk under the state cache (a small tmpfs). A run either completes or fails clearly (exit
 * 6 for the store, one line on stderr) leaving the store and the cache consistent: the next run
 * completes, every snapshot restores byte for byte, no partial object is visible.
 * (Per-operation retry behaviour is tested in test/storage/faults.test.ts; a full restore target
 * in test/restore/faults.test.ts.)
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSnapshots } from '../../src/snapshot/index.js';
import { openStorage } from '../../src/storage/index.js';
import type { Storage } from '../../src/storage/types.js';
import { cleanEnv, ensureBuilt, runCli, startCli } from '../backup/cli.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { startFaultProxy, type Fault, type FaultProxy, type ProxiedRequest } from '../helpers/faultProxy.js';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.js';
import { pseudoRandom } from '../helpers/tree.js';
import { goldenCopy, int, mutateTree, prng, restoreDiffs, seedTree, storeProblems, suiteSeed } from './kit.js';

let s3: S3rverHandle;
let proxy: FaultProxy;
beforeAll(async () => {
  ensureBuilt();
  s3 = await startS3rver();
  proxy = await startFaultProxy(s3.endpoint);
}, 60_000);
afterAll(async () => {
  await proxy?.close();
  await s3?.stop();
});

const s3Yaml = (endpoint: string, prefix: string): string =>
  `s3: {endpoint: '${endpoint}', bucket: ${s3.bucket}, prefix: ${prefix}, region: us-east-1, access_key_id: S3RVER, secret_access_key: S3RVER}`;

/** Adds seeded random faults on `ops` (each request: one fault with probability `rate`). */
function randomFaults(rnd: () => number, isTarget: (r: ProxiedRequest) => boolean, rate: number, faults: Fault[]): () => void {
  const removers = faults.map((fault, i) =>
    proxy.addFault({
      // One draw per request decides which fault (if any) it gets.
      match: (r) => isTarget(r) && decide(r) === i,
      fault,
    }),
  );
  const drawn = new Map<number, number>();
  function decide(r: ProxiedRequest): number {
    let d = drawn.get(r.seq);
    if (d === undefined) {
      d = rnd() < rate ? int(rnd, faults.length) : -1;
      drawn.set(r.seq, d);
    }
    return d;
  }
  return () => removers.forEach((f) => f());
}

const injected = (): number => proxy.requests.filter((r) => r.fault !== undefined).length;

describe('backup and restore through a faulty store', () => {
  let ws: Workspace;
  let direct: Storage;
  const golden = new Map<string, string>();
  const prefix = `faults-${process.pid}/`;

  beforeAll(() => {
    ws = makeWorkspace({ chunkSize: '64KiB', blobSizeLimit: '512KiB' });
    ws.writeConfig('', s3Yaml(proxy.endpoint, prefix));
    direct = openStorage(s3.spec(prefix));
  });
  afterAll(async () => {
    await direct?.close();
    ws?.cleanup();
  });

  const remember = async (): Promise<void> => {
    for (const s of await listSnapshots(direct, 'index/')) {
      if (golden.has(s.id)) continue;
      const dir = join(ws.root, 'golden', String(golden.size));
      mkdirSync(join(ws.root, 'golden'), { recursive: true });
      goldenCopy(ws.src, dir);
      golden.set(s.id, dir);
    }
  };

  it('random 500/503, resets mid-upload, lost responses, slow responses: every backup completes, store clean', async () => {
    const rnd = prng(suiteSeed('faults/backup', 7001));
    seedTree(ws.src, rnd);
    proxy.resetStats();
    const stop = randomFaults(rnd, (r) => r.op === 'PutObject' || r.op === 'UploadPart', 0.4, [
      { kind: 'error', status: 503, code: 'SlowDown' },
      { kind: 'error', status: 500, code: 'InternalError' },
      { kind: 'reset-request', afterBytes: 20_000 },
      { kind: 'reset-response' },
      { kind: 'delay', ms: 300 },
      { kind: 'slow-response', chunkBytes: 64, chunkDelayMs: 20 },
    ]);
    try {
      for (let i = 0; i < 8; i++) {
        mutateTree(ws.src, rnd);
        const r = await runCli(['backup', ws.configPath, '--cron'], cleanEnv({ VAULTIK_RETRY_TIME: '60s' }));
        expect(r.code, r.stderr).toBe(0);
        await remember();
      }
    } finally {
      stop();
    }
    const n = injected();
    console.log(`[hardening] faults/backup: ${n} faults injected into ${proxy.count('PutObject')} PutObject requests over 8 backups`);
    expect(n).toBeGreaterThanOrEqual(12);
    expect(await storeProblems(direct)).toEqual([]);
  }, 120_000);

  it('a total outage longer than VAULTIK_RETRY_TIME: exit 6, one clear line; the next run completes', async () => {
    const rnd = prng(suiteSeed('faults/outage', 7002));
    mutateTree(ws.src, rnd);
    for (let i = 0; i < 20; i++) writeFileSync(join(ws.src, `outage-${i}.bin`), pseudoRandom(200 * 1024, 500 + i));
    proxy.resetStats();
    const { done } = startCli(['backup', ws.configPath, '--cron'], cleanEnv({ VAULTIK_RETRY_TIME: '2s' }));
    // Let the run get going, then cut the store for longer than the retry budget.
    const deadline = Date.now() + 10_000;
    while (proxy.count('PutObject') === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    const outageEnd = Date.now() + 8_000;
    proxy.outage(8_000, rnd() < 0.5 ? 'reset' : '503');
    const r = await done;
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^vaultik backup: /);
    await new Promise((res) => setTimeout(res, Math.max(0, outageEnd - Date.now())));
    proxy.clearFaults();
    expect(await storeProblems(direct)).toEqual([]);
    // The outage is over (or we wait it out): the next run completes.
    let next = await runCli(['backup', ws.configPath, '--cron'], cleanEnv({ VAULTIK_RETRY_TIME: '30s' }));
    expect(next.code, next.stderr).toBe(0);
    await remember();
    // An outage shorter than the budget is ridden out.
    writeFileSync(join(ws.src, 'after-outage.bin'), pseudoRandom(300 * 1024, 77));
    const second = startCli(['backup', ws.configPath, '--cron'], cleanEnv({ VAULTIK_RETRY_TIME: '30s' }));
    proxy.outage(1_500, '503');
    next = await second.done;
    expect(next.code, next.stderr).toBe(0);
    await remember();
    console.log(`[hardening] faults/outage: ${injected()} requests refused or cut by the outages`);
  }, 120_000);

  it('restore through resets mid-download, 500/503 and slow responses: every snapshot restores byte for byte', async () => {
    const rnd = prng(suiteSeed('faults/restore', 7003));
    proxy.resetStats();
    const stop = randomFaults(rnd, (r) => r.op === 'GetObject', 0.35, [
      { kind: 'error', status: 503, code: 'SlowDown' },
      { kind: 'error', status: 500, code: 'InternalError' },
      { kind: 'reset-response', afterBytes: 1000 },
      { kind: 'reset-response', afterBytes: 30_000 },
      { kind: 'slow-response', chunkBytes: 4096, chunkDelayMs: 5 },
    ]);
    const faulty = openStorage(s3.spec(prefix, { endpoint: proxy.endpoint }), { retry: { maxElapsedMs: 60_000 } });
    const scratch = join(ws.root, 'scratch');
    mkdirSync(scratch, { recursive: true });
    try {
      expect(golden.size).toBeGreaterThanOrEqual(9);
      for (const [id, dir] of golden) expect(await restoreDiffs(faulty, ws.identity, id, dir, ws.src, scratch)).toEqual([]);
    } finally {
      stop();
      await faulty.close();
    }
    const n = injected();
    console.log(`[hardening] faults/restore: ${n} faults injected into ${proxy.count('GetObject')} GetObject requests, ${golden.size} snapshots restored`);
    expect(n).toBeGreaterThanOrEqual(10);
  }, 120_000);
});

describe('disk full under the state cache', () => {
  it('a full tmpfs: clear error, no snapshot; with room again the next run completes and restores', async (ctx) => {
    const ws = makeWorkspace({ chunkSize: '64KiB', blobSizeLimit: '512KiB' });
    const mnt = ws.cacheDir;
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]).status === 0;
    if (!mounted) {
      ws.cleanup();
      ctx.skip('cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN); the full-cache-disk case is untested in this environment');
      return;
    }
    try {
      const rnd = prng(suiteSeed('faults/cache-disk-full', 7004));
      seedTree(ws.src, rnd);
      // Many small files: the cache and the metadata DB grow past what is left on the disk.
      mkdirSync(join(ws.src, 'many'));
      for (let i = 0; i < 3000; i++) writeFileSync(join(ws.src, 'many', `${'n'.repeat(150)}-${i}`), `x${i}`);
      const filler = join(mnt, 'filler');
      spawnSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k', 'count=125'], { stdio: 'ignore' });
      const full = await runCli(['backup', ws.configPath, '--cron'], cleanEnv());
      expect(full.code, full.stderr).not.toBe(0);
      expect(full.code).not.toBeNull();
      expect(full.stderr).toMatch(/no space left|disk (is )?full/i);
      expect(full.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
      const storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
      try {
        expect(await listSnapshots(storage, 'index/')).toEqual([]);
        // Not one byte left: even the lock file cannot be written. Same clear message.
        const rest = join(mnt, 'rest');
        spawnSync('dd', ['if=/dev/zero', `of=${rest}`, 'bs=4k'], { stdio: 'ignore' });
        const none = await runCli(['backup', ws.configPath, '--cron'], cleanEnv());
        expect(none.code, none.stderr).toBe(1);
        expect(none.stderr).toMatch(/no space left on the disk of the state cache/);
        expect(none.stderr.trimEnd().split('\n')).toHaveLength(1);
        rmSync(rest);
        rmSync(filler);
        const next = await runCli(['backup', ws.configPath, '--cron'], cleanEnv());
        expect(next.code, next.stderr).toBe(0);
        const golden = join(ws.root, 'golden');
        goldenCopy(ws.src, golden);
        mkdirSync(join(ws.root, 'scratch'));
        const [snap] = await listSnapshots(storage, 'index/');
        expect(await restoreDiffs(storage, ws.identity, snap!.id, golden, ws.src, join(ws.root, 'scratch'))).toEqual([]);
        expect(await storeProblems(storage)).toEqual([]);
      } finally {
        await storage.close();
      }
    } finally {
      spawnSync('umount', ['-l', mnt]);
      ws.cleanup();
    }
  }, 60_000);
});
