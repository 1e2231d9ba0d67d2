/**
 * The state cache holds source file names and stat data: its files must be private (0600), new
 * or left over from an older vaultik that made them 0644. And StateCache.blobSize answers what
 * backup used to open a second connection for.
 */
import { chmodSync, existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/index.js';
import { StateCache, storeIdentity } from '../../src/cache/index.js';
import { openStorage } from '../../src/storage/index.js';
import { decryptSnapshot, makeWorkspace, storeObjects, type Workspace } from '../backup/helpers.js';
import { pseudoRandom } from '../helpers/tree.js';
import { localIndexFile } from '../helpers/snapshots.js';

let ws: Workspace | undefined;
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

const modeOf = (p: string): number => statSync(p).mode & 0o777;

describe('state cache files', () => {
  it('are created 0600, and an existing 0644 cache is tightened on the next run', async () => {
    ws = makeWorkspace();
    const storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
    writeFileSync(join(ws.src, 'a.bin'), pseudoRandom(200 * 1024, 5));
    const old = process.umask(0o022);
    try {
      await runBackup(ws.config(), { storage, workers: 1, progressIntervalMs: 0 });
      for (const p of [ws.indexPath, `${ws.indexPath}-wal`, `${ws.indexPath}-shm`]) if (existsSync(p)) expect(modeOf(p), p).toBe(0o600);
      chmodSync(ws.indexPath, 0o644);
      writeFileSync(join(ws.src, 'b.bin'), pseudoRandom(10 * 1024, 6));
      await runBackup(ws.config(), { storage, workers: 1, progressIntervalMs: 0 });
      expect(modeOf(ws.indexPath)).toBe(0o600);
    } finally {
      process.umask(old);
      await storage.close();
    }
  });

  it('blobSize: the stored size of every data blob the cache recorded, undefined for others', async () => {
    ws = makeWorkspace();
    const storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
    writeFileSync(join(ws.src, 'a.bin'), pseudoRandom(300 * 1024, 7));
    const config = ws.config();
    const { snapshotId } = await runBackup(config, { storage, workers: 1, progressIntervalMs: 0 });
    await storage.close();
    // The store's blobs are data blobs and the snapshot's shards (listed by its root).
    const { shardBlobs } = decryptSnapshot(localIndexFile(ws.store, snapshotId), (key) => join(ws!.store, key), ws.identity);
    const blobs = [...storeObjects(ws.store)].filter(([k]) => k.startsWith('blobs/'));
    const shards = blobs.filter(([k]) => shardBlobs.includes(k.split('/').at(-1)!));
    expect(shards).toHaveLength(shardBlobs.length);
    const data = blobs.filter(([k]) => !shardBlobs.includes(k.split('/').at(-1)!));
    expect(data.length).toBeGreaterThan(0);
    const cache = StateCache.open(config.indexPath, storeIdentity({ spec: config.storage, indexPrefix: config.indexPrefix, recipients: config.recipients }));
    try {
      expect(cache.resetReason).toBeUndefined();
      for (const [key, size] of data) expect(cache.blobSize(key.split('/').at(-1)!)).toBe(size);
      expect(cache.blobSize('0'.repeat(64))).toBeUndefined();
    } finally {
      cache.close();
    }
  });
});
