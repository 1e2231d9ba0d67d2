/**
 * forget: keyless planning from object names, deletion order (metadata, then manifest), each
 * host's latest always kept, explicit ids, host filter, and refusal without a keep rule.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { DELETE_BATCH, deleteInBatches, executeForget, planForget } from '../../src/prune/index.js';
import { MemoryStorage } from '../helpers/memoryStorage.js';
import { makeTempDir } from '../helpers/tmp.js';
import { DAY, INDEX, Source, keysUnder, newKeys, sampleFiles } from './kit.js';

const tmp = makeTempDir('vaultik-forget-');
afterAll(tmp.cleanup);
const keys = newKeys();
const T0 = Date.UTC(2026, 0, 1, 3);

describe('forget', () => {
  const storage = new MemoryStorage();
  const ids: Record<string, string[]> = { a: [], b: [] };

  beforeAll(async () => {
    for (const host of ['a', 'b'] as const) {
      const src = new Source(storage, keys, { host, tmpDir: tmp.dir, chunkSize: 1024, blobLimit: 8192 });
      for (let d = 0; d < 5; d++) {
        const run = await src.backup(new Date(T0 + d * DAY + (host === 'b' ? 3600_000 : 0)), sampleFiles(d, ['x'], 2000));
        ids[host]!.push(run.id);
      }
    }
  });

  it('plans from object names alone: lists the index, reads nothing', async () => {
    storage.calls.length = 0;
    const plan = await planForget(storage, { indexPrefix: INDEX, policy: { last: 2 } });
    expect(storage.calls.every((c) => c.op === 'list')).toBe(true);
    expect(plan.keep.map((d) => d.snapshot.id)).toEqual([ids.a![4], ids.a![3], ids.b![4], ids.b![3]]);
    expect(plan.remove.map((d) => d.snapshot.id).sort()).toEqual([...ids.a!.slice(0, 3), ...ids.b!.slice(0, 3)].sort());
    expect(plan.untouched).toBe(0);
  });

  it('requires a keep rule or ids, not both', async () => {
    await expect(planForget(storage, { indexPrefix: INDEX })).rejects.toThrow(UsageError);
    await expect(planForget(storage, { indexPrefix: INDEX, policy: { last: 0 } })).rejects.toThrow(/at least one --keep/);
    await expect(planForget(storage, { indexPrefix: INDEX, policy: { last: 1 }, ids: [ids.a![0]!] })).rejects.toThrow(/not both/);
  });

  it('never forgets a host latest snapshot, even when named', async () => {
    await expect(planForget(storage, { indexPrefix: INDEX, ids: [ids.b![4]!] })).rejects.toThrow(/latest snapshot of host 'b'/);
    await expect(planForget(storage, { indexPrefix: INDEX, ids: ['a-20990101T000000.000Z'] })).rejects.toThrow(/unknown snapshot/);
  });

  it('with --host leaves other hosts alone', async () => {
    const plan = await planForget(storage, { indexPrefix: INDEX, policy: { last: 1 }, host: 'b' });
    expect(plan.untouched).toBe(5);
    expect(plan.remove.every((d) => d.snapshot.host === 'b')).toBe(true);
    expect(plan.remove).toHaveLength(4);
  });

  it('deletes metadata objects first, then manifests, and touches no blob', async () => {
    const blobsBefore = await keysUnder(storage, 'blobs/');
    const plan = await planForget(storage, { indexPrefix: INDEX, ids: [ids.a![0]!, ids.a![1]!] });
    storage.calls.length = 0;
    const order: string[] = [];
    const inner = storage.delete.bind(storage);
    storage.delete = async (keys: string[]): Promise<void> => {
      order.push(...keys);
      await inner(keys);
    };
    try {
      const result = await executeForget(storage, plan);
      expect(result).toMatchObject({ metadataDeleted: 2, manifestsDeleted: 2 });
    } finally {
      storage.delete = inner;
    }
    expect(order.map((k) => k.replace(/^.*\.(db\.zst\.age|manifest\.json\.zst)$/, '$1'))).toEqual([
      'db.zst.age',
      'db.zst.age',
      'manifest.json.zst',
      'manifest.json.zst',
    ]);
    expect(await keysUnder(storage, 'blobs/')).toEqual(blobsBefore);
    const left = await keysUnder(storage, INDEX);
    expect(left.some((k) => k.includes(ids.a![0]!))).toBe(false);
    expect(left.some((k) => k.includes(ids.a![2]!))).toBe(true);
    // Rerunning the same plan (an interrupted forget) is harmless.
    await executeForget(storage, plan);
  });
});

describe('deleteInBatches', () => {
  it('sends at most 1000 keys per request, in order, and stops between batches when aborted', async () => {
    const sizes: number[] = [];
    const seen: string[] = [];
    const store = { delete: async (keys: string[]): Promise<void> => void (sizes.push(keys.length), seen.push(...keys)) };
    const keys = Array.from({ length: 2500 }, (_, i) => `blobs/k${i}`);
    const progress: number[] = [];
    await deleteInBatches(store, keys, (done) => progress.push(done));
    expect(DELETE_BATCH).toBe(1000);
    expect(sizes).toEqual([1000, 1000, 500]);
    expect(seen).toEqual(keys);
    expect(progress).toEqual([1000, 2000, 2500]);
    const controller = new AbortController();
    sizes.length = 0;
    await expect(deleteInBatches(store, keys, () => controller.abort(new Error('stop')), controller.signal)).rejects.toThrow('stop');
    expect(sizes).toEqual([1000]);
  });
});
