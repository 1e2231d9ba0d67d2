/**
 * prune on the local-directory store, with real object timestamps (file mtimes):
 * - several snapshots with overlapping and disjoint data, forget some, prune: every remaining
 *   snapshot reads back byte for byte, no unreferenced blob older than the grace is left, and
 *   verify (keyless and deep) finds nothing wrong;
 * - dry run, grace period, orphan manifests, snapshots that appear between plan and execute,
 *   interrupted prune, a lying manifest, a missing blob, the wrong key;
 * - a backup running while prune runs: grace 0 breaks that backup's snapshot, the default grace
 *   loses nothing.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { DEFAULT_GRACE_MS, PruneRefusedError, executeForget, executePrune, planForget, planPrune, type PruneOptions } from '../../src/prune/index.js';
import { buildManifest, listSnapshots, type ChunkLocation } from '../../src/snapshot/index.js';
import { LocalStorage } from '../../src/storage/local.js';
import type { Storage } from '../../src/storage/types.js';
import { verifyStore } from '../../src/verify/index.js';
import { listingOf, putIndexObject } from '../helpers/snapshots.js';
import { makeTempDir } from '../helpers/tmp.js';
import { DAY, INDEX, Source, allKeys, blobKeys, keysUnder, newKeys, readSnapshot, sampleFiles, setMtime, type Keys } from './kit.js';

const tmp = makeTempDir('vaultik-prune-');
afterAll(tmp.cleanup);
const keys = newKeys();
const T0 = Date.UTC(2026, 0, 1, 3);
let n = 0;

interface Store {
  storage: LocalStorage;
  root: string;
  tmpDir: string;
  /** Sets every object's timestamp to `ago` ms before now. */
  ageAll(ago: number): Promise<void>;
}

async function newStore(): Promise<Store> {
  const root = join(tmp.dir, `store-${++n}`);
  const tmpDir = join(tmp.dir, `tmp-${n}`);
  const { mkdirSync } = await import('node:fs');
  mkdirSync(tmpDir, { recursive: true });
  // The store directory must exist (vaultik never creates it).
  mkdirSync(root);
  const storage = new LocalStorage({ path: root, prefix: '' });
  return {
    storage,
    root,
    tmpDir,
    ageAll: async (ago) => {
      const when = new Date(Date.now() - ago);
      // Roots keep the time of their snapshot (the store-clock checks compare the two).
      for (const k of await allKeys(storage)) if (!k.endsWith('.db.zst.age')) setMtime(root, k, when);
    },
  };
}

function options(store: Store, extra: Partial<PruneOptions> = {}, k: Keys = keys): PruneOptions {
  return { indexPrefix: INDEX, identities: [k.identity], tmpDir: store.tmpDir, ...extra };
}

/** Blob hashes referenced by the manifests in the store. */
async function referencedByManifests(storage: Storage): Promise<Set<string>> {
  const { readManifest } = await import('../../src/snapshot/index.js');
  const out = new Set<string>();
  for (const s of await listSnapshots(storage, INDEX)) {
    for (const object of s.manifests) for (const b of (await readManifest(storage, object, s.id))?.blobs ?? []) out.add(b.hash);
  }
  return out;
}

describe('prune: the full cycle on a local store', () => {
  it('forget some snapshots, prune, and every remaining snapshot reads back byte for byte', async () => {
    const store = await newStore();
    const { storage } = store;
    const web = new Source(storage, keys, { host: 'web', tmpDir: store.tmpDir, chunkSize: 2048, blobLimit: 16 * 1024 });
    const db = new Source(storage, keys, { host: 'db', tmpDir: store.tmpDir, chunkSize: 2048, blobLimit: 16 * 1024 });
    const base = sampleFiles(1, ['a', 'b', 'c'], 20_000);
    const expected = new Map<string, Record<string, Buffer>>();
    // web: a growing, changing data set (overlap between consecutive snapshots).
    let files = { ...base };
    for (let d = 0; d < 6; d++) {
      files = { ...files, [`new-${d}`]: sampleFiles(100 + d, ['x'], 10_000).x!, a: d % 2 === 0 ? base.a! : sampleFiles(200 + d, ['a'], 20_000).a! };
      if (d === 3) delete files['new-0'];
      const run = await web.backup(new Date(T0 + d * DAY), files);
      expected.set(run.id, files);
    }
    // db: disjoint data.
    for (let d = 0; d < 3; d++) {
      const f = sampleFiles(300 + d, ['dump'], 30_000);
      const run = await db.backup(new Date(T0 + d * DAY + 3600_000), f);
      expected.set(run.id, f);
    }
    await store.ageAll(3 * DAY);
    const blobsBefore = await blobKeys(storage);

    const forget = await planForget(storage, { indexPrefix: INDEX, policy: { last: 2 } });
    expect(forget.remove).toHaveLength(4 + 1);
    await executeForget(storage, forget);

    const dry = await planPrune(storage, options(store));
    expect(dry.snapshots).toHaveLength(4);
    expect(dry.deleteBlobs.length).toBeGreaterThan(0);
    expect(dry.warnings).toEqual([]);
    expect(await blobKeys(storage)).toEqual(blobsBefore); // planning changes nothing
    const result = await executePrune(storage, dry, options(store));
    expect(result.deletedBlobs).toBe(dry.deleteBlobs.length);
    expect(result.freedBytes).toBe(dry.deleteBlobBytes);
    expect(result.sparedBlobs).toBe(0);

    // No unreferenced blob older than the grace is left, and nothing referenced went away.
    const referenced = await referencedByManifests(storage);
    const left = (await blobKeys(storage)).map((k) => k.split('/').pop()!);
    expect(new Set(left)).toEqual(referenced);
    expect(blobsBefore.length - left.length).toBe(dry.deleteBlobs.length);

    for (const d of forget.keep) {
      const got = await readSnapshot(storage, d.snapshot.id, [keys.identity], store.tmpDir);
      const want = expected.get(d.snapshot.id)!;
      expect([...got.keys()].sort()).toEqual(Object.keys(want).sort());
      for (const [name, content] of got) expect(content.equals(want[name]!), `${d.snapshot.id} ${name}`).toBe(true);
    }
    const report = await verifyStore(storage, { indexPrefix: INDEX, deep: { identities: [keys.identity], tmpDir: store.tmpDir } });
    expect(report.problems).toEqual([]);
    expect(report.unreferenced.count).toBe(0);

    // A second prune finds nothing to do.
    const again = await planPrune(storage, options(store));
    expect(again.deleteBlobs).toEqual([]);
  });
});

describe('prune: safety', () => {
  let store: Store;
  let src: Source;
  beforeEach(async () => {
    store = await newStore();
    src = new Source(store.storage, keys, { host: 'h', tmpDir: store.tmpDir, chunkSize: 1024, blobLimit: 4096 });
  });

  /** Two snapshots with different data; forgetting the first leaves its blobs as garbage. */
  async function withGarbage(): Promise<{ old: string; kept: string; garbage: string[]; oldShards: string[]; keptShards: string[]; oldChunks: Map<string, ChunkLocation> }> {
    const a = await src.backup(new Date(T0), sampleFiles(1, ['f'], 10_000));
    const oldChunks = new Map(src.chunkIndex);
    src.resetDedup();
    const b = await src.backup(new Date(T0 + DAY), sampleFiles(2, ['f'], 10_000));
    const plan = await planForget(store.storage, { indexPrefix: INDEX, ids: [a.id] });
    await executeForget(store.storage, plan);
    // The first snapshot's data blobs and its shards.
    return { old: a.id, kept: b.id, garbage: a.uploaded, oldShards: a.shards, keptShards: b.shards, oldChunks };
  }

  it('dry run: reports count and bytes, changes nothing', async () => {
    const { garbage } = await withGarbage();
    await store.ageAll(2 * DAY);
    const before = await allKeys(store.storage);
    const plan = await planPrune(store.storage, options(store));
    expect(plan.deleteBlobs.map((b) => b.key.split('/').pop()).sort()).toEqual([...garbage].sort());
    expect(plan.deleteBlobBytes).toBe(plan.deleteBlobs.reduce((s, b) => s + b.size, 0));
    expect(plan.keep.count).toBeGreaterThan(0);
    expect(await allKeys(store.storage)).toEqual(before);
  });

  it('never deletes a blob younger than the grace period (store timestamps)', async () => {
    const { garbage } = await withGarbage();
    await store.ageAll(2 * DAY);
    // One garbage blob is recent: kept.
    const young = garbage[0]!;
    setMtime(store.root, `blobs/${young.slice(0, 2)}/${young.slice(2, 4)}/${young}`, new Date(Date.now() - 3600_000));
    const plan = await planPrune(store.storage, options(store));
    expect(plan.keepYoung.count).toBe(1);
    expect(plan.deleteBlobs.map((b) => b.key)).not.toContain(`blobs/${young.slice(0, 2)}/${young.slice(2, 4)}/${young}`);
    expect(plan.deleteBlobs).toHaveLength(garbage.length - 1);
    // A shorter grace, or a later clock, lets it go.
    expect((await planPrune(store.storage, options(store, { graceMs: 1000 }))).deleteBlobs).toHaveLength(garbage.length);
    expect((await planPrune(store.storage, options(store, { now: () => new Date(Date.now() + DAY) }))).deleteBlobs).toHaveLength(garbage.length);
  });

  it('deletes orphan manifests older than the grace, keeps younger ones', async () => {
    await withGarbage();
    const orphanOld = 'h-20250101T000000.000Z';
    const orphanYoung = 'h-20250102T000000.000Z';
    const oldKey = await putIndexObject(store.storage, 'manifest', INDEX, orphanOld, buildManifest(orphanOld, []));
    const youngKey = await putIndexObject(store.storage, 'manifest', INDEX, orphanYoung, buildManifest(orphanYoung, []));
    await store.ageAll(2 * DAY);
    setMtime(store.root, youngKey, new Date());
    const plan = await planPrune(store.storage, options(store));
    expect(plan.deleteManifests.map((m) => m.key)).toEqual([oldKey]);
    expect(plan.keepYoungManifests).toBe(1);
    const result = await executePrune(store.storage, plan, options(store));
    expect(result.deletedManifests).toBe(1);
    const index = await keysUnder(store.storage, INDEX);
    expect(index).toContain(youngKey);
    expect(index).not.toContain(oldKey);
  });

  it('with the wrong key deletes nothing and fails with NO_IDENTITY', async () => {
    await withGarbage();
    await store.ageAll(2 * DAY);
    const before = await allKeys(store.storage);
    const err = await planPrune(store.storage, options(store, {}, newKeys())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VaultikError);
    expect((err as VaultikError).exitCode).toBe(ExitCode.NO_IDENTITY);
    expect((err as VaultikError).message).toMatch(/nothing was deleted/);
    expect(await allKeys(store.storage)).toEqual(before);
    // No decrypted metadata is left behind.
    expect(readdirSync(store.tmpDir).filter((f) => f.startsWith('vaultik-snapshot-'))).toEqual([]);
  });

  it('stops and deletes nothing when a manifest disagrees with its metadata', async () => {
    const { kept } = await withGarbage();
    await store.ageAll(2 * DAY);
    // The manifest "forgets" nothing but invents a blob; any difference stops prune.
    await store.storage.delete([(await listingOf(store.storage, INDEX, kept)).manifests[0]!.key]);
    await putIndexObject(store.storage, 'manifest', INDEX, kept, buildManifest(kept, [{ hash: 'ab'.repeat(32), size: 10 }]));
    const before = await allKeys(store.storage);
    const err = await planPrune(store.storage, options(store)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PruneRefusedError);
    expect((err as PruneRefusedError).exitCode).toBe(ExitCode.DATA);
    expect((err as Error).message).toMatch(new RegExp(`${kept}: manifest disagrees`));
    expect((err as Error).message).toMatch(/nothing was deleted/);
    expect(await allKeys(store.storage)).toEqual(before);
  });

  it('refuses to run beside a root named as vaultik 0.2.0 named them: their blobs would look like garbage', async () => {
    const { kept } = await withGarbage();
    await store.ageAll(2 * DAY);
    const legacy = `${INDEX}${kept.replace(/-\d{8}T/, '-20200101T')}.db.zst.age`;
    await store.storage.put(legacy, Buffer.from('a root of vaultik 0.2.0'));
    const before = await allKeys(store.storage);
    await expect(planPrune(store.storage, options(store))).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(/nothing was deleted: 1 snapshot root\(s\) named as vaultik 0\.2\.0 named them/) as unknown,
    });
    expect(await allKeys(store.storage)).toEqual(before);
  });

  it('refuses to treat every blob as garbage when it finds no snapshot (wrong index prefix)', async () => {
    await withGarbage();
    await store.ageAll(2 * DAY);
    const before = await allKeys(store.storage);
    await expect(planPrune(store.storage, options(store, { indexPrefix: 'snapshots/' }))).rejects.toThrow(/no snapshot under 'snapshots\/'/);
    expect(await allKeys(store.storage)).toEqual(before);
  });

  it('notes a host name shared by configs with different source dirs', async () => {
    await src.backup(new Date(T0), sampleFiles(1, ['f'], 3000));
    const other = new Source(store.storage, keys, { host: 'h', tmpDir: store.tmpDir, sourceDirs: ['/etc'] });
    await other.backup(new Date(T0 + 60_000), sampleFiles(2, ['f'], 3000));
    const plan = await planPrune(store.storage, options(store));
    expect(plan.notes.join('\n')).toMatch(/host 'h' has snapshots of 2 different sets of source directories/);
    expect(plan.warnings).toEqual([]);
  });

  it('stops when a snapshot metadata cannot be read', async () => {
    const { kept } = await withGarbage();
    await store.ageAll(2 * DAY);
    await store.storage.delete([(await listingOf(store.storage, INDEX, kept)).root.key]);
    await putIndexObject(store.storage, 'root', INDEX, kept, Buffer.from('not an age file'));
    await expect(planPrune(store.storage, options(store))).rejects.toThrow(/metadata unreadable/);
  });

  it.each([
    ['a data blob', false],
    ['a shard', true],
  ])('reports snapshots whose blobs are missing loudly, and keeps their metadata: %s', async (_what, shard) => {
    const { kept, keptShards, garbage } = await withGarbage();
    await store.ageAll(2 * DAY);
    const referenced = [...(await referencedByManifests(store.storage))].sort();
    // A shard gone: the data blobs only it references are known from the manifest alone.
    const lost = shard ? keptShards[0]! : referenced.find((h) => !keptShards.includes(h))!;
    await store.storage.delete([`blobs/${lost.slice(0, 2)}/${lost.slice(2, 4)}/${lost}`]);
    const plan = await planPrune(store.storage, options(store));
    expect(plan.damaged).toEqual([{ snapshot: kept, missing: [lost] }]);
    expect(plan.warnings.join('\n')).toMatch(new RegExp(`SNAPSHOT ${kept} IS DAMAGED`));
    // Garbage still goes; nothing the damaged snapshot's manifest lists does.
    expect(plan.deleteBlobs.map((b) => b.key.split('/').pop()).sort()).toEqual([...garbage].sort());
    const rootKey = (await listingOf(store.storage, INDEX, kept)).root.key;
    await executePrune(store.storage, plan, options(store));
    expect(await keysUnder(store.storage, INDEX)).toContain(rootKey);
    const left = new Set((await blobKeys(store.storage)).map((k) => k.split('/').pop()));
    for (const h of referenced) if (h !== lost) expect(left.has(h), h).toBe(true);
  });

  it('spares what a snapshot published between plan and execute references', async () => {
    const { kept, oldChunks, oldShards } = await withGarbage();
    await store.ageAll(2 * DAY);
    const plan = await planPrune(store.storage, options(store));
    expect(plan.deleteBlobs.length).toBeGreaterThan(0);
    // A backup of another host, deduplicating against the garbage (as a cache that lags
    // behind could), finishes after the plan was made.
    const other = new Source(store.storage, keys, { host: 'late', tmpDir: store.tmpDir, chunkSize: 1024, blobLimit: 4096 });
    for (const [k, v] of oldChunks) other.chunkIndex.set(k, v);
    const late = await other.backup(new Date(T0 + 2 * DAY), sampleFiles(1, ['f'], 10_000));
    const result = await executePrune(store.storage, plan, options(store));
    expect(result.newSnapshots).toEqual([late.id]);
    // Every garbage data blob is spared; the forgotten snapshot's shards, which the late one
    // does not reference, still go.
    expect(oldShards.length).toBeGreaterThan(0);
    expect(result.sparedBlobs).toBe(plan.deleteBlobs.length - oldShards.length);
    expect(result.deletedBlobs).toBe(oldShards.length);
    const left = new Set((await blobKeys(store.storage)).map((k) => k.split('/').pop()));
    for (const h of oldShards) expect(left.has(h)).toBe(false);
    for (const id of [kept, late.id]) await readSnapshot(store.storage, id, [keys.identity], store.tmpDir);
  });

  it('an interrupted prune leaves a consistent store, and rerunning it finishes the job', async () => {
    const { kept, garbage } = await withGarbage();
    await store.ageAll(2 * DAY);
    expect(garbage.length).toBeGreaterThan(2);
    const plan = await planPrune(store.storage, options(store));
    // The store dies after the first batch of 2 keys.
    let calls = 0;
    const flaky: Storage = Object.create(store.storage) as Storage;
    flaky.delete = async (keys: string[]): Promise<void> => {
      if (++calls > 1) throw new Error('connection lost');
      await store.storage.delete(keys);
    };
    await expect(executePrune(flaky, plan, options(store, { deleteBatch: 2 }))).rejects.toThrow(/connection lost/);
    expect((await blobKeys(store.storage)).length).toBe((await referencedByManifests(store.storage)).size + garbage.length - 2);
    await readSnapshot(store.storage, kept, [keys.identity], store.tmpDir);
    const again = await planPrune(store.storage, options(store));
    expect(again.deleteBlobs).toHaveLength(garbage.length - 2);
    await executePrune(store.storage, again, options(store));
    expect(new Set((await blobKeys(store.storage)).map((k) => k.split('/').pop()))).toEqual(await referencedByManifests(store.storage));
    await readSnapshot(store.storage, kept, [keys.identity], store.tmpDir);
  });
});

describe('prune while a backup runs', () => {
  /**
   * The in-flight backup uploads its blobs, then prune runs, then the backup writes its
   * manifest and metadata. Its new blobs are referenced by no snapshot while prune looks.
   */
  async function interleave(graceMs: number): Promise<{ store: Store; id: string; blobsDeleted: number }> {
    const store = await newStore();
    const src = new Source(store.storage, keys, { host: 'h', tmpDir: store.tmpDir, chunkSize: 1024, blobLimit: 4096 });
    await src.backup(new Date(T0), sampleFiles(1, ['f'], 8000));
    await store.ageAll(3 * DAY); // yesterday's and older objects: past any grace
    const running = await src.backup(new Date(T0 + 3 * DAY), { ...sampleFiles(1, ['f'], 8000), g: sampleFiles(9, ['g'], 8000).g! }, { publish: false });
    expect(running.uploaded.length).toBeGreaterThan(0);
    const plan = await planPrune(store.storage, options(store, { graceMs }));
    const result = await executePrune(store.storage, plan, options(store, { graceMs }));
    await running.publish();
    return { store, id: running.id, blobsDeleted: result.deletedBlobs };
  }

  it('grace 0 deletes the blobs of the backup in flight: its snapshot is then broken', async () => {
    const { store, id, blobsDeleted } = await interleave(0);
    expect(blobsDeleted).toBeGreaterThan(0);
    await expect(readSnapshot(store.storage, id, [keys.identity], store.tmpDir)).rejects.toThrow(/does not exist|not found/);
    const report = await verifyStore(store.storage, { indexPrefix: INDEX });
    expect(report.problems.filter((p) => p.kind === 'missing-blob')).toHaveLength(blobsDeleted);
    expect(report.problems.every((p) => p.kind !== 'missing-blob' || p.snapshots.includes(id))).toBe(true);
  });

  it('the default grace loses nothing', async () => {
    const { store, id, blobsDeleted } = await interleave(DEFAULT_GRACE_MS);
    expect(blobsDeleted).toBe(0);
    const files = await readSnapshot(store.storage, id, [keys.identity], store.tmpDir);
    expect(files.get('g')!.equals(sampleFiles(9, ['g'], 8000).g!)).toBe(true);
    const report = await verifyStore(store.storage, { indexPrefix: INDEX, deep: { identities: [keys.identity], tmpDir: store.tmpDir } });
    expect(report.problems).toEqual([]);
  });
});
