import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { generateKeyPair, parseIdentity, parseRecipient } from '../../src/crypto/index.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import {
  SnapshotWriter,
  listSnapshots,
  manifestKey,
  metadataKey,
  openSnapshot,
  openSnapshotFile,
  packSnapshot,
  parseManifest,
  readManifest,
  publishSnapshot,
  type Entry,
} from '../../src/snapshot/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { runTool } from '../helpers/tools.js';
import { MemoryStorage, SAMPLE_ID, T0, entry, sha256, writeSample } from './helpers.js';

let tmp: { dir: string; cleanup: () => void };
beforeEach(() => {
  tmp = makeTempDir('vaultik-snappack-');
});
afterEach(() => tmp.cleanup());

const keys = generateKeyPair();
const recipients = [parseRecipient(keys.recipient)];
const identities = [parseIdentity(keys.identity)];

async function collect(body: { open(): NodeJS.ReadableStream }): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of body.open()) parts.push(b as Buffer);
  return Buffer.concat(parts);
}

describe('packing snapshot metadata (real age, zstd)', () => {
  it('publishes manifest then metadata, and reads it back equal from only the store and the key', async () => {
    const s = writeSample(tmp.dir);
    const storage = new MemoryStorage();
    const pub = await publishSnapshot(storage, { indexPrefix: 'index/', dbPath: s.finished.dbPath, recipients });
    expect(pub.id).toBe(SAMPLE_ID);
    // The manifest goes first: a snapshot (its metadata) never exists without it.
    expect(storage.calls).toEqual([`put ${manifestKey('index/', SAMPLE_ID)}`, `put ${metadataKey('index/', SAMPLE_ID)}`]);
    expect(parseManifest(storage.objects.get(pub.manifestKey)!.data, SAMPLE_ID).blobs).toEqual(s.finished.blobs);
    expect((await readManifest(storage, 'index/', SAMPLE_ID))?.blobs).toEqual(s.finished.blobs);
    expect(await readManifest(storage, 'index/', 'web-20000101T000000.000Z')).toBeUndefined();
    const listed = await listSnapshots(storage, 'index/');
    expect(listed.map((l) => [l.id, l.hasManifest, l.metadataSize])).toEqual([[SAMPLE_ID, true, pub.metadataSize]]);

    // No name from the snapshot appears in any stored object.
    for (const { data } of storage.objects.values()) {
      for (const e of s.entries) expect(data.includes(e.path)).toBe(false);
      expect(data.includes('copy-of-a')).toBe(false);
    }

    const restoreTmp = join(tmp.dir, 'restore-tmp');
    runTool('mkdir', ['-p', restoreTmp]);
    const r = await openSnapshot(storage, 'index/', SAMPLE_ID, identities, restoreTmp);
    const original = openSnapshotFile(s.finished.dbPath);
    try {
      expect([...r.entries()]).toEqual([...original.entries()]);
      expect(r.info()).toEqual(original.info());
      expect([...r.chunkPlacements()]).toEqual([...original.chunkPlacements()]);
      expect(readdirSync(restoreTmp)).toHaveLength(1);
    } finally {
      r.close();
      original.close();
    }
    // The decrypted plaintext metadata is gone once the reader is closed.
    expect(readdirSync(restoreTmp)).toEqual([]);
  });

  it('decrypts with the stock age, zstd and sqlite3 CLIs; sqlite3 lists every path', async () => {
    const s = writeSample(tmp.dir);
    const packed = await packSnapshot(s.finished.dbPath, recipients);
    const cipher = await collect(packed);
    expect(cipher.length).toBe(packed.size);
    await packed.dispose();
    const keyFile = join(tmp.dir, 'key.txt');
    writeFileSync(keyFile, `${keys.identity}\n`, { mode: 0o600 });
    const metaFile = join(tmp.dir, `${SAMPLE_ID}.db.zst.age`);
    writeFileSync(metaFile, cipher);
    const dbFile = join(tmp.dir, 'x.db');
    // age -d -i key X.db.zst.age | zstd -d > x.db
    const zst = runTool('age', ['-d', '-i', keyFile, metaFile]);
    writeFileSync(dbFile, runTool('zstd', ['-d', '-c'], zst));
    expect(readFileSync(dbFile).equals(readFileSync(s.finished.dbPath))).toBe(true);
    const hexPaths = runTool('sqlite3', [dbFile, 'SELECT hex(path) FROM entries ORDER BY path']).toString().trim().split('\n');
    expect(hexPaths).toEqual(s.entries.map((e) => e.path.toString('hex').toUpperCase()).sort((a, b) => Buffer.compare(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'))));
    // The recovery recipe of docs/FORMAT.md: chunk locations of one file, in order.
    const rows = runTool('sqlite3', [
      dbFile,
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
    const raw = runTool('sqlite3', [dbFile, "SELECT path FROM entries WHERE type = 'file' AND path >= CAST('home/u/data/caf' AS BLOB) LIMIT 1"]);
    expect(raw.subarray(0, -1).equals(Buffer.from('home/u/data/caf\xe9', 'latin1'))).toBe(true);
  });

  it('spools large metadata to a file and streams it (bounded memory)', async () => {
    const w = new SnapshotWriter(join(tmp.dir, 'big.db'));
    w.addEntry(entry('r', 'dir'));
    const blob = 'e'.repeat(64);
    for (let i = 0; i < 20_000; i++) {
      const id = sha256(`x${i}`);
      w.addEntry(entry(`r/${sha256(String(i)).toString('hex')}`, 'file', { size: 1 }), [id]);
      w.addChunk({ id, blob, offset: i * 20, length: 20, plainLength: 1 });
    }
    w.addBlob(blob, 20_000 * 20);
    const f = w.finish({ id: SAMPLE_ID, startTime: T0, endTime: T0, toolVersion: 't', sourceDirs: ['/r'], excludes: [], chunkSize: 1, blobSizeLimit: 1, compressionLevel: 3 });
    const packed = await packSnapshot(f.dbPath, recipients, { memoryLimit: 64 * 1024, spoolDir: tmp.dir });
    const spooled = readdirSync(tmp.dir).filter((n) => n.startsWith('.pack-'));
    expect(spooled).toHaveLength(1);
    expect(packed.size).toBeGreaterThan(64 * 1024);
    const storage = new MemoryStorage();
    await storage.put(metadataKey('', SAMPLE_ID), packed);
    // Re-openable: a retried put reads it again.
    expect((await collect(packed)).equals(storage.objects.get(metadataKey('', SAMPLE_ID))!.data)).toBe(true);
    await packed.dispose();
    expect(readdirSync(tmp.dir).filter((n) => n.startsWith('.pack-'))).toEqual([]);
    const r = await openSnapshot(storage, '', SAMPLE_ID, identities, tmp.dir);
    expect(r.info().fileCount).toBe(20_000);
    r.close();
  });

  it('wrong key → NO_IDENTITY; tampered → DATA; missing → DATA; nothing left in tmpDir', async () => {
    const s = writeSample(tmp.dir);
    const storage = new MemoryStorage();
    await publishSnapshot(storage, { indexPrefix: 'i/', dbPath: s.finished.dbPath, recipients });
    const work = join(tmp.dir, 'work');
    runTool('mkdir', ['-p', work]);
    const other = [parseIdentity(generateKeyPair().identity)];
    await expect(openSnapshot(storage, 'i/', SAMPLE_ID, other, work)).rejects.toMatchObject({
      exitCode: ExitCode.NO_IDENTITY,
      message: expect.stringMatching(/no identity matches this backup/) as unknown,
    });
    const key = metadataKey('i/', SAMPLE_ID);
    const obj = storage.objects.get(key)!;
    const flipped = Buffer.from(obj.data);
    flipped[flipped.length - 100]! ^= 1;
    storage.objects.set(key, { ...obj, data: flipped });
    await expect(openSnapshot(storage, 'i/', SAMPLE_ID, identities, work)).rejects.toMatchObject({ exitCode: ExitCode.DATA });
    storage.objects.set(key, { ...obj, data: obj.data.subarray(0, obj.data.length - 10) });
    await expect(openSnapshot(storage, 'i/', SAMPLE_ID, identities, work)).rejects.toMatchObject({ exitCode: ExitCode.DATA });
    await expect(openSnapshot(storage, 'i/', 'web-20000101T000000.000Z', identities, work)).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(/not found/) as unknown,
    });
    // Someone renamed another snapshot's metadata to this id.
    storage.objects.set(metadataKey('i/', 'web-eu-1-20300101T000000.000Z'), obj);
    await expect(openSnapshot(storage, 'i/', 'web-eu-1-20300101T000000.000Z', identities, work)).rejects.toMatchObject({
      exitCode: ExitCode.DATA,
      message: expect.stringMatching(/describes snapshot/) as unknown,
    });
    expect(readdirSync(work)).toEqual([]);
  });

  it('a hostile DB encrypted to the right key is refused after decryption, and deleted', async () => {
    const s = writeSample(tmp.dir);
    const evil = join(tmp.dir, 'evil.db');
    copyFileSync(s.finished.dbPath, evil);
    const db = new Database(evil);
    db.prepare("UPDATE entries SET path = CAST('../../../etc/cron.d/x' AS BLOB) WHERE path = CAST('home/u/data/fifo' AS BLOB)").run();
    db.close();
    const storage = new MemoryStorage();
    const packed = await packSnapshot(evil, recipients);
    await storage.put(metadataKey('', SAMPLE_ID), packed);
    const work = join(tmp.dir, 'work');
    runTool('mkdir', ['-p', work]);
    let err: unknown;
    try {
      await openSnapshot(storage, '', SAMPLE_ID, identities, work);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VaultikError);
    expect((err as VaultikError).exitCode).toBe(ExitCode.DATA);
    expect((err as Error).message).toMatch(/'\.\.' path component: '\.\.\/\.\.\/\.\.\/etc\/cron\.d\/x'/);
    expect(readdirSync(work)).toEqual([]);
    expect(existsSync(evil)).toBe(true);
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
    w.finish({ id: SAMPLE_ID, startTime: T0, endTime: T0, toolVersion: 't', sourceDirs: ['/d'], excludes: [], chunkSize: 1, blobSizeLimit: 1, compressionLevel: 3 });
    const storage = new MemoryStorage();
    await publishSnapshot(storage, { indexPrefix: '', dbPath: join(tmp.dir, 'names.db'), recipients });
    const r = await openSnapshot(storage, '', SAMPLE_ID, identities, tmp.dir);
    expect([...r.entries({ under: Buffer.from('d') })].slice(1).map((e) => e.path)).toEqual(names.map((e) => e.path).sort(Buffer.compare));
    r.close();
  });
});
