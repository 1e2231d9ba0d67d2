/**
 * verify on the local-directory store: a clean store passes; keyless verify catches a flipped
 * byte, a truncated blob and a deleted blob without any key; deep verify catches a manifest that
 * lies and a chunk whose content does not match its metadata; sampling; the wrong key.
 */
import { mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { blobKey } from '../../src/blob/index.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { buildManifest } from '../../src/snapshot/index.js';
import { listingOf, putIndexObject, setStoreTime } from '../helpers/snapshots.js';
import { LocalStorage } from '../../src/storage/local.js';
import { verifyStore, type VerifyEvent, type VerifyProblem } from '../../src/verify/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { INDEX, Source, newKeys, sampleFiles, type BackupRun } from '../prune/kit.js';

const tmp = makeTempDir('vaultik-verify-');
afterAll(tmp.cleanup);
const keys = newKeys();
const T0 = Date.UTC(2026, 0, 1, 3);
let n = 0;

describe('verify', () => {
  let root: string;
  let tmpDir: string;
  let storage: LocalStorage;
  let runs: BackupRun[];
  const deep = (): { identities: typeof keys.identity[]; tmpDir: string } => ({ identities: [keys.identity], tmpDir });
  const file = (hash: string): string => join(root, ...blobKey(hash).split('/'));
  const kinds = (problems: readonly VerifyProblem[]): string[] => problems.map((p) => p.kind).sort();

  beforeEach(async () => {
    root = join(tmp.dir, `store-${++n}`);
    tmpDir = join(tmp.dir, `tmp-${n}`);
    mkdirSync(tmpDir, { recursive: true });
    mkdirSync(root); // vaultik never creates the store directory itself.
    storage = new LocalStorage({ path: root, prefix: '' });
    const src = new Source(storage, keys, { host: 'h', tmpDir, chunkSize: 1024, blobLimit: 8192 });
    runs = [];
    runs.push(await src.backup(new Date(T0), sampleFiles(1, ['a', 'b'], 12_000)));
    runs.push(await src.backup(new Date(T0 + 3600_000), { ...sampleFiles(1, ['a'], 12_000), c: sampleFiles(2, ['c'], 9000).c! }));
  });

  it('passes a clean store, keyless and deep, and reports what it checked', async () => {
    const events: VerifyEvent[] = [];
    const report = await verifyStore(storage, { indexPrefix: INDEX, onEvent: (e) => events.push(e) });
    expect(report.problems).toEqual([]);
    expect(report.snapshots).toBe(2);
    expect(report.blobs.count).toBeGreaterThan(2);
    expect(report.hashed).toEqual(report.blobs);
    expect(report.referenced).toBe(report.blobs.count);
    expect(report.chunks.count).toBe(0);
    expect(events.some((e) => e.type === 'progress')).toBe(true);
    const full = await verifyStore(storage, { indexPrefix: INDEX, deep: deep() });
    expect(full.problems).toEqual([]);
    // 12 + 12 + 9 chunks of 1 KiB, 'a' shared by both snapshots and checked once.
    expect(full.chunks.count).toBe(12 + 12 + 9);
    expect(full.chunks.bytes).toBe(12_000 + 12_000 + 9000);
  });

  it('keyless: catches a flipped byte', async () => {
    const victim = runs[0]!.uploaded[1]!;
    const bytes = readFileSync(file(victim));
    bytes[bytes.length >> 1]! ^= 0x01;
    writeFileSync(file(victim), bytes);
    const report = await verifyStore(storage, { indexPrefix: INDEX });
    expect(report.problems).toEqual([{ kind: 'corrupt-blob', hash: victim, message: expect.stringMatching(/hashes to/) as unknown }]);
    // Deep verify also finds the chunk(s) in the flipped segment.
    const full = await verifyStore(storage, { indexPrefix: INDEX, deep: deep() });
    expect(kinds(full.problems)).toContain('bad-chunk');
    expect(full.problems.filter((p) => p.kind === 'bad-chunk').every((p) => p.hash === victim)).toBe(true);
  });

  it('keyless: catches a truncated blob (size and hash)', async () => {
    const victim = runs[1]!.uploaded[0]!;
    truncateSync(file(victim), 1000);
    const report = await verifyStore(storage, { indexPrefix: INDEX });
    expect(kinds(report.problems)).toEqual(['corrupt-blob', 'corrupt-blob']);
    expect(report.problems.map((p) => (p.kind === 'corrupt-blob' ? p.message : '')).join('\n')).toMatch(/1000 bytes stored/);
  });

  it('keyless: catches a deleted blob and names the snapshots that need it', async () => {
    const shared = runs[0]!.blobs.find((b) => runs[1]!.blobs.some((c) => c.hash === b.hash))!.hash;
    await storage.delete([blobKey(shared)]);
    const report = await verifyStore(storage, { indexPrefix: INDEX });
    expect(report.problems).toEqual([{ kind: 'missing-blob', hash: shared, snapshots: [runs[0]!.id, runs[1]!.id].sort() }]);
  });

  it('deep: catches a manifest that lies (keyless cannot)', async () => {
    // The manifest omits a blob the metadata needs: keyless verify sees a consistent store.
    const id = runs[1]!.id;
    const lie = runs[1]!.blobs.slice(1);
    await storage.delete([(await listingOf(storage, INDEX, id)).manifests[0]!.key]);
    await putIndexObject(storage, 'manifest', INDEX, id, buildManifest(id, lie));
    const keyless = await verifyStore(storage, { indexPrefix: INDEX });
    expect(keyless.problems).toEqual([]);
    const full = await verifyStore(storage, { indexPrefix: INDEX, deep: deep() });
    expect(full.problems).toEqual([{ kind: 'manifest-mismatch', snapshot: id, message: expect.stringMatching(/in the metadata but not in the manifest/) as unknown }]);
  });

  it('reports unreferenced blobs, orphan manifests and foreign objects without failing', async () => {
    const src = new Source(storage, keys, { host: 'h', tmpDir });
    const inflight = await src.backup(new Date(T0 + 7200_000), sampleFiles(5, ['z'], 3000), { publish: false });
    const orphan = await putIndexObject(storage, 'manifest', INDEX, 'h-20200101T000000.000Z', buildManifest('h-20200101T000000.000Z', []));
    await storage.put('blobs/README', Buffer.from('hello'));
    const report = await verifyStore(storage, { indexPrefix: INDEX });
    expect(report.problems).toEqual([]);
    // Its data blobs and its shards, uploaded before its root: in key (hash) order.
    expect(inflight.shards.length).toBeGreaterThan(0);
    expect(report.unreferenced.count).toBe(inflight.uploaded.length);
    expect(report.unreferenced.first).toEqual([...inflight.uploaded].sort());
    expect(report.orphanManifests).toEqual([orphan]);
    expect(report.unknownKeys).toEqual({ count: 1, first: ['blobs/README'] });
  });

  it('reports a snapshot without a manifest and an unreadable manifest', async () => {
    await storage.delete([(await listingOf(storage, INDEX, runs[0]!.id)).manifests[0]!.key]);
    await storage.delete([(await listingOf(storage, INDEX, runs[1]!.id)).manifests[0]!.key]);
    await putIndexObject(storage, 'manifest', INDEX, runs[1]!.id, Buffer.from('{}'));
    const report = await verifyStore(storage, { indexPrefix: INDEX });
    expect(kinds(report.problems)).toEqual(['bad-manifest', 'no-manifest']);
  });

  it('keyless: a root or manifest replaced in place no longer matches its name (a store that allows overwrites)', async () => {
    // What an overwrite with a forged, well-formed object looks like: another snapshot's bytes.
    const victim = await listingOf(storage, INDEX, runs[0]!.id);
    const other = await listingOf(storage, INDEX, runs[1]!.id);
    const bytes = async (key: string): Promise<Buffer> => {
      const parts: Buffer[] = [];
      for await (const b of await storage.get(key)) parts.push(b as Buffer);
      return Buffer.concat(parts);
    };
    await storage.delete([victim.root.key, victim.manifests[0]!.key]);
    await storage.put(victim.root.key, await bytes(other.root.key));
    await storage.put(victim.manifests[0]!.key, buildManifest(victim.id, []));
    setStoreTime(storage, victim.root.key, victim.storeTime); // as an overwrite that keeps the time would look
    const report = await verifyStore(storage, { indexPrefix: INDEX });
    expect(report.problems).toEqual([
      { kind: 'bad-root', snapshot: victim.id, key: victim.root.key, message: `its bytes hash to ${other.root.sha256}: replaced or damaged` },
      { kind: 'bad-manifest', snapshot: victim.id, message: expect.stringMatching(/does not hash to its name/) as unknown },
    ]);
  });

  it('samples a subset of the blobs for content checks', async () => {
    const total = (await verifyStore(storage, { indexPrefix: INDEX })).blobs.count;
    let i = 0;
    const report = await verifyStore(storage, { indexPrefix: INDEX, sample: 0.5, random: () => (i++ % 2 === 0 ? 0.1 : 0.9) });
    expect(report.hashed.count).toBe(Math.ceil(total / 2));
    expect(report.blobs.count).toBe(total);
    await expect(verifyStore(storage, { indexPrefix: INDEX, sample: 0 })).rejects.toThrow(RangeError);
  });

  it('deep with the wrong key fails with NO_IDENTITY', async () => {
    const err = await verifyStore(storage, { indexPrefix: INDEX, deep: { identities: [newKeys().identity], tmpDir } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VaultikError);
    expect((err as VaultikError).exitCode).toBe(ExitCode.NO_IDENTITY);
  });
});
