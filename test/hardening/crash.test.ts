/**
 * Crash consistency (issue 9): the real `vaultik backup` / `restore` / `prune` processes are
 * SIGKILLed at seeded random points — named crash points of the backup engine
 * (VAULTIK_TEST_KILL_AT of the test-only entry test/helpers/crash-entry.mjs, src/backup/testHooks.ts: scan, chunking, mid-upload of a blob or a shard, after
 * a blob is recorded, between the last blob and the metadata, after the manifest, mid-upload of
 * the metadata, before the cache commit) and plain timing for restore and prune. After every
 * kill: no partial object is visible in the store, the next run succeeds, every snapshot restores
 * byte for byte against a golden copy of the source taken when it was made.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KillPoint } from '../../src/backup/testHooks.js';
import { listSnapshots } from '../../src/snapshot/index.js';
import { openStorage } from '../../src/storage/index.js';
import type { Storage } from '../../src/storage/types.js';
import { cleanEnv, ensureBuilt, runCli, startCli, startNode, type CliResult } from '../backup/cli.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.js';
import { compareTrees } from '../helpers/tree.js';
import { goldenCopy, int, mutateTree, pick, prng, restoreDiffs, seedTree, storeProblems, suiteSeed } from './kit.js';

/** Read only by the test entry below; the shipped binary ignores them (test/hardening/test-hooks.test.ts). */
const TEST_KILL_ENV = 'VAULTIK_TEST_KILL_AT';
const TEST_SHARD_ENV = 'VAULTIK_TEST_SHARD_ENTRIES';
const CRASH_ENTRY = fileURLToPath(new URL('../helpers/crash-entry.mjs', import.meta.url));

/** The built CLI with the test hooks installed from TEST_KILL_ENV / TEST_SHARD_ENV. */
function runHooked(args: string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return startNode([CRASH_ENTRY, ...args], env).done;
}

const POINTS: readonly KillPoint[] = ['scan', 'chunk', 'upload', 'blob-recorded', 'blobs-done', 'shard', 'shards-done', 'manifest', 'metadata', 'cache-commit'];

let s3: S3rverHandle;
beforeAll(async () => {
  ensureBuilt();
  s3 = await startS3rver();
}, 60_000);
afterAll(async () => {
  await s3?.stop();
});

interface Tally {
  killed: number;
  ranThrough: number;
  byPoint: Map<string, number>;
}

/**
 * `runs` rounds of: mutate the source, back up with a crash point, back up again cleanly;
 * after each round the store is clean and the latest snapshot restores; at the end every
 * snapshot restores.
 */
async function crashRounds(ws: Workspace, storage: Storage, rnd: () => number, runs: number, beforeFinalCheck?: () => Promise<void>): Promise<Tally> {
  const tally: Tally = { killed: 0, ranThrough: 0, byPoint: new Map() };
  const golden = new Map<string, string>();
  const goldenDir = join(ws.root, 'golden');
  const scratch = join(ws.root, 'scratch');
  mkdirSync(goldenDir, { recursive: true });
  mkdirSync(scratch, { recursive: true });
  seedTree(ws.src, rnd);
  // Each test covers every point once in a seeded order, then random ones.
  const order = [...POINTS].sort(() => rnd() - 0.5);
  const remember = async (): Promise<void> => {
    for (const s of await listSnapshots(storage, 'index/')) {
      if (golden.has(s.id)) continue;
      const dir = join(goldenDir, String(golden.size));
      goldenCopy(ws.src, dir);
      golden.set(s.id, dir);
    }
  };
  for (let round = 0; round < runs; round++) {
    mutateTree(ws.src, rnd);
    const point = round < order.length ? order[round]! : pick(rnd, POINTS);
    const nth = point === 'scan' ? 1 + int(rnd, 8) : point === 'chunk' ? 1 + int(rnd, 4) : point === 'upload' || point === 'blob-recorded' || point === 'shard' ? 1 + int(rnd, 3) : 1;
    // Shards of 8 entries: the tree spans several, most reused from run to run.
    const crashed = await runHooked(['backup', ws.configPath, '--cron'], cleanEnv({ [TEST_KILL_ENV]: `${point}:${nth}`, [TEST_SHARD_ENV]: '8' }));
    if (crashed.signal === 'SIGKILL') {
      tally.killed++;
      tally.byPoint.set(point, (tally.byPoint.get(point) ?? 0) + 1);
    } else {
      // The point was not reached that often (few changes this round): a normal run.
      expect(crashed.code, crashed.stderr).toBe(0);
      tally.ranThrough++;
    }
    // The source did not change since the killed run started: a snapshot it completed
    // (killed at cache-commit) has the same golden image as the next one.
    await remember();
    expect(await storeProblems(storage), `after kill at ${point}:${nth}`).toEqual([]);
    const next = await runHooked(['backup', ws.configPath, '--cron'], cleanEnv({ [TEST_SHARD_ENV]: '8' }));
    expect(next.code, `${point}:${nth} → next run: ${next.stderr}`).toBe(0);
    await remember();
    const latest = (await listSnapshots(storage, 'index/')).at(-1)!;
    expect(await restoreDiffs(storage, ws.identity, latest.id, golden.get(latest.id)!, ws.src, scratch), `latest after ${point}:${nth}`).toEqual([]);
  }
  await beforeFinalCheck?.();
  expect(await storeProblems(storage)).toEqual([]);
  for (const [id, dir] of golden) expect(await restoreDiffs(storage, ws.identity, id, dir, ws.src, scratch)).toEqual([]);
  return tally;
}

function report(label: string, t: Tally): void {
  console.log(`[hardening] ${label}: ${t.killed} kills survived (${[...t.byPoint].map(([p, n]) => `${p}×${n}`).join(', ')}), ${t.ranThrough} runs passed their point`);
}

describe('SIGKILL of a real backup at every stage', () => {
  it('local store: 24 rounds, every crash point, every snapshot restores', async () => {
    const rnd = prng(suiteSeed('crash/local', 9001));
    const ws = makeWorkspace({ chunkSize: '64KiB', blobSizeLimit: '512KiB' });
    try {
      const storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
      // Puts killed mid-way leave temp files (never visible as keys); prune removes them.
      const temps = (): string[] => execFileSync('find', [ws.store, '-name', '.vaultik-tmp-*'], { encoding: 'utf8' }).split('\n').filter(Boolean);
      let leftover = 0;
      const t = await crashRounds(ws, storage, rnd, 24, async () => {
        leftover = temps().length;
        const pruned = await runCli(['prune', `file://${ws.store}`, '', '--grace', '0'], cleanEnv({ VAULTIK_PRIVATE_KEY: ws.identity }));
        expect(pruned.code, pruned.stderr).toBe(0);
        expect(temps()).toEqual([]);
      });
      report('crash/local', t);
      console.log(`[hardening] crash/local: prune --grace 0 removed ${leftover} temp files left by killed puts; every snapshot still restores`);
      expect(leftover).toBeGreaterThan(0);
      expect(t.killed).toBeGreaterThanOrEqual(18);
      expect(new Set(t.byPoint.keys()).size).toBe(POINTS.length);
      await storage.close();
    } finally {
      ws.cleanup();
    }
  }, 150_000);

  it('s3rver: 10 rounds, every crash point', async () => {
    const rnd = prng(suiteSeed('crash/s3', 9002));
    const ws = makeWorkspace({ chunkSize: '64KiB', blobSizeLimit: '512KiB' });
    const prefix = `crash-${process.pid}/`;
    try {
      ws.writeConfig('', `s3: {endpoint: '${s3.endpoint}', bucket: ${s3.bucket}, prefix: ${prefix}, region: us-east-1, access_key_id: S3RVER, secret_access_key: S3RVER}`);
      const storage = openStorage(s3.spec(prefix));
      const t = await crashRounds(ws, storage, rnd, 10);
      report('crash/s3', t);
      expect(t.killed).toBeGreaterThanOrEqual(7);
      await storage.close();
    } finally {
      ws.cleanup();
    }
  }, 150_000);
});

describe('SIGKILL of restore and prune', () => {
  let ws: Workspace;
  let storage: Storage;
  let golden: string;
  beforeAll(async () => {
    ws = makeWorkspace({ chunkSize: '64KiB', blobSizeLimit: '512KiB' });
    const rnd = prng(suiteSeed('crash/restore+prune setup', 9003));
    seedTree(ws.src, rnd);
    storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
    for (let i = 0; i < 4; i++) {
      mutateTree(ws.src, rnd);
      expect((await runCli(['backup', ws.configPath, '--cron'], cleanEnv())).code).toBe(0);
    }
    golden = join(ws.root, 'golden');
    goldenCopy(ws.src, golden);
  }, 60_000);
  afterAll(async () => {
    await storage?.close();
    ws?.cleanup();
  });

  it('restore killed at random times; rerun with --overwrite completes byte for byte', async () => {
    const rnd = prng(suiteSeed('crash/restore', 9004));
    const env = cleanEnv({ VAULTIK_PRIVATE_KEY: ws.identity });
    const args = (target: string, overwrite: boolean): string[] => ['restore', `file://${ws.store}`, '', 'latest', target, ...(overwrite ? ['--overwrite'] : [])];
    // How long an uninterrupted restore takes, to spread the kills over it.
    const t0 = Date.now();
    const whole = await runCli(args(join(ws.root, 'r-whole'), false), env);
    expect(whole.code, whole.stderr).toBe(0);
    const span = Date.now() - t0;
    rmSync(join(ws.root, 'r-whole'), { recursive: true, force: true });
    let killed = 0;
    let tries = 0;
    // Until 6 restores were killed mid-run (a kill that comes after the exit does not count;
    // under load runs vary in length), at most 15 tries.
    for (let i = 0; killed < 6 && i < 15; i++) {
      tries++;
      const target = join(ws.root, `r${i}`);
      const { child, done } = startCli(args(target, false), env);
      await new Promise((r) => setTimeout(r, span * (0.2 + 0.6 * rnd())));
      child.kill('SIGKILL');
      const r = await done;
      if (r.signal === 'SIGKILL') killed++;
      const again = await runCli(args(target, true), env);
      expect(again.code, again.stderr).toBe(0);
      expect(compareTrees(golden, join(target, ws.src))).toEqual([]);
      rmSync(target, { recursive: true, force: true });
    }
    console.log(`[hardening] crash/restore: ${killed} of ${tries} restores killed mid-run (restore takes ~${span} ms)`);
    expect(killed).toBeGreaterThanOrEqual(4);
  }, 90_000);

  it('prune --keep-latest --grace 0 killed at random times; rerun finishes; the kept snapshot restores', async () => {
    const rnd = prng(suiteSeed('crash/prune', 9005));
    const env = cleanEnv({ VAULTIK_PRIVATE_KEY: ws.identity });
    let killed = 0;
    // How long an uninterrupted prune takes, to spread the kills over it.
    const probe = join(ws.root, 'store-probe');
    goldenCopy(ws.store, probe);
    const t0 = Date.now();
    expect((await runCli(['prune', `file://${probe}`, '', '--keep-latest', '--grace', '0'], env)).code).toBe(0);
    const span = Date.now() - t0;
    rmSync(probe, { recursive: true, force: true });
    let tries = 0;
    for (let i = 0; killed < 5 && i < 15; i++) {
      tries++;
      const copy = join(ws.root, `store-copy${i}`);
      mkdirSync(join(ws.root, 'scratch-prune'), { recursive: true });
      goldenCopy(ws.store, copy);
      const args = ['prune', `file://${copy}`, '', '--keep-latest', '--grace', '0'];
      const { child, done } = startCli(args, env);
      await new Promise((r) => setTimeout(r, span * (0.2 + 0.6 * rnd())));
      child.kill('SIGKILL');
      const r = await done;
      if (r.signal === 'SIGKILL') killed++;
      const again = await runCli(args, env);
      expect(again.code, again.stderr).toBe(0);
      const s = openStorage({ type: 'local', path: copy, prefix: '' });
      try {
        expect(await storeProblems(s)).toEqual([]);
        const snaps = await listSnapshots(s, 'index/');
        expect(snaps).toHaveLength(1);
        expect(await restoreDiffs(s, ws.identity, snaps[0]!.id, golden, ws.src, join(ws.root, 'scratch-prune'))).toEqual([]);
      } finally {
        await s.close();
        rmSync(copy, { recursive: true, force: true });
      }
    }
    console.log(`[hardening] crash/prune: ${killed} of ${tries} prunes killed mid-run (prune takes ~${span} ms)`);
    expect(killed).toBeGreaterThanOrEqual(4);
  }, 90_000);
});
