/**
 * Object Lock on a real server (radosgw; s3rver does not enforce locks), in a bucket created with
 * Object Lock (so versioned):
 * - forget of a locked snapshot is refused (exit 6) and the snapshot stays listed and restorable:
 *   no delete marker hides it;
 * - prune --grace 0 (the CLI, which knows nothing of the lock: it learns the bucket is versioned
 *   from DeleteObjects' answer) that must delete locked blobs reports them, exits 6, deletes the
 *   unlocked ones for real (no version left behind), and every kept snapshot still restores.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ListObjectVersionsCommand } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/errors.js';
import { executeForget, planForget } from '../../src/prune/index.js';
import { listSnapshots } from '../../src/snapshot/index.js';
import { openStorage } from '../../src/storage/open.js';
import { S3Storage } from '../../src/storage/s3.js';
import { DeleteRefusedError, type S3StorageSpec } from '../../src/storage/types.js';
import { verifyStore } from '../../src/verify/index.js';
import { runMain } from '../helpers/io.js';
import { radosgwTarget } from '../helpers/radosgw.js';
import { makeTempDir } from '../helpers/tmp.js';
import { DAY, INDEX, Source, allKeys, blobKeys, newKeys, readSnapshot, sampleFiles } from './kit.js';

const rgw = radosgwTarget();
const tmp = makeTempDir('vaultik-object-lock-');
afterAll(() => tmp.cleanup());
const keys = newKeys();
// The server records every object now; made-up snapshot times lie in the last days, as real
// ones would (older ids are suspect: src/snapshot/list.ts judgeSnapshot).
const T0 = Date.now() - 5 * DAY;

/** The environment of `vaultik prune <bucket> <prefix>` for `spec`'s server. */
const cliEnv = (spec: S3StorageSpec): NodeJS.ProcessEnv => ({
  AWS_ENDPOINT_URL_S3: spec.endpoint,
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: spec.accessKeyId,
  AWS_SECRET_ACCESS_KEY: spec.secretAccessKey,
  VAULTIK_PRIVATE_KEY: keys.secret,
});

/** Every version and delete marker under `spec`'s prefix, as "key version|marker". */
async function versions(spec: S3StorageSpec): Promise<string[]> {
  const s3 = new S3Storage(spec);
  try {
    const out = await s3.client.send(new ListObjectVersionsCommand({ Bucket: spec.bucket, Prefix: spec.prefix }));
    return [...(out.Versions ?? []).map((v) => `${v.Key} version`), ...(out.DeleteMarkers ?? []).map((m) => `${m.Key} marker`)].sort();
  } finally {
    await s3.close();
  }
}

describe.skipIf(rgw.missing)(`Object Lock on radosgw${rgw.label}`, () => {
  it('locked objects are never hidden: forget and prune report them, exit 6, and every snapshot still restores', async () => {
    const server = await rgw.ready();
    const bucket = await server.createBucket({ objectLock: true });
    const locked = server.spec(bucket, 'locked/', { objectLock: { mode: 'governance', days: 1 } });
    const storage = openStorage(locked, { retry: { baseDelayMs: 5, maxDelayMs: 20 } });
    const tmpDir = join(tmp.dir, 'locked');
    mkdirSync(tmpDir);
    const src = new Source(storage, keys, { host: 'h', tmpDir, chunkSize: 1024, blobLimit: 4096 });
    const snapshots = new Map<string, Record<string, Buffer>>();
    for (const day of [0, 1]) {
      const files = sampleFiles(1 + day, ['a', 'b'], 6000);
      snapshots.set((await src.backup(new Date(T0 + day * DAY), files)).id, files);
    }
    const [older] = snapshots.keys();
    // A backup that never published: its blobs are garbage for prune, and locked.
    const orphan = await src.backup(new Date(T0 + 2 * DAY), sampleFiles(9, ['z'], 9000), { publish: false });
    expect(orphan.uploaded.length).toBeGreaterThan(0);

    // forget: the snapshot's metadata is locked.
    const forget = await planForget(storage, { indexPrefix: INDEX, ids: [older!] });
    const refusal = await executeForget(storage, forget).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(DeleteRefusedError);
    expect((refusal as DeleteRefusedError).exitCode).toBe(ExitCode.STORAGE);
    expect((await listSnapshots(storage, INDEX)).map((s) => s.id).sort()).toEqual([...snapshots.keys()].sort());

    // prune through the CLI, with only <bucket> <prefix>: no object_lock setting to go by.
    const before = await blobKeys(storage);
    const pruned = await runMain(['prune', bucket, 'locked/', '--grace', '0'], cliEnv(locked));
    expect(pruned.code, pruned.stderr).toBe(ExitCode.STORAGE);
    expect(pruned.stderr).toMatch(new RegExp(`refused to delete ${orphan.uploaded.length} object\\(s\\).*Object Lock.*Deleted 0 of ${orphan.uploaded.length} unreferenced blob`));
    // Nothing vanished from the listing, no delete marker was left.
    expect(await blobKeys(storage)).toEqual(before);
    expect((await versions(locked)).filter((v) => v.endsWith('marker'))).toEqual([]);
    for (const [id, files] of snapshots) {
      const got = await readSnapshot(storage, id, [keys.identity], tmpDir);
      for (const [name, content] of Object.entries(files)) expect(got.get(name)!.equals(content), `${id} ${name}`).toBe(true);
    }
    expect((await verifyStore(storage, { indexPrefix: INDEX, deep: { identities: [keys.identity], tmpDir } })).problems).toEqual([]);
    await storage.close();
  });

  it('without a lock on the objects, prune in the versioned bucket deletes every version, not just adds markers', async () => {
    const server = await rgw.ready();
    const bucket = await server.createBucket({ objectLock: true });
    const spec = server.spec(bucket, 'open/');
    const storage = openStorage(spec, { retry: { baseDelayMs: 5, maxDelayMs: 20 } });
    const tmpDir = join(tmp.dir, 'open');
    mkdirSync(tmpDir);
    const src = new Source(storage, keys, { host: 'h', tmpDir, chunkSize: 1024, blobLimit: 4096 });
    const first = await src.backup(new Date(T0), sampleFiles(2, ['a'], 6000));
    src.resetDedup();
    const second = await src.backup(new Date(T0 + DAY), sampleFiles(3, ['b'], 6000));
    await executeForget(storage, await planForget(storage, { indexPrefix: INDEX, ids: [first.id] }));
    const pruned = await runMain(['prune', bucket, 'open/', '--grace', '0'], cliEnv(spec));
    expect(pruned.code, pruned.stderr).toBe(ExitCode.OK);
    const listed = await blobKeys(storage);
    for (const hash of first.uploaded) expect(listed.some((k) => k.endsWith(hash))).toBe(false);
    // Every version of every object left is a current one: nothing deleted survives as a version.
    const all = await versions(spec);
    expect(all.filter((v) => v.endsWith('marker'))).toEqual([]);
    expect(all.length).toBe((await allKeys(storage)).length);
    const got = await readSnapshot(storage, second.id, [keys.identity], tmpDir);
    expect(got.get('b')!.equals(sampleFiles(3, ['b'], 6000).b!)).toBe(true);
    await storage.close();
  });
});
