/**
 * The daemon in process, with real file system events and real 1-2 s intervals: what it backs
 * up (restored and compared with the tree), when it runs (skips, min_time_between_run, changes
 * during a run), and how it copes (watcher failure, store failure, config reloads).
 */
import { appendFileSync, mkdirSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkPool } from '../../src/compress/pool.js';
import type { WatcherFactory } from '../../src/daemon/index.js';
import { inotifyWatcher } from '../../src/daemon/index.js';
import { openStorage } from '../../src/storage/index.js';
import { StorageError, type PutBody, type PutOptions, type Storage } from '../../src/storage/types.js';
import { buildRichTree, compareTrees } from '../helpers/tree.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { restoreLatest, sleep, snapshotCount, startDaemon, waitFor, type RunningDaemon } from './kit.js';

let ws: Workspace | undefined;
let running: RunningDaemon | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
  ws?.cleanup();
  ws = undefined;
});

const ignoreSockets = (_rel: Buffer, type: string): boolean => type === 'socket';

function timing(interval = '1s', fullScan = '1h', minGap = '0'): string {
  return [`backup_interval: ${interval}`, `full_scan_interval: ${fullScan}`, `min_time_between_run: ${minGap}`].join('\n');
}

async function expectRestoredEqual(w: Workspace, options: { ignore?: (rel: Buffer, type: string) => boolean } = {}): Promise<void> {
  const restored = await restoreLatest(w);
  expect(compareTrees(w.src, restored, { ignore: options.ignore ?? ignoreSockets })).toEqual([]);
}

/** Passes every call through; puts wait while the gate is closed, or fail while `down`. */
class ControlledStorage implements Storage {
  down = false;
  putsWaiting = 0;
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;

  constructor(private readonly inner: Storage) {}

  get description(): string {
    return this.inner.description;
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  closeGate(): void {
    this.gate = new Promise((resolve) => (this.openGate = resolve));
  }

  release(): void {
    this.openGate?.();
    this.gate = undefined;
  }

  async put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    if (this.down) throw new StorageError('cannot reach the store (simulated outage)', 'transient', key);
    if (this.gate) {
      this.putsWaiting++;
      await this.gate;
    }
    return this.inner.put(key, body, options);
  }

  get: Storage['get'] = (...args) => this.inner.get(...args);
  stat: Storage['stat'] = (...args) => this.inner.stat(...args);
  list: Storage['list'] = (...args) => this.inner.list(...args);
  delete: Storage['delete'] = (...args) => this.inner.delete(...args);
}

describe('daemon', () => {
  it('backs up creates, writes, renames and deletes in nested and new dirs at the next interval; one pool for every run', async () => {
    ws = makeWorkspace();
    await buildRichTree(ws.src, { bigSize: 200_000 });
    ws.writeConfig(timing());
    let pools = 0;
    running = startDaemon(ws, {
      makePool: (c) => {
        pools++;
        return new ChunkPool({ size: 2, level: c.compressionLevel });
      },
    });
    const first = await running.next('run');
    expect(first.scan).toBe('full');
    await expectRestoredEqual(ws);

    const src = ws.src;
    writeFileSync(join(src, 'a/b/c/new.txt'), 'new in a nested dir');
    appendFileSync(join(src, 'big.bin'), 'appended');
    renameSync(join(src, 'a.b'), join(src, 'a.renamed'));
    renameSync(join(src, 'a-b'), join(src, 'a-moved'));
    unlinkSync(join(src, 'one.bin'));
    rmSync(join(src, 'a/b/c/deep.txt'));
    mkdirSync(join(src, 'fresh/deeper/deepest'), { recursive: true });
    writeFileSync(join(src, 'fresh/deeper/deepest/file'), 'written right after mkdir -p');
    await sleep(150);
    // In the new directory, once it is watched.
    writeFileSync(join(src, 'fresh/deeper/late'), 'later');
    renameSync(join(src, 'fresh/deeper/deepest'), join(src, 'fresh/moved'));
    rmSync(join(src, 'hard-other'));
    const after = running.events.length;
    const run = await running.next('run', after);
    expect(run.scan).toBe('dirty');
    expect(run.fullScan).toBe(false);
    expect(run.filesChanged).toBeGreaterThanOrEqual(3);
    // Every change landed in one run, or the rest in the next one: wait for a quiet tick.
    await running.next('skipped', running.events.indexOf(run));
    await expectRestoredEqual(ws);
    expect(pools).toBe(1);
  });

  it('after a run, when the next is more than poolIdleMs away, releases the pool and then the memory, once', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'a.txt'), 'a');
    ws.writeConfig(timing('1h'));
    const calls: string[] = [];
    running = startDaemon(ws, {
      makePool: (c) => {
        const pool = new ChunkPool({ size: 1, level: c.compressionLevel });
        const close = pool.close.bind(pool);
        pool.close = async () => {
          await close();
          calls.push('pool closed');
        };
        return pool;
      },
      releaseMemory: () => calls.push('memory released'),
    });
    await running.next('run');
    await waitFor('the memory released', () => calls.includes('memory released'));
    await sleep(100);
    expect(calls).toEqual(['pool closed', 'memory released']);
  });

  it('does not release the memory between runs that come close together', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'a.txt'), 'a');
    ws.writeConfig(timing('1s'));
    let released = 0;
    running = startDaemon(ws, { releaseMemory: () => released++ });
    await running.next('run');
    await waitFor('two checks after the run', () => running!.count('skipped') >= 2);
    expect(released).toBe(0);
  });

  it('a change made while a run is in progress is picked up by the following run', async () => {
    ws = makeWorkspace();
    mkdirSync(join(ws.src, 'd'));
    writeFileSync(join(ws.src, 'd/a.txt'), 'a0');
    writeFileSync(join(ws.src, 'd/b.txt'), 'b0');
    ws.writeConfig(timing());
    const store = new ControlledStorage(openStorage(ws.config().storage, { retry: false }));
    running = startDaemon(ws, { openStorage: () => store });
    await running.next('run');
    store.closeGate();
    writeFileSync(join(ws.src, 'd/a.txt'), 'a1');
    const from = running.events.length;
    await running.next('run-start', from);
    // The run has scanned and waits to upload: change things behind its back.
    const deadline = Date.now() + 10_000;
    while (store.putsWaiting === 0 && Date.now() < deadline) await sleep(20);
    expect(store.putsWaiting).toBeGreaterThan(0);
    writeFileSync(join(ws.src, 'd/b.txt'), 'b1 changed during the run');
    writeFileSync(join(ws.src, 'd/c.txt'), 'created during the run');
    await sleep(200);
    store.release();
    const during = await running.next('run', from);
    const following = await running.next('run', running.events.indexOf(during) + 1);
    expect(following.scan).toBe('dirty');
    expect(following.filesChanged).toBe(2);
    await expectRestoredEqual(ws);
  });

  it('no changes: no run, no new snapshot; every tick says it skipped', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'f'), 'f');
    ws.writeConfig(timing());
    running = startDaemon(ws);
    await running.next('run');
    const snapshots = snapshotCount(ws.store);
    await sleep(3500);
    expect(snapshotCount(ws.store)).toBe(snapshots);
    expect(running.count('run')).toBe(1);
    expect(running.count('run-start')).toBe(1);
    expect(running.count('skipped')).toBeGreaterThanOrEqual(2);
  });

  it('never starts a run sooner than min_time_between_run after the previous one ended', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'f'), 'f');
    ws.writeConfig(timing('1s', '1h', '3s'));
    running = startDaemon(ws);
    await running.next('run');
    const start = Date.now();
    while (Date.now() - start < 7500) {
      appendFileSync(join(ws.src, 'f'), 'x');
      await sleep(150);
    }
    const ends = running.events.filter((e) => e.type === 'run').map((e) => Date.parse(e.time));
    const starts = running.events.filter((e) => e.type === 'run-start').map((e) => Date.parse(e.time));
    // The start-up run, then at most one every 3 s (plus the run's own time) while changes pour in.
    expect(starts.length).toBeGreaterThanOrEqual(3);
    expect(starts.length).toBeLessThanOrEqual(4);
    for (let i = 1; i < starts.length; i++) expect(starts[i]! - ends[i - 1]!).toBeGreaterThanOrEqual(3000);
  });

  it('a watcher that fails falls back to full scans (one warning), still backs up, and is tried again at the next full scan', async () => {
    ws = makeWorkspace();
    mkdirSync(join(ws.src, 'd'));
    writeFileSync(join(ws.src, 'd/f'), 'f');
    ws.writeConfig(timing('1s', '5s'));
    let attempts = 0;
    const flaky: WatcherFactory = (options) => {
      attempts++;
      if (attempts > 1) return inotifyWatcher(options);
      return {
        ready: new Promise((resolve) =>
          setTimeout(() => {
            options.onError(new Error('inotify watch limit reached (simulated)'));
            resolve();
          }, 10),
        ),
        watchedDirs: 0,
        close: () => undefined,
      };
    };
    running = startDaemon(ws, { watcher: flaky });
    const failed = await running.next('watch-failed');
    expect(failed.message).toContain('simulated');
    expect(running.count('watching')).toBe(0);
    await running.next('run');
    writeFileSync(join(ws.src, 'd/g'), 'new while not watching');
    const from = running.events.length;
    const run = await running.next('run', from);
    expect(run.fullScan).toBe(true);
    await expectRestoredEqual(ws);
    const quiet = await running.next('skipped', from);
    expect(quiet.fullScan).toBe(true);
    expect(running.count('watching')).toBe(0);
    // A full_scan_interval (5 s) after the failure it watches again; then changes are found
    // without a full scan.
    await running.next('watching', from);
    expect(running.count('watch-failed')).toBe(1);
    writeFileSync(join(ws.src, 'd/h'), 'watched again');
    const from2 = running.events.length;
    const watchedRun = await running.next('run', from2);
    expect(watchedRun.fullScan).toBe(false);
    expect(watchedRun.scan).toBe('dirty');
    await expectRestoredEqual(ws);
  });

  it('a failing store is retried with backoff and the daemon keeps going', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'f'), 'f');
    ws.writeConfig(timing());
    const store = new ControlledStorage(openStorage(ws.config().storage, { retry: false }));
    running = startDaemon(ws, { openStorage: () => store });
    await running.next('run');
    store.down = true;
    writeFileSync(join(ws.src, 'g'), 'while the store is down');
    const from = running.events.length;
    const fail1 = await running.next('run-failed', from);
    const fail2 = await running.next('run-failed', running.events.indexOf(fail1) + 1);
    expect(fail1.message).toContain('simulated outage');
    expect([fail1.failures, fail1.retryInMs, fail2.failures, fail2.retryInMs]).toEqual([1, 1000, 2, 2000]);
    expect(Date.parse(fail2.time) - Date.parse(fail1.time)).toBeGreaterThanOrEqual(1000);
    store.down = false;
    const ok = await running.next('run', running.events.indexOf(fail2));
    expect(ok.filesChanged).toBe(1);
    await expectRestoredEqual(ws);
  });

  it('reload: a broken config is reported and the old one keeps running; a good one applies', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'f'), 'f');
    ws.writeConfig(timing());
    running = startDaemon(ws);
    await running.next('run');
    const storeSpec = ws.config().storage;
    writeFileSync(ws.configPath, 'source_dirs: [/nonexistent\nbackup_interval: soon\n');
    running.daemon.reload();
    const failed = await running.next('reload-failed');
    expect(failed.message).toMatch(/vaultik\.yaml/);
    writeFileSync(join(ws.src, 'still.txt'), 'backed up by the old config');
    const from = running.events.length;
    await running.next('run', from);
    const restoredOld = await restoreLatest(ws, openStorage(storeSpec));
    expect(compareTrees(ws.src, restoredOld)).toEqual([]);

    ws.writeConfig(`${timing('2s')}\nexclude: ['*.skip']`);
    writeFileSync(join(ws.src, 'left.skip'), 'excluded by the new config');
    running.daemon.reload();
    const reloaded = await running.next('reloaded');
    expect(reloaded.changed).toEqual(['exclude', 'backup_interval']);
    const from2 = running.events.length;
    const run = await running.next('run', from2);
    // Other excludes: the scan record does not fit any more, so the run walks everything.
    expect(run.scan).toBe('full');
    await expectRestoredEqual(ws, { ignore: (rel, type) => type === 'socket' || rel.toString().endsWith('.skip') });
    const restored = await restoreLatest(ws);
    expect(compareTrees(ws.src, restored)).toEqual([expect.stringContaining('left.skip')]);
  });
});
