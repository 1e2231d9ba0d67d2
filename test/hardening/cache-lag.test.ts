/**
 * The "state cache lags the store" window (docs/SECURITY.md): a backup writes its metadata and
 * then fails (or is killed) before the cache records the snapshot. The cache's dedup base is
 * still the previous snapshot S1 while the store's latest is S2. If the user then forgets S1
 * (retention keeps the latest, S2) and prunes, blobs only S1 referenced are deleted — and a
 * cache that still dedups against all of S1 makes the next snapshot reference them.
 *
 * The fix under test (src/cache/cache.ts): before uploading metadata the cache records the
 * pending snapshot and its blobs; a run that starts with a pending snapshot left over dedups only
 * against blobs in BOTH the base and the pending snapshot (whichever of the two exists keeps
 * them), plus the grace-protected resume window (0 here: the blobs are "old").
 */
import { afterEach, describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runBackup } from '../../src/backup/index.js';
import { parseIdentity } from '../../src/crypto/index.js';
import { executePrune, planPrune } from '../../src/prune/index.js';
import { listSnapshots } from '../../src/snapshot/index.js';
import { openStorage } from '../../src/storage/index.js';
import type { PutBody, PutOptions, Storage } from '../../src/storage/types.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { pseudoRandom } from '../helpers/tree.js';
import { goldenCopy, restoreDiffs, storeProblems } from './kit.js';
import { mkdirSync } from 'node:fs';
import { listingOf } from '../helpers/snapshots.js';

/** Puts everything, then fails once the snapshot metadata is in: "crashed before the cache commit". */
function failAfterMetadata(inner: Storage): Storage {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'put') {
        return async (key: string, body: PutBody, options?: PutOptions) => {
          await target.put(key, body, options);
          if (key.endsWith('.db.zst.age')) throw new Error('simulated crash after the metadata upload');
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

let ws: Workspace | undefined;
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

describe('state cache lags the store', () => {
  it('metadata written, cache not updated, the previous snapshot forgotten and pruned: the next snapshot is still complete', async () => {
    ws = makeWorkspace({ chunkSize: '64KiB', blobSizeLimit: '512KiB' });
    const config = ws.config();
    const storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
    const cache = { resumeWindowMs: 0 };
    const a = pseudoRandom(300 * 1024, 11);
    const b = pseudoRandom(300 * 1024, 12);
    writeFileSync(join(ws.src, 'a.bin'), a);
    writeFileSync(join(ws.src, 'b.bin'), b);
    const s1 = await runBackup(config, { storage, cache, workers: 2, progressIntervalMs: 0 });

    // S2 without b.bin: its metadata lands, then the run "crashes".
    rmSync(join(ws.src, 'b.bin'));
    await expect(runBackup(config, { storage: failAfterMetadata(storage), cache, workers: 2, progressIntervalMs: 0, now: () => new Date(Date.now() + 1000) })).rejects.toThrow(/simulated crash/);
    const ids = (await listSnapshots(storage, 'index/')).map((s) => s.id);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toBe(s1.snapshotId);

    // Retention keeps the latest (S2): forget S1, prune with no grace — b.bin's blob goes.
    const s1Listing = await listingOf(storage, 'index/', s1.snapshotId);
    await storage.delete([s1Listing.root.key, s1Listing.manifests[0]!.key]);
    const identities = [parseIdentity(ws.identity)];
    const pruneOptions = { indexPrefix: 'index/', identities, graceMs: 0, tmpDir: ws.root };
    const result = await executePrune(storage, await planPrune(storage, pruneOptions), pruneOptions);
    expect(result).toBeDefined();

    // b.bin comes back; the next run must not dedup against the deleted blob.
    writeFileSync(join(ws.src, 'b.bin'), b);
    const s3 = await runBackup(config, { storage, cache, workers: 2, progressIntervalMs: 0, now: () => new Date(Date.now() + 2000) });
    expect(await storeProblems(storage)).toEqual([]);
    const golden = join(ws.root, 'golden');
    goldenCopy(ws.src, golden);
    mkdirSync(join(ws.root, 'scratch'));
    expect(await restoreDiffs(storage, ws.identity, s3.snapshotId, golden, ws.src, join(ws.root, 'scratch'))).toEqual([]);
    await storage.close();
  }, 60_000);
});
