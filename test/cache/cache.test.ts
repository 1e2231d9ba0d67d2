import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, lstatSync, mkdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';
import { makeTempDir } from '../helpers/tmp.js';
import { fileStatOf, sameStat, type FileStat } from '../../src/fs/index.js';
import { StateCache, storeIdentity, storeLocation } from '../../src/cache/index.js';
import type { StorageSpec } from '../../src/storage/types.js';
import type { ChunkLocation } from '../../src/snapshot/types.js';

let tmp: { dir: string; cleanup: () => void };
let path: string;
beforeEach(() => {
  tmp = makeTempDir('vaultik-cache-');
  path = join(tmp.dir, 'state', 'index.sqlite');
});
afterEach(() => tmp.cleanup());

const S3 = { type: 's3', bucket: 'bucket', prefix: 'prefix/', endpoint: 'https://s3.example.com' } as const;
const ID = storeIdentity({ spec: S3, indexPrefix: 'index/', recipients: ['age1b', 'age1a'] });
const sha = (s: string): Buffer => createHash('sha256').update(s).digest();
const blobHash = (s: string): string => sha(`blob:${s}`).toString('hex');
const loc = (chunk: string, blob: string, offset = 0): ChunkLocation => ({ id: sha(chunk), blob: blobHash(blob), offset, length: 50, plainLength: 100 });
/** What the cache records of a file's stat (the walk's FileStat less the link count). */
type Stat = Omit<FileStat, 'nlink'>;
const stat = (over: Partial<Stat> = {}): Stat => ({
  size: 100,
  mtimeNs: 1_700_000_000_000_000_001n,
  ctimeNs: 1_700_000_000_000_000_002n,
  ino: 12345n,
  dev: 2049n,
  mode: 0o100644,
  ...over,
});
const P = (s: string): Buffer => Buffer.from(s);

describe('StateCache', () => {
  it('creates its directory, uses WAL, and records files byte-exactly', () => {
    const c = StateCache.open(path, ID);
    expect(c.resetReason).toBeUndefined();
    expect(statSync(join(tmp.dir, 'state')).mode & 0o777).toBe(0o700);
    c.beginRun('r1');
    const name = Buffer.from([0x61, 0xff, 0x2f, 0x80]);
    const big: Stat = stat({ ino: 0xffff_ffff_ffff_fff0n, dev: 1n << 63n, mtimeNs: -5n });
    c.recordFile(name, big, [sha('a'), sha('b')]);
    expect(c.lookupFile(name)).toEqual({ ...big, chunks: [sha('a'), sha('b')], run: 'r1' });
    expect(c.lookupFile(P('a\xff/\x80'))).toBeUndefined();
    c.close();
    const db = new Database(path, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    const again = StateCache.open(path, ID);
    expect(again.lookupFile(name)?.ino).toBe(0xffff_ffff_ffff_fff0n);
    again.close();
  });

  it('gives back a recorded stat that sameStat, the backup change test, finds unchanged, and changed in each field', () => {
    const c = StateCache.open(path, ID);
    c.beginRun('r1');
    // A real file's stat, as the walk takes it.
    const file = join(tmp.dir, 'real');
    writeFileSync(file, 'hello');
    const real = fileStatOf(lstatSync(file, { bigint: true }));
    c.recordFile(P('real'), real, [sha('x')]);
    expect(sameStat(c.lookupFile(P('real'))!, real)).toBe(true);
    c.recordFile(P('f'), stat(), [sha('x')]);
    const cached = c.lookupFile(P('f'))!;
    expect(sameStat(cached, stat())).toBe(true);
    const changes: Partial<Stat>[] = [{ size: 101 }, { mtimeNs: 1_700_000_000_000_000_000n }, { ctimeNs: 1n }, { ino: 12346n }, { dev: 2050n }, { mode: 0o100600 }, { mode: 0o010644 }];
    for (const ch of changes) expect(sameStat(cached, stat(ch)), JSON.stringify(ch, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v))).toBe(false);
    expect(c.lookupFile(P('g'))).toBeUndefined();
    c.close();
  });

  it('dedups only against the latest completed snapshot and the current run', () => {
    const c = StateCache.open(path, ID);
    c.beginRun('r1');
    expect(() => c.beginRun('r1b')).toThrow(/still in progress/);
    // Before the upload is recorded, nothing is found: a failed upload records nothing.
    expect(c.findChunk(sha('c1'))).toBeUndefined();
    c.recordBlob(blobHash('A'), 1000, [loc('c1', 'A'), loc('shared', 'A', 50)]);
    // Uploaded earlier in this run: found.
    expect(c.findChunk(sha('c1'))).toEqual(loc('c1', 'A'));
    c.recordFile(P('f1'), stat(), [sha('c1'), sha('shared')]);
    c.completeSnapshot('h-20260101T000000.000Z', [blobHash('A')]);
    expect(c.baseSnapshot()).toBe('h-20260101T000000.000Z');
    expect(() => c.findChunk(sha('c1'))).toThrow(/no run in progress/);

    c.beginRun('r2');
    // In the base snapshot: found.
    expect(c.findChunk(sha('c1'))?.blob).toBe(blobHash('A'));
    // An unchanged file's chunks all resolve: the backup reuses its row without reading it.
    expect(c.lookupFile(P('f1'))!.chunks.map((id) => c.findChunk(id))).toEqual([loc('c1', 'A'), loc('shared', 'A', 50)]);
    c.recordBlob(blobHash('B'), 1000, [loc('c2', 'B'), loc('shared', 'B', 70)]);
    c.recordFile(P('f2'), stat(), [sha('c2'), sha('shared')]);
    // The snapshot of run 2 references only B (f1 was deleted from the source).
    c.completeSnapshot('h-20260102T000000.000Z', [blobHash('B')]);

    c.beginRun('r3');
    // A is referenced only by an older snapshot that prune may have emptied: not found.
    expect(c.findChunk(sha('c1'))).toBeUndefined();
    expect(c.findChunk(sha('shared'))).toEqual(loc('shared', 'B', 70));
    expect(c.findChunk(sha('c2'))).toEqual(loc('c2', 'B'));
    // f1 was not recorded in run 2, so it is forgotten.
    expect(c.lookupFile(P('f1'))).toBeUndefined();
    expect(c.lookupFile(P('f2'))!.chunks.map((id) => c.findChunk(id))).toEqual([loc('c2', 'B'), loc('shared', 'B', 70)]);
    c.close();
  });

  it('a blob uploaded in an interrupted run is reused by the next run only within the resume window', () => {
    let now = 1_000_000_000_000;
    const open = (window?: number): StateCache => StateCache.open(path, ID, { now: () => now, ...(window === undefined ? {} : { resumeWindowMs: window }) });
    let c = open();
    c.beginRun('r1');
    c.recordBlob(blobHash('A'), 1000, [loc('c1', 'A')]);
    c.completeSnapshot('h-20260101T000000.000Z', [blobHash('A')]);
    c.beginRun('r2');
    c.recordBlob(blobHash('B'), 1000, [loc('c2', 'B')]);
    c.recordFile(P('f'), stat(), [sha('c2')]);
    c.abortRun(); // SIGINT
    c.close();

    now += 60_000;
    c = open();
    expect(c.beginRun('r3')).toEqual({ adoptedBlobs: 1 });
    expect(c.findChunk(sha('c2'))).toEqual(loc('c2', 'B'));
    expect(c.lookupFile(P('f'))!.chunks.map((id) => c.findChunk(id))).toEqual([loc('c2', 'B')]);
    c.abortRun();
    c.close();

    // Too old to adopt: prune's grace period may have run out for it.
    now += 7 * 3600 * 1000;
    c = open();
    expect(c.beginRun('r4')).toEqual({ adoptedBlobs: 0 });
    expect(c.findChunk(sha('c2'))).toBeUndefined();
    expect(c.findChunk(sha('c1'))).toEqual(loc('c1', 'A'));
    expect(c.lookupFile(P('f'))!.chunks.map((id) => c.findChunk(id))).toEqual([undefined]); // so the file is read again
    c.close();
  });

  it('resumeWindowMs = 0 never adopts', () => {
    const c = StateCache.open(path, ID, { resumeWindowMs: 0 });
    c.beginRun('r1');
    c.recordBlob(blobHash('A'), 1000, [loc('c1', 'A')]);
    c.abortRun();
    expect(c.beginRun('r2')).toEqual({ adoptedBlobs: 0 });
    expect(c.findChunk(sha('c1'))).toBeUndefined();
    c.close();
  });

  it('recordBlob validates its input and records nothing on error', () => {
    const c = StateCache.open(path, ID);
    expect(() => c.recordBlob(blobHash('A'), 10, [])).toThrow(/no run in progress/);
    c.beginRun('r1');
    expect(() => c.recordBlob('XYZ', 10, [])).toThrow(/hex SHA-256/);
    expect(() => c.recordBlob(blobHash('A'), 0, [])).toThrow(/invalid blob size/);
    expect(() => c.recordBlob(blobHash('A'), 10, [loc('c1', 'B')])).toThrow(/is in blob/);
    expect(c.findChunk(sha('c1'))).toBeUndefined();
    c.close();
  });

  it('survives a crash at any point: what was committed is used, the rest is re-done', () => {
    const c = StateCache.open(path, ID, { batchSize: 1_000_000, batchMs: 1_000_000 });
    c.beginRun('r1');
    c.recordBlob(blobHash('A'), 1000, [loc('c1', 'A')]); // committed at once
    c.recordFile(P('f1'), stat(), [sha('c1')]); // still in the open batch
    // What SIGKILL leaves: the DB and its WAL as they are on disk right now.
    const crashed = join(tmp.dir, 'crashed.sqlite');
    copyFileSync(path, crashed);
    if (existsSync(`${path}-wal`)) copyFileSync(`${path}-wal`, `${crashed}-wal`);
    c.close();

    const after = StateCache.open(crashed, ID);
    expect(after.resetReason).toBeUndefined();
    expect(after.lookupFile(P('f1'))).toBeUndefined(); // uncommitted: the file is read again
    after.beginRun('r2');
    expect(after.findChunk(sha('c1'))).toEqual(loc('c1', 'A')); // the upload is not repeated
    after.recordFile(P('f1'), stat(), [sha('c1')]);
    after.completeSnapshot('h-20260101T000000.000Z', [blobHash('A')]);
    after.close();
  });

  it('close without completing, then reopen: nothing is lost, the run can be completed by the next one', () => {
    const c = StateCache.open(path, ID);
    c.beginRun('r1');
    for (let i = 0; i < 5000; i++) c.recordFile(P(`dir/file-${i}`), stat({ ino: BigInt(i) }), [sha(`c${i}`)]);
    c.close();
    const again = StateCache.open(path, ID);
    expect(again.lookupFile(P('dir/file-4999'))?.ino).toBe(4999n);
    expect(again.baseSnapshot()).toBeUndefined();
    again.beginRun('r2');
    expect(again.findChunk(sha('c1'))).toBeUndefined(); // its chunks were never uploaded: the file is read again
    again.close();
  });

  it('another store or key resets the cache; the same one keeps it', () => {
    const c = StateCache.open(path, ID);
    c.beginRun('r1');
    c.recordBlob(blobHash('A'), 1000, [loc('c1', 'A')]);
    c.recordFile(P('f'), stat(), [sha('c1')]);
    c.completeSnapshot('h-20260101T000000.000Z', [blobHash('A')]);
    c.close();
    expect(StateCache.open(path, storeIdentity({ spec: S3, indexPrefix: 'index/', recipients: ['age1a', 'age1b'] })).resetReason).toBeUndefined();

    const otherKey = storeIdentity({ spec: S3, indexPrefix: 'index/', recipients: ['age1c'] });
    const otherStore = storeIdentity({ spec: { ...S3, bucket: 'other' }, indexPrefix: 'index/', recipients: ['age1a', 'age1b'] });
    expect(otherKey).not.toBe(ID);
    expect(otherStore).not.toBe(ID);
    const d = StateCache.open(path, otherKey);
    expect(d.resetReason).toMatch(/different store or encryption key/);
    expect(d.baseSnapshot()).toBeUndefined();
    expect(d.lookupFile(P('f'))).toBeUndefined();
    d.beginRun('r2');
    expect(d.findChunk(sha('c1'))).toBeUndefined();
    d.close();
    const e = StateCache.open(path, otherKey);
    expect(e.resetReason).toBeUndefined();
    e.close();
  });

  it('the store identity tells endpoints, buckets, prefixes, local roots and index prefixes apart, and normalizes the rest', () => {
    const id = (spec: StorageSpec, env: NodeJS.ProcessEnv = {}, indexPrefix = 'index/', recipients = ['age1a']): string =>
      storeIdentity({ spec, indexPrefix, recipients, env });
    const a = id(S3);
    // Another store: each of these may hold the same keys with other contents.
    for (const other of [
      id({ ...S3, endpoint: 'https://s3.example.org' }),
      id({ ...S3, endpoint: 'https://s3.example.com:9000' }),
      id({ ...S3, endpoint: 'http://s3.example.com' }),
      id({ ...S3, endpoint: 'https://s3.example.com/tenant2' }),
      id({ ...S3, bucket: 'other' }),
      id({ ...S3, prefix: 'other/' }),
      id(S3, {}, 'index2/'),
      id(S3, {}, 'index/', ['age1b']),
    ]) {
      expect(other).not.toBe(a);
    }
    // The same store, written another way; the region and credentials only sign requests.
    for (const same of [
      id({ ...S3, endpoint: 'HTTPS://S3.Example.COM:443/' }),
      id({ ...S3, region: 'eu-west-1', accessKeyId: 'AKIA1', secretAccessKey: 'x', forcePathStyle: false }),
      id({ ...S3, endpoint: undefined }, { AWS_ENDPOINT_URL: 'https://s3.example.com' }),
      id({ ...S3, endpoint: undefined }, { AWS_ENDPOINT_URL_S3: 'https://s3.example.com', AWS_ENDPOINT_URL: 'https://elsewhere' }),
    ]) {
      expect(same).toBe(a);
    }
    // No endpoint anywhere: AWS, whose endpoint (and partition) the region picks.
    const aws = { ...S3, endpoint: undefined };
    expect(storeLocation(aws, {})).toEqual({ type: 's3', endpoint: 'https://s3.us-east-1.amazonaws.com', bucket: 'bucket', prefix: 'prefix/' });
    expect(id({ ...aws, region: 'us-east-1' })).toBe(id(aws));
    expect(id({ ...aws, region: 'cn-north-1' })).not.toBe(id(aws));
    expect(id(aws, { AWS_ENDPOINT_URL: 'https://s3.example.com', AWS_IGNORE_CONFIGURED_ENDPOINT_URLS: 'true' })).toBe(id(aws));

    // A local store is its resolved root: a symlink to it is the same store, a repointed one is not.
    const disk1 = join(tmp.dir, 'disk1');
    const disk2 = join(tmp.dir, 'disk2');
    mkdirSync(disk1);
    mkdirSync(disk2);
    const link = join(tmp.dir, 'backup');
    symlinkSync(disk1, link);
    const local = (path: string, prefix = 'host1/'): string => id({ type: 'local', path, prefix });
    const before = local(link);
    expect(before).toBe(local(disk1));
    expect(local(`${disk1}/.`)).toBe(before);
    expect(local(link, 'host2/')).not.toBe(before);
    rmSync(link);
    symlinkSync(disk2, link);
    expect(local(link)).not.toBe(before);
    // Not there yet (the first backup creates it): the same value as once it exists.
    const later = local(join(link, 'sub', 'store'));
    mkdirSync(join(disk2, 'sub', 'store'), { recursive: true });
    expect(local(join(link, 'sub', 'store'))).toBe(later);
    expect(later).toBe(local(join(disk2, 'sub', 'store')));
  });

  it('a cache whose identity was written without an endpoint (before format 2) is reset once, saying why', () => {
    const c = StateCache.open(path, ID);
    c.beginRun('r1');
    c.recordFile(P('f'), stat(), []);
    c.completeSnapshot('h-20260101T000000.000Z', []);
    c.close();
    const db = new Database(path);
    const legacy = JSON.stringify({ store: 's3://bucket/prefix/', indexPrefix: 'index/', recipients: 'f'.repeat(32) });
    db.prepare("UPDATE meta SET value = ? WHERE key = 'store_identity'").run(legacy);
    db.close();
    const d = StateCache.open(path, ID);
    expect(d.resetReason).toMatch(/older vaultik.*left out the endpoint/);
    expect(d.lookupFile(P('f'))).toBeUndefined();
    d.close();
    const e = StateCache.open(path, ID);
    expect(e.resetReason).toBeUndefined();
    e.close();
  });

  it('an unreadable file or another schema version is rebuilt, not fatal', () => {
    const c = StateCache.open(path, ID);
    c.close();
    writeFileSync(path, Buffer.alloc(8192, 0x41));
    const d = StateCache.open(path, ID);
    expect(d.resetReason).toMatch(/unreadable/);
    d.beginRun('r');
    d.recordFile(P('f'), stat(), []);
    d.close();
    const db = new Database(path);
    db.prepare("UPDATE meta SET value = '99' WHERE key = 'schema_version'").run();
    db.close();
    const e = StateCache.open(path, ID);
    expect(e.resetReason).toMatch(/schema version 99/);
    expect(e.lookupFile(P('f'))).toBeUndefined();
    e.close();
  });

  it('an ordered walk reuses rows without rewriting them and forgets the files it passed over', () => {
    const c = StateCache.open(path, ID);
    c.beginRun('r1');
    c.recordBlob(blobHash('A'), 1000, [loc('c1', 'A'), loc('c2', 'A', 50)]);
    // Byte order, not depth-first order: 'd-x' and 'd.x' sort before 'd/a'.
    for (const name of ['a', 'd-x', 'd.x', 'd/a', 'd/b', 'z']) c.recordFile(P(name), stat(), [sha('c1'), sha('c2')]);
    c.completeSnapshot('h-20260101T000000.000Z', [blobHash('A')]);

    c.beginRun('r2');
    const a = c.lookupInOrder(P('a'));
    // completeSnapshot filled in the blob of each new file's first chunk.
    expect(a).toEqual({ ...stat(), chunks: [sha('c1'), sha('c2')], run: 'r1', blob0: Buffer.from(blobHash('A'), 'hex') });
    expect(c.isUsableBlob(a!.blob0!)).toBe(true);
    expect(c.isUsableBlob(Buffer.from(blobHash('B'), 'hex'))).toBe(false);
    expect(c.findChunk(sha('c1'))).toEqual(loc('c1', 'A'));
    expect(c.findChunk(sha('c2'))).toEqual(loc('c2', 'A', 50));
    expect(c.lookupInOrder(P('b-new'))).toBeUndefined();
    // 'd-x' is passed over: gone from the source.
    expect(c.lookupInOrder(P('d.x'))?.run).toBe('r1');
    expect(() => c.lookupInOrder(P('d.x'))).toThrow(/out of path order/);
    expect(() => c.lookupInOrder(P('a'))).toThrow(/out of path order/);
    expect(c.lookupInOrder(P('d/a'))?.run).toBe('r1');
    // 'd/a' changed: read again and recorded; 'd/b' and 'z' come after the last path asked.
    c.recordFile(P('d/a'), stat({ size: 7 }), [sha('c1')]);
    c.endOrderedScan();
    expect(() => c.lookupInOrder(P('zz'))).toThrow(/has ended/);
    c.completeSnapshot('h-20260102T000000.000Z', [blobHash('A')]);

    // Unchanged rows kept their run; the changed one is r2's; the passed-over ones are gone.
    expect(c.lookupFile(P('a'))?.run).toBe('r1');
    expect(c.lookupFile(P('d.x'))?.run).toBe('r1');
    expect(c.lookupFile(P('d/a'))).toMatchObject({ size: 7, run: 'r2' });
    for (const gone of ['d-x', 'd/b', 'z']) expect(c.lookupFile(P(gone)), gone).toBeUndefined();
    // A row recorded with its first chunk's blob keeps it; the partial index is empty again.
    const db = new Database(path, { readonly: true });
    expect(db.prepare('SELECT COUNT(*) FROM files INDEXED BY files_without_blob0 WHERE blob0 IS NULL').pluck().get()).toBe(0);
    db.close();

    // A run that asks nothing in order keeps the old rule: files it did not record are forgotten.
    c.beginRun('r3');
    c.recordFile(P('a'), stat(), [sha('c1')]);
    c.completeSnapshot('h-20260103T000000.000Z', [blobHash('A')]);
    expect(c.lookupFile(P('a'))?.run).toBe('r3');
    expect(c.lookupFile(P('d.x'))).toBeUndefined();

    // forgetFile drops one row; an aborted run keeps the rest.
    c.beginRun('r4');
    c.forgetFile(P('a'));
    c.abortRun();
    expect(c.lookupFile(P('a'))).toBeUndefined();
    c.close();
  });

  it('a chunk stored in two blobs gives one row to the ordered walk', () => {
    const c = StateCache.open(path, ID);
    c.beginRun('r1');
    c.recordBlob(blobHash('A'), 1000, [loc('c1', 'A')]);
    c.recordBlob(blobHash('B'), 1000, [loc('c1', 'B', 10)]);
    c.recordFile(P('f'), stat(), [sha('c1')]);
    c.recordFile(P('g'), stat(), [sha('c1')]);
    c.completeSnapshot('h-20260101T000000.000Z', [blobHash('A'), blobHash('B')]);
    c.beginRun('r2');
    expect(c.lookupInOrder(P('f'))?.chunks).toEqual([sha('c1')]);
    expect(c.lookupInOrder(P('g'))?.chunks).toEqual([sha('c1')]);
    expect([blobHash('A'), blobHash('B')]).toContain(c.findChunk(sha('c1'))?.blob);
    c.endOrderedScan();
    c.completeSnapshot('h-20260102T000000.000Z', [blobHash('A'), blobHash('B')]);
    expect(c.lookupFile(P('f'))).toBeDefined();
    expect(c.lookupFile(P('g'))).toBeDefined();
    c.close();
  });

  it('handles 100,000 files in batches quickly', () => {
    const c = StateCache.open(path, ID);
    const t = Date.now();
    c.beginRun('r1');
    c.recordBlob(blobHash('A'), 1 << 20, [loc('c', 'A')]);
    for (let i = 0; i < 100_000; i++) c.recordFile(P(`d/${i}`), stat({ ino: BigInt(i) }), [sha('c')]);
    c.completeSnapshot('h-20260101T000000.000Z', [blobHash('A')]);
    c.beginRun('r2');
    // The backup's walk: every tenth file, in path order, found unchanged with its chunks.
    const paths = Array.from({ length: 10_000 }, (_, k) => P(`d/${k * 10}`)).sort(Buffer.compare);
    let unchanged = 0;
    for (const p of paths) {
      const cached = c.lookupInOrder(p);
      if (cached && sameStat(cached, stat({ ino: BigInt(p.toString().slice(2)) })) && cached.chunks.every((id) => c.findChunk(id))) unchanged++;
    }
    c.endOrderedScan();
    expect(unchanged).toBe(10_000);
    c.close();
    expect(Date.now() - t).toBeLessThan(15_000);
  });
});
