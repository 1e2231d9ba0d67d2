/**
 * The state cache belongs to one store. Two real s3rver instances (two endpoints) with the same
 * bucket, prefix and index_path: a backup to the second after one to the first must not dedup
 * against blobs that only the first holds.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runBackup, type BackupEvent } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { parseIdentity } from '../../src/crypto/index.js';
import { runRestore } from '../../src/restore/index.js';
import { openStorage } from '../../src/storage/index.js';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.js';
import { compareTrees, pseudoRandom } from '../helpers/tree.js';
import { makeWorkspace, type Workspace } from './helpers.js';

let a: S3rverHandle;
let b: S3rverHandle;
let ws: Workspace | undefined;

beforeAll(async () => {
  [a, b] = await Promise.all([startS3rver(), startS3rver()]);
}, 120_000);
afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
});
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

const s3Yaml = (s3: S3rverHandle): string =>
  `s3: {endpoint: '${s3.endpoint}', bucket: ${s3.bucket}, prefix: host1/, access_key_id: S3RVER, secret_access_key: S3RVER, region: us-east-1}`;

async function backup(config: Config): Promise<{ snapshotId: string; bytesNew: number; events: BackupEvent[] }> {
  const events: BackupEvent[] = [];
  const storage = openStorage(config.storage);
  try {
    const summary = await runBackup(config, { storage, workers: 2, progressIntervalMs: 0, onEvent: (e) => events.push(e) });
    return { snapshotId: summary.snapshotId, bytesNew: summary.bytesNew, events };
  } finally {
    await storage.close();
  }
}

async function blobKeys(s3: S3rverHandle): Promise<string[]> {
  const storage = openStorage(s3.spec('host1/'));
  try {
    const keys: string[] = [];
    for await (const o of storage.list('blobs/')) keys.push(o.key);
    return keys;
  } finally {
    await storage.close();
  }
}

describe('the state cache and the store it belongs to', () => {
  it('a backup to the same bucket and prefix on another endpoint uploads every blob, and restores from there byte for byte', async () => {
    ws = makeWorkspace();
    mkdirSync(join(ws.src, 'd'));
    writeFileSync(join(ws.src, 'd', 'big.bin'), pseudoRandom(600_000, 3));
    writeFileSync(join(ws.src, 'small.txt'), 'small file\n');
    expect(a.bucket).toBe(b.bucket);

    const first = await backup(ws.writeConfig('', s3Yaml(a)));
    expect(first.bytesNew).toBeGreaterThan(600_000);
    const second = await backup(ws.writeConfig('', s3Yaml(b)));
    // Endpoint B holds none of A's blobs: everything is new there.
    expect(second.bytesNew).toBe(first.bytesNew);
    expect(second.events.some((e) => e.type === 'notice' && /state cache reset/.test(e.message))).toBe(true);
    expect((await blobKeys(b)).length).toBe((await blobKeys(a)).length);

    const storage = openStorage(b.spec('host1/'));
    const target = join(ws.root, 'restore-b');
    try {
      await runRestore({ storage, identities: [parseIdentity(ws.identity)], snapshotId: second.snapshotId, target, tmpDir: ws.root });
    } finally {
      await storage.close();
    }
    expect(compareTrees(ws.src, join(target, ws.src))).toEqual([]);
  }, 120_000);
});
