/**
 * prune with the real engines: backups by runBackup (two hosts, overlapping and disjoint data,
 * small blobs), forget, prune, then every remaining snapshot restored by runRestore and compared
 * byte for byte with the source as it was; and a real backup paused between uploading its blobs
 * and writing its manifest while prune runs (grace 0 breaks it, the default grace does not).
 */
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { parseIdentity } from '../../src/crypto/index.js';
import { DEFAULT_GRACE_MS, executeForget, executePrune, planForget, planPrune, type PruneOptions } from '../../src/prune/index.js';
import { runRestore } from '../../src/restore/index.js';
import { openStorage } from '../../src/storage/index.js';
import type { PutBody, PutOptions, Storage } from '../../src/storage/types.js';
import { verifyStore } from '../../src/verify/index.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { pseudoRandom } from '../helpers/tree.js';
import { DAY, INDEX, blobKeys, keysUnder } from './kit.js';

let workspaces: Workspace[] = [];
afterEach(() => {
  for (const w of workspaces) w.cleanup();
  workspaces = [];
});

function workspace(blobSizeLimit = '256KiB'): Workspace {
  const ws = makeWorkspace({ chunkSize: '64KiB', blobSizeLimit });
  workspaces.push(ws);
  return ws;
}

/** Every regular file under `dir` (relative path → content). */
function tree(dir: string, rel = '', out = new Map<string, Buffer>()): Map<string, Buffer> {
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const r = rel === '' ? name : `${rel}/${name}`;
    if (statSync(join(dir, r)).isDirectory()) tree(dir, r, out);
    else out.set(r, readFileSync(join(dir, r)));
  }
  return out;
}

async function backup(config: Config, storage: Storage): Promise<string> {
  const summary = await runBackup(config, { storage, workers: 1, progressIntervalMs: 0 });
  return summary.snapshotId;
}

async function restoreTree(storage: Storage, ws: Workspace, id: string, srcDir: string): Promise<{ files: Map<string, Buffer>; failed: number }> {
  const target = join(ws.root, `restore-${id}`);
  rmSync(target, { recursive: true, force: true });
  const summary = await runRestore({ storage, identities: [parseIdentity(ws.identity)], snapshotId: id, target, indexPrefix: INDEX, tmpDir: ws.root });
  const restored = join(target, srcDir.replace(/^\//, ''));
  return { files: tree(restored), failed: summary.failed };
}

describe('prune with runBackup and runRestore', () => {
  it('forget and prune leave every remaining snapshot restorable byte for byte', async () => {
    const web = workspace();
    const db = workspace();
    // One store for both hosts: the web workspace's.
    const storeSpec = { type: 'local' as const, path: web.store, prefix: '' };
    const webConfig: Config = { ...web.config(), hostname: 'web', storage: storeSpec };
    // Same recipient: one private key opens both hosts' snapshots.
    const dbConfig: Config = { ...db.config(), hostname: 'db', storage: storeSpec, recipients: webConfig.recipients };
    const storage = openStorage(storeSpec);
    const expected = new Map<string, { files: Map<string, Buffer>; src: string }>();
    const put = (ws: Workspace, name: string, seed: number, size: number): void => writeFileSync(join(ws.src, name), pseudoRandom(size, seed));

    put(web, 'a.bin', 1, 600_000);
    put(web, 'b.bin', 2, 400_000);
    writeFileSync(join(web.src, 'c.txt'), 'hello '.repeat(20_000));
    const steps: (() => void)[] = [
      () => undefined,
      () => {
        put(web, 'b.bin', 3, 250_000); // changed
        put(web, 'd.bin', 4, 100_000); // added; a and c unchanged (dedup)
      },
      () => {
        rmSync(join(web.src, 'a.bin'));
        put(web, 'e.bin', 5, 150_000);
      },
      () => writeFileSync(join(web.src, 'c.txt'), 'bye '.repeat(30_000)),
    ];
    for (const step of steps) {
      step();
      const id = await backup(webConfig, storage);
      expected.set(id, { files: tree(web.src), src: web.src });
    }
    for (let i = 0; i < 2; i++) {
      put(db, 'dump.sql', 10 + i, 400_000);
      const id = await backup(dbConfig, storage);
      expected.set(id, { files: tree(db.src), src: db.src });
    }
    expect(expected.size).toBe(6);

    const forget = await planForget(storage, { indexPrefix: INDEX, policy: { last: 2 } });
    expect(forget.remove.map((d) => d.snapshot.host)).toEqual(['web', 'web']);
    await executeForget(storage, forget);
    // Two days later: everything is past the grace period.
    const options: PruneOptions = { indexPrefix: INDEX, identities: [parseIdentity(web.identity)], tmpDir: web.root, now: () => new Date(Date.now() + 2 * DAY) };
    const plan = await planPrune(storage, options);
    expect(plan.deleteBlobs.length).toBeGreaterThan(0);
    expect(plan.warnings).toEqual([]);
    const blobsBefore = (await blobKeys(storage)).length;
    const result = await executePrune(storage, plan, options);
    expect((await blobKeys(storage)).length).toBe(blobsBefore - result.deletedBlobs);

    for (const d of forget.keep) {
      const want = expected.get(d.snapshot.id)!;
      const got = await restoreTree(storage, web, d.snapshot.id, want.src);
      expect(got.failed).toBe(0);
      expect([...got.files.keys()]).toEqual([...want.files.keys()]);
      for (const [name, content] of want.files) expect(got.files.get(name)!.equals(content), `${d.snapshot.id} ${name}`).toBe(true);
    }
    const report = await verifyStore(storage, { indexPrefix: INDEX, deep: { identities: [parseIdentity(web.identity)], tmpDir: web.root } });
    expect(report.problems).toEqual([]);
    expect(report.unreferenced.count).toBe(0);
    expect((await keysUnder(storage, INDEX)).filter((k) => k.endsWith('.db.zst.age'))).toHaveLength(4);
    await storage.close();
  });
});

/** A store whose manifest puts wait for `release()`: the backup is "in flight" meanwhile. */
class PausedStorage implements Storage {
  readonly description: string;
  private release: (() => void) | undefined;
  private readonly gate: Promise<void>;
  readonly reached: Promise<void>;
  private reach: (() => void) | undefined;

  constructor(private readonly inner: Storage) {
    this.description = inner.description;
    this.gate = new Promise((r) => (this.release = r));
    this.reached = new Promise((r) => (this.reach = r));
  }

  open(): void {
    this.release?.();
  }

  async put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    if (key.endsWith('.manifest.json.zst')) {
      this.reach?.();
      await this.gate;
    }
    return this.inner.put(key, body, options);
  }
  get: Storage['get'] = (...a) => this.inner.get(...a);
  stat: Storage['stat'] = (...a) => this.inner.stat(...a);
  list: Storage['list'] = (...a) => this.inner.list(...a);
  delete: Storage['delete'] = (...a) => this.inner.delete(...a);
  close: Storage['close'] = () => this.inner.close();
}

describe('prune while runBackup is between its blobs and its manifest', () => {
  async function scenario(graceMs: number): Promise<{ deleted: number; failed: number; problems: string[] }> {
    const ws = workspace();
    const config = ws.config();
    const storage = openStorage(config.storage);
    writeFileSync(join(ws.src, 'old.bin'), pseudoRandom(600_000, 1));
    await backup(config, storage);
    writeFileSync(join(ws.src, 'new.bin'), pseudoRandom(600_000, 2));
    const paused = new PausedStorage(storage);
    const running = runBackup(config, { storage: paused, workers: 1, progressIntervalMs: 0 });
    await paused.reached; // every new blob is uploaded; no manifest, no metadata yet
    const options: PruneOptions = { indexPrefix: INDEX, identities: [parseIdentity(ws.identity)], tmpDir: ws.root, graceMs };
    const result = await executePrune(storage, await planPrune(storage, options), options);
    paused.open();
    const id = (await running).snapshotId;
    let failed: number;
    try {
      failed = (await restoreTree(storage, ws, id, ws.src)).failed;
    } catch {
      failed = Infinity;
    }
    const report = await verifyStore(storage, { indexPrefix: INDEX });
    await storage.close();
    return { deleted: result.deletedBlobs, failed, problems: report.problems.map((p) => p.kind) };
  }

  it('grace 0: prune deletes the new blobs, and the snapshot written next is broken', async () => {
    const r = await scenario(0);
    expect(r.deleted).toBeGreaterThan(0);
    expect(r.failed).toBeGreaterThan(0);
    expect(r.problems).toContain('missing-blob');
  });

  it('default grace: nothing is lost', async () => {
    const r = await scenario(DEFAULT_GRACE_MS);
    expect(r).toEqual({ deleted: 0, failed: 0, problems: [] });
  });
});

