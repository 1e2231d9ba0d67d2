/**
 * Snapshot metadata v2 end to end (issue 14): a backup writes only the shards that changed and
 * reuses the others by reference; a no-change backup uploads a root and a manifest and nothing
 * else; forgetting the snapshot that wrote the shards and pruning loses nothing a later snapshot
 * uses; hard links across shards restore as links. Real runBackup, local store, real restore.
 */
import { appendFileSync, existsSync, linkSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runBackup, type BackupSummary } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { parseIdentity } from '../../src/crypto/index.js';
import { ExitCode } from '../../src/errors.js';
import { executeForget, executePrune, planForget, planPrune } from '../../src/prune/index.js';
import { runRestore } from '../../src/restore/index.js';
import { blobKey } from '../../src/blob/index.js';
import { listSnapshots, readRoot, type ShardLimits } from '../../src/snapshot/index.js';
import { findIndexKey, listingOf } from '../helpers/snapshots.js';
import { openStorage } from '../../src/storage/index.js';
import { verifyStore } from '../../src/verify/index.js';
import { goldenCopy } from '../hardening/kit.js';
import { makeTempDir } from '../helpers/tmp.js';
import { buildRichTree, compareTrees, pseudoRandom } from '../helpers/tree.js';
import { makeWorkspace, storeObjects, type Workspace } from './helpers.js';

let ws: Workspace | undefined;
/** Goldens, restores and decrypted metadata: outside the workspace, whose root is an ancestor of
 *  the source (an entry of every snapshot: writing there would change a shard). */
let scratch: { dir: string; cleanup: () => void };
beforeEach(() => {
  scratch = makeTempDir('vaultik-shards-');
});
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
  scratch.cleanup();
  previousStart = undefined;
});

/** About 8 entries a shard, cut by path hash (no maximum in the way). */
const LIMITS: ShardLimits = { boundaryBits: 3, minEntries: 1, maxEntries: 10_000, maxBytes: 2 ** 50 };

/** The source's ancestors (the temp dir among them) are entries of every snapshot too. */
function ancestorsStamp(w: Workspace): string {
  const parts = w.src.split('/').filter(Boolean);
  return parts.map((_, i) => String(statSync(`/${parts.slice(0, i + 1).join('/')}`, { bigint: true }).mtimeNs)).join(',');
}

/** The ancestors' stamp when the previous backup started. */
let previousStart: string | undefined;

/**
 * A backup, and whether an ancestor of the source changed since the previous backup started
 * (tests running beside this one create files in the temp dir).
 */
async function backup(config: Config, w?: Workspace, limits = LIMITS): Promise<BackupSummary & { ancestorsChanged: boolean }> {
  const before = w ? ancestorsStamp(w) : '';
  const storage = openStorage(config.storage);
  try {
    const summary = await runBackup(config, { storage, workers: 2, progressIntervalMs: 0, shardLimits: limits });
    const changed = w !== undefined && (previousStart === undefined || ancestorsStamp(w) !== previousStart);
    previousStart = before;
    return { ...summary, ancestorsChanged: changed };
  } finally {
    await storage.close();
  }
}

/** 20 directories of 10 files each, one hard link across directories, one symlink. */
function buildTree(src: string): void {
  for (let d = 0; d < 20; d++) {
    mkdirSync(join(src, `dir${String(d).padStart(2, '0')}`));
    for (let f = 0; f < 10; f++) writeFileSync(join(src, `dir${String(d).padStart(2, '0')}`, `file${f}.txt`), pseudoRandom(300 + d * 10 + f, d * 100 + f));
  }
  linkSync(join(src, 'dir00', 'file0.txt'), join(src, 'dir19', 'hard-link'));
  symlinkSync('../dir00/file1.txt', join(src, 'dir05', 'sym'));
}

const newKeys = (before: Map<string, number>, after: Map<string, number>): string[] => [...after.keys()].filter((k) => !before.has(k)).sort();

async function shardHashes(w: Workspace, id: string): Promise<string[]> {
  const storage = openStorage(w.config().storage);
  try {
    const root = await readRoot(storage, await listingOf(storage, 'index/', id), [parseIdentity(w.identity)], scratch.dir);
    return root.shards.map((s) => s.hash);
  } finally {
    await storage.close();
  }
}

async function restoreMatches(w: Workspace, id: string, golden: string): Promise<void> {
  const storage = openStorage(w.config().storage);
  const target = join(scratch.dir, `restore-${id}`);
  try {
    const summary = await runRestore({ storage, identities: [parseIdentity(w.identity)], snapshotId: id, target, tmpDir: scratch.dir });
    expect(summary.failed).toBe(0);
  } finally {
    await storage.close();
  }
  // Restore leaves sockets out (a socket is made by the program that listens on it).
  expect(compareTrees(golden, join(target, w.src), { ignore: (_rel, type) => type === 'socket' })).toEqual([]);
  rmSync(target, { recursive: true, force: true });
}

describe('shards reused by reference', () => {
  it('no change: a root and a manifest, nothing else; one file changed: one shard', async () => {
    ws = makeWorkspace();
    buildTree(ws.src);
    const config = ws.config();
    const first = await backup(config, ws);
    expect(first.shardsWritten).toBeGreaterThan(10);
    expect(first.shardsReused).toBe(0);
    const golden1 = join(scratch.dir, 'golden1');
    goldenCopy(ws.src, golden1);

    let before = storeObjects(ws.store);
    const second = await backup(config, ws);
    let added = newKeys(before, storeObjects(ws.store));
    const [h1, h2] = [await shardHashes(ws, first.snapshotId), await shardHashes(ws, second.snapshotId)];
    // The first shard holds the source's ancestors ('tmp', …): a test running beside this one may
    // have changed the temp dir's mtime meanwhile, and then that shard is rightly written again.
    const extra = second.ancestorsChanged && h2[0] !== h1[0] ? 1 : 0;
    const index = added.filter((k) => k.startsWith('index/'));
    const rootKey = findIndexKey(index, 'index/', second.snapshotId);
    expect(index).toEqual([rootKey, findIndexKey(index, 'index/', second.snapshotId, 'manifest')].sort());
    expect(added.filter((k) => k.startsWith('blobs/'))).toHaveLength(extra);
    expect(second.shardsWritten).toBe(extra);
    expect(second.shardsReused).toBe(first.shardsWritten - extra);
    expect(h2.slice(1)).toEqual(h1.slice(1));
    // Only the root (and that shard) was uploaded as metadata.
    if (extra === 0) expect(second.metadataBytes).toBe(storeObjects(ws.store).get(rootKey));

    // One file's content changes (its directory's entry does not): one shard and one data blob.
    appendFileSync(join(ws.src, 'dir07', 'file3.txt'), 'changed');
    before = storeObjects(ws.store);
    const third = await backup(config, ws);
    added = newKeys(before, storeObjects(ws.store));
    const extra3 = third.ancestorsChanged ? 1 : 0;
    expect(third.shardsWritten - extra3).toBeLessThanOrEqual(1);
    expect(third.shardsWritten).toBeGreaterThanOrEqual(1);
    expect(third.shardsReused).toBe(first.shardsWritten - third.shardsWritten);
    expect(added.filter((k) => k.startsWith('blobs/'))).toHaveLength(1 + third.shardsWritten); // the new data blob and the new shard(s)
    expect(added.filter((k) => k.startsWith('index/'))).toHaveLength(2);
    const h3 = await shardHashes(ws, third.snapshotId);
    expect(h3.length).toBe(h2.length);
    expect(h3.slice(1).filter((h, i) => h !== h2[i + 1])).toHaveLength(1);
    const golden3 = join(scratch.dir, 'golden3');
    goldenCopy(ws.src, golden3);

    // A new file: its shard and its directory's (the directory's mtime changed), at most two
    // more if a boundary path split one.
    writeFileSync(join(ws.src, 'dir12', 'new.txt'), 'new');
    const fourth = await backup(config);
    expect(fourth.shardsWritten).toBeGreaterThanOrEqual(1);
    expect(fourth.shardsWritten).toBeLessThanOrEqual(3);

    await restoreMatches(ws, first.snapshotId, golden1);
    await restoreMatches(ws, third.snapshotId, golden3);
    await restoreMatches(ws, fourth.snapshotId, ws.src);
  }, 60_000);

  it('forget the snapshot that wrote the shards, prune, and the next one still restores byte for byte', async () => {
    ws = makeWorkspace();
    buildTree(ws.src);
    const config = ws.config();
    const first = await backup(config);
    appendFileSync(join(ws.src, 'dir03', 'file9.txt'), 'x');
    const second = await backup(config, ws);
    expect(second.shardsReused).toBeGreaterThan(10);
    const storage = openStorage(config.storage);
    try {
      const identities = [parseIdentity(ws.identity)];
      const fplan = await planForget(storage, { indexPrefix: 'index/', ids: [first.snapshotId] });
      await executeForget(storage, fplan);
      const options = { indexPrefix: 'index/', identities, graceMs: 0, tmpDir: scratch.dir };
      const plan = await planPrune(storage, options);
      const result = await executePrune(storage, plan, options);
      // Something of the first snapshot went (its changed shard, its root), but no shard the second uses.
      expect(result.deletedBlobs).toBeGreaterThanOrEqual(1);
      const report = await verifyStore(storage, { indexPrefix: 'index/', deep: { identities, tmpDir: scratch.dir } });
      expect(report.problems).toEqual([]);
      expect(report.unreferenced.count).toBe(0);
    } finally {
      await storage.close();
    }
    await restoreMatches(ws, second.snapshotId, ws.src);
    // The cache still offers the second snapshot's shards: the next backup reuses all of them.
    const third = await backup(config, ws);
    expect(third.filesUnchanged).toBe(third.files - 1); // all but the hard link, which is not counted
    expect(third.shardsWritten).toBe(third.ancestorsChanged ? 1 : 0);
  }, 60_000);

  it('hard links whose names fall in different shards restore as one inode', async () => {
    ws = makeWorkspace();
    buildTree(ws.src);
    const config = ws.config();
    const s = await backup(config);
    const storage = openStorage(config.storage);
    const root = await readRoot(storage, await listingOf(storage, 'index/', s.snapshotId), [parseIdentity(ws.identity)], scratch.dir);
    await storage.close();
    const holder = (rel: string): number => {
      const p = Buffer.from(join(ws!.src, rel).slice(1));
      return root.shards.findIndex((sh) => Buffer.compare(sh.firstPath, p) <= 0 && Buffer.compare(p, sh.lastPath) <= 0);
    };
    expect(holder('dir00/file0.txt')).not.toBe(holder('dir19/hard-link'));
    const target = join(scratch.dir, 'restored');
    const st = openStorage(config.storage);
    try {
      await runRestore({ storage: st, identities: [parseIdentity(ws.identity)], snapshotId: s.snapshotId, target });
      // fetch of the link alone reads its shard only, which carries the group's content.
      await runRestore({
        storage: st,
        identities: [parseIdentity(ws.identity)],
        snapshotId: s.snapshotId,
        target: join(scratch.dir, 'one'),
        select: { paths: [Buffer.from(join(ws.src, 'dir19', 'hard-link').slice(1))] },
      });
    } finally {
      await st.close();
    }
    const a = statSync(join(target, ws.src, 'dir00', 'file0.txt'));
    const b = statSync(join(target, ws.src, 'dir19', 'hard-link'));
    expect(a.ino).toBe(b.ino);
    expect(compareTrees(ws.src, join(target, ws.src))).toEqual([]);
    expect(readFileSync(join(scratch.dir, 'one', ws.src, 'dir19', 'hard-link')).equals(readFileSync(join(ws.src, 'dir00', 'file0.txt')))).toBe(true);
  }, 60_000);

  it('every entry type and odd names, one to three entries a shard: restores identical, twice', async () => {
    ws = makeWorkspace();
    await buildRichTree(ws.src);
    const config = ws.config();
    const tiny: ShardLimits = { boundaryBits: 1, minEntries: 1, maxEntries: 3, maxBytes: 2 ** 50 };
    const first = await backup(config, undefined, tiny);
    expect(first.shardsWritten).toBeGreaterThan(first.entries / 3);
    const second = await backup(config, undefined, tiny);
    expect(second.shardsReused).toBeGreaterThan(first.shardsWritten - 3);
    await restoreMatches(ws, first.snapshotId, ws.src);
    await restoreMatches(ws, second.snapshotId, ws.src);
  }, 60_000);

  it('prune and verify --deep read each distinct shard once, however many snapshots share it', async () => {
    ws = makeWorkspace();
    buildTree(ws.src);
    const config = ws.config();
    await backup(config);
    await backup(config);
    appendFileSync(join(ws.src, 'dir10', 'file2.txt'), 'y');
    await backup(config);
    const storage = openStorage(config.storage);
    const gets = new Map<string, number>();
    const counting = new Proxy(storage, {
      get(target, prop, receiver) {
        if (prop === 'get') {
          return (key: string, ...rest: unknown[]) => {
            gets.set(key, (gets.get(key) ?? 0) + 1);
            return (target.get as (...a: unknown[]) => unknown).call(target, key, ...rest);
          };
        }
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    try {
      const identities = [parseIdentity(ws.identity)];
      const ids = (await listSnapshots(storage, 'index/')).map((l) => l.id);
      expect(ids).toHaveLength(3);
      const shardKeys = new Set<string>();
      let listed = 0;
      for (const id of ids) {
        for (const h of await shardHashes(ws, id)) shardKeys.add(blobKey(h));
        listed += (await shardHashes(ws, id)).length;
      }
      // Three snapshots list the same shards nearly all over again.
      expect(shardKeys.size).toBeLessThan(listed / 2);
      const shardGets = (): number[] => [...gets].filter(([k]) => shardKeys.has(k)).map(([, n]) => n);

      await planPrune(counting, { indexPrefix: 'index/', identities, graceMs: 0, tmpDir: scratch.dir });
      expect(shardGets().length).toBe(shardKeys.size);
      expect(Math.max(...shardGets())).toBe(1);

      gets.clear();
      const report = await verifyStore(counting, { indexPrefix: 'index/', deep: { identities, tmpDir: scratch.dir } });
      expect(report.problems).toEqual([]);
      // Deep: each shard decrypted once; keyless: each blob (shards included) hashed once.
      expect(Math.max(...shardGets())).toBe(2);
      expect(shardGets().length).toBe(shardKeys.size);
    } finally {
      await storage.close();
    }
  }, 60_000);

  it('a missing or damaged shard fails the entries of its range; everything else is restored', async () => {
    ws = makeWorkspace();
    buildTree(ws.src);
    const config = ws.config();
    const s = await backup(config);
    const identities = [parseIdentity(ws.identity)];
    const storage = openStorage(config.storage);
    try {
      const root = await readRoot(storage, await listingOf(storage, 'index/', s.snapshotId), identities, scratch.dir);
      // A shard in the middle that holds files only (its directory's entry is elsewhere).
      const victim = root.shards[Math.floor(root.shards.length / 2)]!;
      const inVictim = (rel: string): boolean => {
        const p = Buffer.from(join(ws!.src, rel).slice(1));
        return Buffer.compare(victim.firstPath, p) <= 0 && Buffer.compare(p, victim.lastPath) <= 0;
      };
      for (const damage of ['delete', 'corrupt'] as const) {
        const key = blobKey(victim.hash);
        const path = join(ws.store, key);
        const original = readFileSync(path);
        if (damage === 'delete') rmSync(path);
        else writeFileSync(path, Buffer.concat([original.subarray(0, 200), Buffer.from([original[200]! ^ 1]), original.subarray(201)]));
        const target = join(scratch.dir, `partial-${damage}`);
        const summary = await runRestore({ storage, identities, snapshotId: s.snapshotId, target, tmpDir: scratch.dir });
        expect(summary.failed).toBe(victim.entryCount);
        expect(summary.failures[0]!.message).toMatch(new RegExp(`${victim.entryCount} entries from .* not restored: shard ${victim.hash}`));
        // Everything outside the lost range is restored exactly.
        const restored = join(target, ws.src);
        expect(compareTrees(ws.src, restored, { ignore: (rel) => inVictim(rel.toString()) || !existsSync(join(restored, rel.toString())) })).toEqual([]);
        let outside = 0;
        for (let d = 0; d < 20; d++) {
          for (let f = 0; f < 10; f++) {
            const rel = `dir${String(d).padStart(2, '0')}/file${f}.txt`;
            if (inVictim(rel)) expect(existsSync(join(restored, rel)), rel).toBe(false);
            else {
              outside++;
              expect(readFileSync(join(restored, rel)).equals(readFileSync(join(ws.src, rel))), rel).toBe(true);
            }
          }
        }
        expect(outside).toBeGreaterThan(150);
        // A fetch of a path in the lost range: a data error naming the shard, not "not in snapshot".
        const lostFile = Buffer.from(victim.lastPath);
        await expect(
          runRestore({ storage, identities, snapshotId: s.snapshotId, target: join(scratch.dir, `one-${damage}`), tmpDir: scratch.dir, select: { paths: [lostFile] } }),
        ).rejects.toMatchObject({ exitCode: ExitCode.DATA, message: expect.stringMatching(/cannot be read: shard/) as unknown });
        writeFileSync(path, original);
      }
    } finally {
      await storage.close();
    }
  }, 60_000);
});
