/**
 * Snapshot metadata v2 in a store: shards as blobs, then the manifest, then the root; read back
 * from only the store and the key (all shards, or only those covering one path); the stock age,
 * zstd and sqlite3 CLIs; wrong keys, tampering, missing objects and hostile shards.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { blobKey } from '../../src/blob/key.js';
import { generateKeyPair, parseIdentity, parseRecipient } from '../../src/crypto/index.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import {
  ShardWriter,
  SnapshotWriter,
  listSnapshots,
  manifestKey,
  metadataKey,
  openShard,
  openShardFile,
  openSnapshot,
  packMetadata,
  parseManifest,
  putShard,
  readManifest,
  readRoot,
  type Entry,
  type MetadataReader,
  type ShardLimits,
} from '../../src/snapshot/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { runTool } from '../helpers/tools.js';
import { MemoryStorage, SAMPLE_ID, T0, entry, sha256, stageSample, writeSample } from './helpers.js';

let tmp: { dir: string; cleanup: () => void };
beforeEach(() => {
  tmp = makeTempDir('vaultik-snappack-');
});
afterEach(() => tmp.cleanup());

const keys = generateKeyPair();
const recipients = [parseRecipient(keys.recipient)];
const identities = [parseIdentity(keys.identity)];
/** Shards of at most 4 entries: the 17-entry sample becomes several. */
const SMALL: ShardLimits = { boundaryBits: 30, minEntries: 1, maxEntries: 4, maxBytes: 1 << 30 };
const summaryOf = (id: string): Parameters<SnapshotWriter['publish']>[1] => ({
  id,
  startTime: T0,
  endTime: T0,
  toolVersion: 't',
  sourceDirs: ['/d'],
  excludes: [],
  chunkSize: 1,
  blobSizeLimit: 1,
  compressionLevel: 3,
});

async function collect(body: { open(): NodeJS.ReadableStream }): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of body.open()) parts.push(b as Buffer);
  return Buffer.concat(parts);
}

describe('snapshot metadata v2 in a store (real age, zstd)', () => {
  it('puts the shards, then the manifest, then the root; reads it back equal from only the store and the key', async () => {
    const staged = stageSample(tmp.dir);
    const storage = new MemoryStorage();
    const built = await staged.writer.publish(storage, staged.summary, { indexPrefix: 'index/', recipients, limits: SMALL });
    expect(built.shards.length).toBe(5); // 17 entries, 4 per shard
    const calls = [...storage.calls];
    const [listing] = await listSnapshots(storage, 'index/');
    const rootKey = listing!.root.key;
    const manifest = listing!.manifests[0]!;
    // Shards first, then the manifest, then the root: a snapshot never exists without them.
    // Root and manifest are named by the SHA-256 of their stored bytes, as blobs are.
    expect(calls).toEqual([...built.shards.map((sh) => `put ${blobKey(sh.hash)}`), `put ${manifest.key}`, `put ${rootKey}`]);
    expect(rootKey).toBe(metadataKey('index/', SAMPLE_ID, sha256(storage.objects.get(rootKey)!.data).toString('hex')));
    expect(manifest.key).toBe(manifestKey('index/', SAMPLE_ID, sha256(storage.objects.get(manifest.key)!.data).toString('hex')));
    // The manifest lists the data blobs and the shards.
    const listedBlobs = [...staged.blobs, ...built.shards.map((sh) => ({ hash: sh.hash, size: sh.size }))].sort((a, b) => (a.hash < b.hash ? -1 : 1));
    expect(parseManifest(storage.objects.get(manifest.key)!.data, SAMPLE_ID).blobs).toEqual(listedBlobs);
    expect((await readManifest(storage, manifest, SAMPLE_ID))?.blobs).toEqual(listedBlobs);
    const listed = await listSnapshots(storage, 'index/');
    expect(listed.map((l) => [l.id, l.hasManifest])).toEqual([[SAMPLE_ID, true]]);
    // Each shard is named by the SHA-256 of its stored bytes, like every blob.
    for (const sh of built.shards) expect(sha256(storage.objects.get(blobKey(sh.hash))!.data).toString('hex')).toBe(sh.hash);

    // No name from the snapshot appears in any stored object.
    for (const { data } of storage.objects.values()) {
      for (const e of staged.entries) expect(data.includes(e.path)).toBe(false);
      expect(data.includes('copy-of-a')).toBe(false);
    }

    const restoreTmp = join(tmp.dir, 'restore-tmp');
    runTool('mkdir', ['-p', restoreTmp]);
    const r = await openSnapshot(storage, listing!, identities, restoreTmp);
    const one = writeSample(join(tmp.dir));
    const original = openShardFile(one.finished.dbPath);
    try {
      expect(r.complete).toBe(true);
      expect([...r.entries()]).toEqual([...original.entries()]);
      expect(r.info()).toMatchObject({ id: SAMPLE_ID, formatVersion: 2, fileCount: 8, dirCount: 4, symlinkCount: 1, otherCount: 4, shardCount: 5 });
      expect(r.info().totalSize).toBe(one.finished.totalSize);
      // Hard links split over shards: only the group's first path carries the chunks.
      expect(r.fileChunks(Buffer.from('home/u/data/h2'))).toEqual([]);
      // The samples' blob names are random: compare what does not depend on them.
      const uses = (rd: MetadataReader): string[] =>
        [...rd.chunkPlacements()].map((p) => `${p.path.toString('hex')} ${p.seq} ${p.fileOffset} ${p.chunk.id.toString('hex')} ${p.chunk.plainLength}`).sort();
      expect(uses(r)).toEqual(uses(original));
      expect(uses(r)).toHaveLength(8);
      expect(readdirSync(restoreTmp)).toHaveLength(1);
    } finally {
      r.close();
      original.close();
    }
    // The decrypted plaintext metadata is gone once the reader is closed.
    expect(readdirSync(restoreTmp)).toEqual([]);

    // One path reads the root and only the shards that cover it.
    storage.calls.length = 0;
    const sub = await openSnapshot(storage, listing!, identities, restoreTmp, { under: Buffer.from('home/u/data/sub') });
    try {
      expect(sub.complete).toBe(false);
      expect([...sub.entries({ under: Buffer.from('home/u/data/sub') })].map((e) => e.path.toString())).toEqual(['home/u/data/sub', 'home/u/data/sub/x']);
      const shardGets = storage.calls.filter((c) => c.startsWith('get blobs/'));
      expect(shardGets.length).toBeGreaterThanOrEqual(1);
      expect(shardGets.length).toBeLessThan(built.shards.length);
    } finally {
      sub.close();
    }
  });

  it('decrypts with the stock age, zstd and sqlite3 CLIs: the root lists the shards, the shards every path', async () => {
    const staged = stageSample(tmp.dir);
    const storage = new MemoryStorage();
    const built = await staged.writer.publish(storage, staged.summary, { indexPrefix: 'index/', recipients, limits: SMALL });
    const keyFile = join(tmp.dir, 'key.txt');
    writeFileSync(keyFile, `${keys.identity}\n`, { mode: 0o600 });
    const decrypt = (data: Buffer, name: string): string => {
      const file = join(tmp.dir, `${name}.age`);
      writeFileSync(file, data);
      const db = join(tmp.dir, `${name}.db`);
      // age -d -i key X | zstd -d > x.db
      writeFileSync(db, runTool('zstd', ['-d', '-c'], runTool('age', ['-d', '-i', keyFile, file])));
      return db;
    };
    const root = decrypt(storage.objects.get((await listSnapshots(storage, 'index/'))[0]!.root.key)!.data, 'root');
    const shardHashes = runTool('sqlite3', [root, 'SELECT lower(hex(blob)) FROM shards ORDER BY first_path']).toString().trim().split('\n');
    expect(shardHashes).toEqual(built.shards.map((sh) => sh.hash));
    const paths: string[] = [];
    for (const h of shardHashes) {
      const db = decrypt(storage.objects.get(blobKey(h))!.data, h);
      paths.push(...runTool('sqlite3', [db, 'SELECT hex(path) FROM entries ORDER BY path']).toString().trim().split('\n'));
    }
    expect(paths).toEqual(staged.entries.map((e) => e.path.toString('hex').toUpperCase()).sort((a, b) => Buffer.compare(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'))));
    // The shard holding a path: the greatest first_path not after it.
    const holder = runTool('sqlite3', [root, "SELECT lower(hex(blob)) FROM shards WHERE first_path <= CAST('home/u/data/big.bin' AS BLOB) ORDER BY first_path DESC LIMIT 1"]).toString().trim();
    const db = decrypt(storage.objects.get(blobKey(holder))!.data, 'holder');
    const rows = runTool('sqlite3', [
      db,
      `SELECT lower(hex(c.blob)), c.offset, c.length, c.plain_length, f.file_offset
       FROM file_chunks f JOIN chunks c ON c.id = f.chunk WHERE f.path = CAST('home/u/data/big.bin' AS BLOB) ORDER BY f.seq`,
    ])
      .toString()
      .trim()
      .split('\n');
    expect(rows.map((r) => r.split('|').slice(3).map(Number))).toEqual([
      [4000, 0],
      [3000, 4000],
      [1234, 7000],
    ]);
  });

  it('spools large metadata to a file and streams it (bounded memory)', async () => {
    const w = new ShardWriter(join(tmp.dir, 'big.db'));
    w.addEntry(entry('r', 'dir'));
    const blob = 'e'.repeat(64);
    for (let i = 0; i < 20_000; i++) {
      const id = sha256(`x${i}`);
      w.addEntry(entry(`r/${sha256(String(i)).toString('hex')}`, 'file', { size: 1 }), [id]);
      w.addChunk({ id, blob, offset: i * 20, length: 20, plainLength: 1 });
    }
    w.addBlob(blob, 20_000 * 20);
    const f = w.finish();
    const packed = await packMetadata(f.dbPath, recipients, { memoryLimit: 64 * 1024, spoolDir: tmp.dir });
    const spooled = readdirSync(tmp.dir).filter((n) => n.startsWith('.pack-'));
    expect(spooled).toHaveLength(1);
    expect(packed.size).toBeGreaterThan(64 * 1024);
    expect((await collect(packed)).length).toBe(packed.size); // re-openable: a retried put reads it again
    await packed.dispose();
    expect(readdirSync(tmp.dir).filter((n) => n.startsWith('.pack-'))).toEqual([]);
    const storage = new MemoryStorage();
    const ref = await putShard(storage, f, recipients, { memoryLimit: 64 * 1024, spoolDir: tmp.dir });
    const r = await openShard(storage, ref, identities, tmp.dir);
    expect(r.facts.fileCount).toBe(20_000);
    r.close();
  });

  it('wrong key → NO_IDENTITY; tampered, missing or renamed → DATA; nothing left in tmpDir', async () => {
    const staged = stageSample(tmp.dir);
    const storage = new MemoryStorage();
    const built = await staged.writer.publish(storage, staged.summary, { indexPrefix: 'i/', recipients, limits: SMALL });
    const work = join(tmp.dir, 'work');
    runTool('mkdir', ['-p', work]);
    const other = [parseIdentity(generateKeyPair().identity)];
    const [listing] = await listSnapshots(storage, 'i/');
    await expect(openSnapshot(storage, listing!, other, work)).rejects.toMatchObject({
      exitCode: ExitCode.NO_IDENTITY,
      message: expect.stringMatching(/no identity matches this backup/) as unknown,
    });
    const key = listing!.root.key;
    const obj = storage.objects.get(key)!;
    const flipped = Buffer.from(obj.data);
    flipped[flipped.length - 100]! ^= 1;
    storage.objects.set(key, { ...obj, data: flipped });
    await expect(openSnapshot(storage, listing!, identities, work)).rejects.toMatchObject({ exitCode: ExitCode.DATA });
    storage.objects.set(key, { ...obj, data: obj.data.subarray(0, obj.data.length - 10) });
    await expect(openSnapshot(storage, listing!, identities, work)).rejects.toMatchObject({ exitCode: ExitCode.DATA });
    // Another root that decrypts fine (the same snapshot written again) in place of this one:
    // refused by its name, however well it decrypts.
    runTool('mkdir', ['-p', join(tmp.dir, 'again')]);
    const again = stageSample(join(tmp.dir, 'again'));
    const otherStore = new MemoryStorage();
    await again.writer.publish(otherStore, again.summary, { indexPrefix: 'i/', recipients, limits: SMALL });
    const [otherListing] = await listSnapshots(otherStore, 'i/');
    storage.objects.set(key, otherStore.objects.get(otherListing!.root.key)!);
    // Its size may differ from the listed one (other temp paths compress to other sizes): a
    // larger one is refused as soon as it passes the listed size, any other by its hash.
    await expect(openSnapshot(storage, listing!, identities, work)).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(/is damaged or replaced(: it holds more than the \d+ bytes listed for it| \(the stored object hashes to [0-9a-f]{64}, not its name\))/) as unknown,
    });
    storage.objects.set(key, obj);
    storage.objects.delete(key);
    await expect(openSnapshot(storage, listing!, identities, work)).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(/not found/) as unknown,
    });
    storage.objects.set(key, obj);
    // Someone renamed another snapshot's root to this id.
    const renamed = { id: 'web-eu-1-20300101T000000.000Z', root: { key: metadataKey('i/', 'web-eu-1-20300101T000000.000Z', listing!.root.sha256), sha256: listing!.root.sha256, size: listing!.root.size }, otherRoots: [] };
    storage.objects.set(renamed.root.key, obj);
    await expect(openSnapshot(storage, renamed, identities, work)).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(/describes snapshot/) as unknown,
    });
    // Two roots under one id: refused, naming both.
    await expect(openSnapshot(storage, { ...listing!, otherRoots: [renamed.root] }, identities, work)).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(/has 2 root objects/) as unknown,
    });
    // A shard corrupted, then missing.
    const shardKey = blobKey(built.shards[2]!.hash);
    const shard = storage.objects.get(shardKey)!;
    const bad = Buffer.from(shard.data);
    bad[bad.length - 20]! ^= 1;
    storage.objects.set(shardKey, { ...shard, data: bad });
    await expect(openSnapshot(storage, listing!, identities, work)).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(/shard [0-9a-f]{64}: metadata failed authentication/) as unknown,
    });
    storage.objects.delete(shardKey);
    await expect(openSnapshot(storage, listing!, identities, work)).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(/shard [0-9a-f]{64}: metadata object blobs\/.* not found/) as unknown,
    });
    // Another shard (decrypting fine) under this shard's name: refused by its hash.
    storage.objects.set(shardKey, storage.objects.get(blobKey(built.shards[3]!.hash))!);
    await expect(openSnapshot(storage, listing!, identities, work)).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(/the stored object hashes to [0-9a-f]{64}, not its name/) as unknown,
    });
    expect(readdirSync(work)).toEqual([]);
  });

  it('a hostile shard encrypted to the right key is refused after decryption, and deleted', async () => {
    const staged = stageSample(tmp.dir);
    const storage = new MemoryStorage();
    await staged.writer.publish(storage, staged.summary, {
      indexPrefix: '',
      recipients,
      tamperShard: (path) => {
        const db = new Database(path);
        db.prepare("UPDATE entries SET path = CAST('../../../etc/cron.d/x' AS BLOB) WHERE path = CAST('home/u/data/fifo' AS BLOB)").run();
        db.close();
      },
    });
    const work = join(tmp.dir, 'work');
    runTool('mkdir', ['-p', work]);
    const err = await openSnapshot(storage, (await listSnapshots(storage, ''))[0]!, identities, work).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VaultikError);
    expect((err as VaultikError).exitCode).toBe(ExitCode.DATA);
    expect((err as Error).message).toMatch(/'\.\.' path component: '\.\.\/\.\.\/\.\.\/etc\/cron\.d\/x'/);
    expect(readdirSync(work)).toEqual([]);
  });

  it('checks across shards: an entry in one shard under a symlink of another is refused', async () => {
    const w = new SnapshotWriter(join(tmp.dir, 'x.db'));
    w.addEntry(entry('d', 'dir'));
    w.addEntry(entry('d/a-link', 'symlink', { target: Buffer.from('/etc') }));
    w.addEntry(entry('d/b', 'fifo'));
    const storage = new MemoryStorage();
    // One entry per shard; the shard of 'd/b' gets 'd/a-link/evil', which sorts after 'd/a-link'.
    const built = await w.publish(storage, summaryOf(SAMPLE_ID), {
      indexPrefix: '',
      recipients,
      limits: { boundaryBits: 30, minEntries: 1, maxEntries: 1, maxBytes: 1 << 30 },
      tamperShard: (path) => {
        const db = new Database(path);
        if (db.prepare("SELECT 1 FROM entries WHERE path = CAST('d/b' AS BLOB)").get()) {
          db.prepare("INSERT INTO entries VALUES (CAST('d/a-link/evil' AS BLOB), 'dir', 493, 0, 0, 0, 0, NULL, NULL, NULL)").run();
        }
        db.close();
      },
    });
    expect(built.shards).toHaveLength(3);
    const root = await readRoot(storage, (await listSnapshots(storage, ''))[0]!, identities, tmp.dir);
    expect(root.shards[2]!.firstPath.toString()).toBe('d/a-link/evil');
    const err = await openSnapshot(storage, (await listSnapshots(storage, ''))[0]!, identities, tmp.dir).catch((e: unknown) => e);
    expect((err as VaultikError).exitCode).toBe(ExitCode.DATA);
    expect((err as Error).message).toMatch(/'d\/a-link\/evil' lies under symlink 'd\/a-link'/);
  });

  it('keeps byte-exact names: every byte value except "/" and NUL', async () => {
    const w = new SnapshotWriter(join(tmp.dir, 'names.db'));
    w.addEntry(entry('d', 'dir'));
    const names: Entry[] = [];
    for (let b = 1; b < 256; b++) {
      if (b === 0x2f) continue;
      const name = b === 0x2e ? Buffer.from('...') : Buffer.from([b, 0x80, 0xff]);
      names.push(entry(Buffer.concat([Buffer.from('d/'), name]), 'fifo'));
    }
    for (const e of names) w.addEntry(e);
    const storage = new MemoryStorage();
    await w.publish(storage, summaryOf(SAMPLE_ID), { indexPrefix: '', recipients, limits: { ...SMALL, maxEntries: 50 } });
    const r = await openSnapshot(storage, (await listSnapshots(storage, ''))[0]!, identities, tmp.dir);
    expect([...r.entries({ under: Buffer.from('d') })].slice(1).map((e) => e.path)).toEqual(names.map((e) => e.path).sort(Buffer.compare));
    r.close();
  });
});
