import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { makeTempDir } from '../helpers/tmp.js';
import { runTool } from '../helpers/tools.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { ShardWriter, openShardFile, readRootFile, writeRoot, type Entry, type ShardRef } from '../../src/snapshot/index.js';
import { LATIN1_NAME, SAMPLE_ID, T0, entry, sha256, writeSample, type Sample } from './helpers.js';

let tmp: { dir: string; cleanup: () => void };
beforeEach(() => {
  tmp = makeTempDir('vaultik-snapdb-');
});
afterEach(() => tmp.cleanup());

const sortByPath = (a: Entry, b: Entry): number => Buffer.compare(a.path, b.path);

describe('ShardWriter + ShardReader', () => {
  it('round-trips every entry type, non-UTF-8 names, hard links, multi-chunk and shared chunks', () => {
    const s = writeSample(tmp.dir);
    expect(statSync(s.finished.dbPath).mode & 0o777).toBe(0o600);
    const r = openShardFile(s.finished.dbPath, { expected: sampleRef(s) });
    try {
      expect([...r.entries()]).toEqual([...s.entries].sort(sortByPath));
      expect(r.facts).toMatchObject({ entryCount: 17, fileCount: 8, dirCount: 4, symlinkCount: 1, otherCount: 4 });
      expect(r.facts.firstPath.toString()).toBe('home');
      expect(r.facts.lastPath.toString()).toBe('home/u/data/tty');
      // a, big, copy, empty, café, h1 (h2 is the same inode), sub/x
      expect(s.finished.totalSize).toBe(5 + 8234 + 5 + 0 + 10 + 1234 + 5);
      expect(r.blobs()).toEqual([...s.blobs].sort((a, b) => (a.hash < b.hash ? -1 : 1)));
      expect(s.finished.blobs).toEqual(r.blobs());

      for (const [p, ids] of s.chunksOf) {
        const locs = r.fileChunks(Buffer.from(p, 'latin1'));
        expect(locs).toEqual(ids.map((id) => s.locations.get(id.toString('hex'))));
      }
      expect(r.fileChunks(Buffer.from('home/u/data/h2'))).toEqual([]);
      expect(r.entry(LATIN1_NAME)?.mtimeNs).toBe(-1_000_000_001n);
      expect(r.entry(Buffer.from('nope'))).toBeUndefined();

      // Restore plan inputs.
      const byBlob = [...r.chunksByBlob()];
      expect(byBlob).toHaveLength(5);
      for (let i = 1; i < byBlob.length; i++) {
        const [a, b] = [byBlob[i - 1]!, byBlob[i]!];
        expect(a.blob < b.blob || (a.blob === b.blob && a.offset < b.offset)).toBe(true);
      }
      const c0 = sha256('chunk-0');
      expect(r.chunkUses(c0).map((u) => [u.path.toString(), u.seq, u.fileOffset])).toEqual([
        ['home/u/data/a.txt', 0, 0],
        ['home/u/data/copy-of-a.txt', 0, 0],
        ['home/u/data/sub/x', 0, 0],
      ]);
      const big = r.chunkUses(sha256('chunk-3')).map((u) => [u.path.toString(), u.seq, u.fileOffset]);
      expect(big).toEqual([
        ['home/u/data/big.bin', 2, 7000],
        ['home/u/data/h1', 0, 0],
      ]);
      const placements = [...r.chunkPlacements()];
      expect(placements).toHaveLength(1 + 3 + 1 + 1 + 1 + 1);
      const keys = placements.map((p) => `${p.chunk.blob}:${String(p.chunk.offset).padStart(12, '0')}:${p.path.toString('hex')}`);
      expect(keys).toEqual([...keys].sort());
    } finally {
      r.close();
    }
  });

  it('entries({under}) and the placement filters stop at a "/" boundary', () => {
    const s = writeSample(tmp.dir);
    const r = openShardFile(s.finished.dbPath);
    try {
      const names = (under: string): string[] => [...r.entries({ under: Buffer.from(under) })].map((e) => e.path.toString());
      expect(names('home/u/data/sub')).toEqual(['home/u/data/sub', 'home/u/data/sub/x']);
      // 'home/u/data/a' is a prefix of 'home/u/data/a.txt' but not a directory of it.
      expect(names('home/u/data/a')).toEqual([]);
      expect(names('home/u/data/a.txt')).toEqual(['home/u/data/a.txt']);
      expect(names('home')).toHaveLength(s.entries.length);
      expect([...r.chunksByBlob({ under: Buffer.from('home/u/data/sub') })].map((c) => c.id)).toEqual([sha256('chunk-0')]);
      const pl = [...r.chunkPlacements({ under: Buffer.from('home/u/data/big.bin') })];
      expect(pl.map((p) => [p.seq, p.fileOffset]).sort((x, y) => x[0]! - y[0]!)).toEqual([
        [0, 0],
        [1, 4000],
        [2, 7000],
      ]);
      const keys = pl.map((p) => `${p.chunk.blob}:${String(p.chunk.offset).padStart(12, '0')}`);
      expect(keys).toEqual([...keys].sort());
      // A query while iterating entries (restore looks up chunks per file).
      let n = 0;
      for (const e of r.entries()) if (e.type === 'file') n += r.fileChunks(e.path).length;
      expect(n).toBe(1 + 3 + 1 + 1 + 1 + 1);
    } finally {
      r.close();
    }
  });

  it('drops chunks no file uses and blobs no chunk uses', () => {
    const w = new ShardWriter(join(tmp.dir, 'x.db'));
    const used = sha256('used');
    w.addEntry(entry('d', 'dir'));
    w.addEntry(entry('d/f', 'file', { size: 3 }), [used]);
    w.addChunk({ id: used, blob: 'a'.repeat(64), offset: 0, length: 20, plainLength: 3 });
    w.addChunk({ id: sha256('unused'), blob: 'b'.repeat(64), offset: 0, length: 20, plainLength: 3 });
    w.addBlob('a'.repeat(64), 1000);
    w.addBlob('b'.repeat(64), 1000);
    const f = w.finish();
    expect(f.blobs).toEqual([{ hash: 'a'.repeat(64), size: 1000 }]);
    const r = openShardFile(f.dbPath);
    expect([...r.chunksByBlob()]).toHaveLength(1);
    r.close();
  });

  it('rejects bad input from its caller and never finishes an inconsistent DB', () => {
    const w = new ShardWriter(join(tmp.dir, 'x.db'));
    expect(() => w.addEntry(entry('/abs', 'file'))).toThrow(/absolute path/);
    expect(() => w.addEntry(entry('a/../b', 'file'))).toThrow(/'\.\.' path component/);
    expect(() => w.addEntry(entry('a//b', 'file'))).toThrow(/empty path component/);
    expect(() => w.addEntry(entry('a\0b', 'file'))).toThrow(/NUL/);
    expect(() => w.addEntry(entry('d', 'dir', { size: 3 }))).toThrow(/size/);
    expect(() => w.addEntry(entry('l', 'symlink'))).toThrow(/symlink/);
    expect(() => w.addBlob('zz', 1)).toThrow(/hex/);
    w.addEntry(entry('f', 'file', { size: 3 }), [sha256('x')]);
    expect(() => w.addEntry(entry('f', 'file'))).toThrow(/cannot add 'f'/);
    w.addBlob('c'.repeat(64), 10);
    expect(() => w.addBlob('c'.repeat(64), 11)).toThrow(/two sizes|sizes 10 and 11/);
    // f's chunk was never located.
    expect(() => w.finish()).toThrow(/has no chunk row/);
  });

  it('abort deletes the unfinished file; a new writer replaces a leftover', () => {
    const path = join(tmp.dir, 'x.db');
    const w = new ShardWriter(path);
    w.addEntry(entry('d', 'dir'));
    expect(existsSync(path)).toBe(true);
    w.abort();
    expect(existsSync(path)).toBe(false);
    const w2 = new ShardWriter(path);
    w2.addEntry(entry('d', 'dir'));
    const w3 = new ShardWriter(`${path}.2`);
    w3.abort();
    w2.finish();
    const w4 = new ShardWriter(path); // leftover from a crashed run
    w4.addEntry(entry('e', 'dir'));
    const f = w4.finish();
    expect(f.dirCount).toBe(1);
  });

  it('handles a large snapshot with bounded transactions (50,000 entries)', () => {
    const w = new ShardWriter(join(tmp.dir, 'big.db'), { batchSize: 10_000 });
    const blob = 'd'.repeat(64);
    w.addEntry(entry('r', 'dir'));
    const t = Date.now();
    for (let i = 0; i < 50_000; i++) {
      const id = sha256(`c${i}`);
      w.addEntry(entry(`r/f${i}`, 'file', { size: 10 }), [id]);
      w.addChunk({ id, blob, offset: i * 20, length: 20, plainLength: 10 });
    }
    w.addBlob(blob, 50_000 * 20 + 100);
    const f = w.finish();
    expect(f.fileCount).toBe(50_000);
    expect(Date.now() - t).toBeLessThan(15_000);
  });
});

/** How a root would list the sample shard. */
function sampleRef(s: Sample, over: Partial<ShardRef> = {}): ShardRef {
  const f = s.finished;
  return {
    firstPath: f.firstPath,
    lastPath: f.lastPath,
    hash: 'e'.repeat(64),
    size: 4096,
    entryCount: f.entryCount,
    fileCount: f.fileCount,
    dirCount: f.dirCount,
    symlinkCount: f.symlinkCount,
    otherCount: f.otherCount,
    ...over,
  };
}

/** Copies the sample DB, applies `sql` to the copy (writable), and opens it. */
function tamper(s: Sample, sql: string, pragma?: string): () => void {
  const path = join(tmp.dir, `tampered-${Math.random()}.db`);
  copyFileSync(s.finished.dbPath, path);
  const db = new Database(path);
  db.pragma('ignore_check_constraints = ON');
  if (pragma) db.pragma(pragma);
  db.exec(sql);
  db.close();
  return () => openShardFile(path).close();
}

/** A DB rebuilt row for row in a UTF-16le DB (encoding must be set before any table). */
function utf16Copy(from: string, extraSql: string): string {
  const path = join(tmp.dir, `utf16-${Math.random()}.db`);
  const src = new Database(from, { readonly: true });
  const db = new Database(path);
  db.pragma("encoding = 'UTF-16le'");
  db.pragma(`application_id = ${String(src.pragma('application_id', { simple: true }))}`);
  db.pragma(`user_version = ${String(src.pragma('user_version', { simple: true }))}`);
  const objects = src.prepare("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid").all() as { type: string; name: string; sql: string }[];
  for (const o of objects) if (o.type === 'table') db.exec(o.sql);
  for (const o of objects.filter((x) => x.type === 'table')) {
    const rows = src.prepare(`SELECT * FROM "${o.name}"`).raw().all() as unknown[][];
    if (rows.length === 0) continue;
    const ins = db.prepare(`INSERT INTO "${o.name}" VALUES (${rows[0]!.map(() => '?').join(', ')})`);
    for (const r of rows) ins.run(...r);
  }
  for (const o of objects) if (o.type !== 'table') db.exec(o.sql);
  db.exec(extraSql);
  expect(db.pragma('encoding', { simple: true })).toBe('UTF-16le');
  db.close();
  src.close();
  return path;
}

function expectData(open: () => void, message: RegExp): void {
  let err: unknown;
  try {
    open();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(VaultikError);
  expect((err as VaultikError).exitCode).toBe(ExitCode.DATA);
  expect((err as VaultikError).message).toMatch(message);
}

describe('hostile or broken shard DBs give clean DATA errors', () => {
  let s: Sample;
  beforeEach(() => {
    s = writeSample(tmp.dir);
  });

  it.each([
    ['a ../ path', "UPDATE entries SET path = CAST('home/u/../../etc/x' AS BLOB) WHERE path = CAST('home/u/data/fifo' AS BLOB)", /'\.\.' path component: 'home\/u\/\.\.\/\.\.\/etc\/x'/],
    ['a leading ..', "UPDATE entries SET path = CAST('../x' AS BLOB) WHERE path = CAST('home/u/data/fifo' AS BLOB)", /'\.\.' path component/],
    ['an absolute path', "UPDATE entries SET path = CAST('/etc/passwd' AS BLOB) WHERE path = CAST('home/u/data/fifo' AS BLOB)", /absolute path: '\/etc\/passwd'/],
    ['a NUL byte', "UPDATE entries SET path = x'686f6d65002f78' WHERE path = CAST('home/u/data/fifo' AS BLOB)", /NUL byte in path/],
    ['an empty component', "UPDATE entries SET path = CAST('home//x' AS BLOB) WHERE path = CAST('home/u/data/fifo' AS BLOB)", /empty path component/],
    ['a "." component', "UPDATE entries SET path = CAST('home/./x' AS BLOB) WHERE path = CAST('home/u/data/fifo' AS BLOB)", /'\.' path component/],
    ['an empty path', "UPDATE entries SET path = x'' WHERE path = CAST('home/u/data/fifo' AS BLOB)", /empty path/],
    ['a text path', "UPDATE entries SET path = 'home/u/data/fifo2' WHERE path = CAST('home/u/data/fifo' AS BLOB)", /path is not a BLOB/],
    ['an entry under a symlink', "INSERT INTO entries VALUES (CAST('home/u/data/link/evil' AS BLOB), 'dir', 493, 0, 0, 0, 0, NULL, NULL, NULL)", /'home\/u\/data\/link\/evil' lies under symlink 'home\/u\/data\/link'/],
    ['an unknown type', "UPDATE entries SET type = 'door' WHERE path = CAST('home/u/data/fifo' AS BLOB)", /unknown type 'door'/],
    ['a mode as text', "UPDATE entries SET mode = 'rwx' WHERE path = CAST('home/u/data/fifo' AS BLOB)", /mode of 'home\/u\/data\/fifo' is not an integer/],
    ['a mode out of range', "UPDATE entries SET mode = 99999 WHERE path = CAST('home/u/data/fifo' AS BLOB)", /mode .* out of range/],
    ['a missing chunk row', "DELETE FROM chunks WHERE id = (SELECT chunk FROM file_chunks WHERE path = CAST('home/u/data/big.bin' AS BLOB) AND seq = 1)", /chunk [0-9a-f]{64} of 'home\/u\/data\/big.bin' has no chunk row/],
    ['a missing chunk in the sequence', "DELETE FROM file_chunks WHERE path = CAST('home/u/data/big.bin' AS BLOB) AND seq = 1", /chunk 1 of 'home\/u\/data\/big.bin' is missing/],
    ['chunks that do not add up', "UPDATE entries SET size = 9999 WHERE path = CAST('home/u/data/big.bin' AS BLOB)", /hold 8234 bytes, its size is 9999/],
    ['a wrong file offset', "UPDATE file_chunks SET file_offset = 1 WHERE path = CAST('home/u/data/big.bin' AS BLOB) AND seq = 2", /wrong file offset/],
    ['a file with no chunks', "DELETE FROM file_chunks WHERE path = CAST('home/u/data/a.txt' AS BLOB)", /'home\/u\/data\/a.txt' of 5 bytes has no chunks/],
    ['chunks for a directory', "INSERT INTO file_chunks SELECT CAST('home/u' AS BLOB), 0, chunk, 0 FROM file_chunks LIMIT 1", /chunks listed for dir 'home\/u'/],
    ['chunks for a missing entry', "INSERT INTO file_chunks SELECT CAST('ghost' AS BLOB), 0, chunk, 0 FROM file_chunks LIMIT 1", /'ghost', which is not an entry/],
    ['a chunk whose blob is not listed', 'DELETE FROM blobs WHERE hash = (SELECT MIN(hash) FROM blobs)', /which is not listed in blobs/],
    ['a chunk beyond its blob', 'UPDATE chunks SET offset = 10000000', /beyond the end of blob/],
    ['a huge plain length', 'UPDATE chunks SET plain_length = 4000000000000', /plain_length .* out of range/],
    ['a short chunk id', "UPDATE chunks SET id = x'00' WHERE offset = 0 AND length = 100", /chunk id has 1 bytes, expected 32/],
    ['a hard-link follower with chunks', "INSERT INTO file_chunks SELECT CAST('home/u/data/h2' AS BLOB), seq, chunk, file_offset FROM file_chunks WHERE path = CAST('home/u/data/h1' AS BLOB)", /hard link 'home\/u\/data\/h2' carries chunks/],
    ['a hard-link group mixing sizes', "UPDATE entries SET size = 1 WHERE path = CAST('home/u/data/h2' AS BLOB)", /hard-link group 7 mixes types or sizes/],
    ['an extra table', 'CREATE TABLE extra (x)', /unexpected schema object table extra/],
    ['a trigger', "CREATE TRIGGER t AFTER INSERT ON blobs BEGIN SELECT 1; END", /unexpected schema object trigger t/],
    ['a dropped index', 'DROP INDEX chunks_by_blob', /missing schema object index chunks_by_blob/],
  ])('%s', (_name, sql, message) => {
    expectData(tamper(s, sql), message);
  });

  it('a wrong format version', () => {
    expectData(tamper(s, 'SELECT 1', 'user_version = 1'), /format version 1 is not supported \(this vaultik reads version 2; stores written by vaultik 0\.1\.0 use version 1/);
  });

  it('a different application id', () => {
    expectData(tamper(s, 'SELECT 1', 'application_id = 42'), /not a vaultik shard DB/);
  });

  it('a primary key removed from the schema', () => {
    // Rebuild the entries table without its primary key (with the stock CLI), then duplicate a path.
    const path = join(tmp.dir, 'nopk.db');
    copyFileSync(s.finished.dbPath, path);
    runTool('sqlite3', [
      path,
      `CREATE TABLE e2 AS SELECT * FROM entries; DROP TABLE entries; ALTER TABLE e2 RENAME TO entries;
       INSERT INTO entries SELECT * FROM entries WHERE type = 'dir';`,
    ]);
    expectData(() => openShardFile(path).close(), /unexpected schema object table entries/);
  });

  it('a UTF-16 DB is refused, naming the encoding (its text operators would hide an entry under a symlink)', () => {
    // A hex literal: CAST('…' AS BLOB) would give UTF-16 bytes here.
    const evil = "INSERT INTO entries VALUES (x'686f6d652f752f646174612f6c696e6b2f6576696c', 'dir', 493, 0, 0, 0, 0, NULL, NULL, NULL)";
    expectData(() => openShardFile(utf16Copy(s.finished.dbPath, evil)).close(), /text encoding UTF-16le is not supported \(vaultik writes UTF-8\)/);
    expectData(() => openShardFile(utf16Copy(s.finished.dbPath, 'SELECT 1')).close(), /text encoding UTF-16le/);
  });

  it('not a database at all, and a truncated one', () => {
    const junk = join(tmp.dir, 'junk.db');
    copyFileSync(s.finished.dbPath, junk);
    writeFileSync(junk, Buffer.from('this is not sqlite, just some bytes that fill a page'.repeat(100)));
    expectData(() => openShardFile(junk).close(), /unreadable metadata DB/);
    const trunc = join(tmp.dir, 'trunc.db');
    const bytes = readFileSync(s.finished.dbPath);
    writeFileSync(trunc, bytes.subarray(0, Math.floor(bytes.length / 2)));
    expectData(() => openShardFile(trunc).close(), /unreadable|invalid|malformed/);
    expectData(() => openShardFile(join(tmp.dir, 'missing.db')).close(), /unreadable metadata DB/);
  });
});


describe('a shard must be what its root says', () => {
  it.each([
    ['another first path', { firstPath: Buffer.from('a') }, /it holds 'home' … 'home\/u\/data\/tty', its root says 'a' … 'home\/u\/data\/tty'/],
    ['another last path', { lastPath: Buffer.from('home/u/data/zz') }, /its root says 'home' … 'home\/u\/data\/zz'/],
    ['another entry count', { entryCount: 16 }, /its root says entryCount = 16, it holds 17/],
    ['another file count', { fileCount: 7, otherCount: 5 }, /its root says fileCount = 7, it holds 8/],
  ])('%s', (_name, over, message) => {
    const s = writeSample(tmp.dir);
    expectData(() => openShardFile(s.finished.dbPath, { expected: sampleRef(s, over) }).close(), message);
  });

  it('an empty shard', () => {
    const s = writeSample(tmp.dir);
    expectData(tamper(s, 'DELETE FROM file_chunks; DELETE FROM chunks; DELETE FROM blobs; DELETE FROM entries'), /the shard holds no entry/);
  });
});

describe('roots', () => {
  const root = (s: Sample, shards: ShardRef[], totalSize = s.finished.totalSize): string => {
    const path = join(tmp.dir, `root-${Math.random()}.db`);
    writeRoot(path, s.summary, { shards, totalSize, blobs: s.finished.blobs });
    return path;
  };

  it('round-trip the snapshot row and the shards', () => {
    const s = writeSample(tmp.dir);
    const second = sampleRef(s, { firstPath: Buffer.from('z'), lastPath: Buffer.from('z/y'), hash: 'f'.repeat(64), entryCount: 2, fileCount: 1, dirCount: 1, symlinkCount: 0, otherCount: 0 });
    const path = root(s, [sampleRef(s), second]);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const { info, shards } = readRootFile(path, SAMPLE_ID);
    expect(info).toMatchObject({
      id: SAMPLE_ID,
      host: 'web-eu-1',
      formatVersion: 2,
      startTime: T0,
      sourceDirs: ['/home/u/data'],
      excludes: ['*.log'],
      chunker: 'fastcdc',
      compression: 'zstd',
      fileCount: 9,
      dirCount: 5,
      symlinkCount: 1,
      otherCount: 4,
      totalSize: s.finished.totalSize,
      blobCount: 2,
      blobBytes: 150_000,
      shardCount: 2,
      shardBytes: 8192,
      warnings: 0,
    });
    expect(shards).toEqual([sampleRef(s), second]);
  });

  it('the writer refuses overlapping or unordered shards', () => {
    const s = writeSample(tmp.dir);
    expect(() => root(s, [sampleRef(s), sampleRef(s, { hash: 'f'.repeat(64) })])).toThrow(/overlap or are out of order/);
  });

  const tamperRoot = (sql: string, pragma?: string): (() => void) => {
    const s = writeSample(tmp.dir);
    const path = root(s, [sampleRef(s)]);
    const db = new Database(path);
    if (pragma) db.pragma(pragma);
    db.exec(sql);
    db.close();
    return () => readRootFile(path, SAMPLE_ID);
  };

  it.each([
    ['a second snapshot row', "INSERT INTO snapshot SELECT 'x' || id, format_version, host, start_time, end_time, tool_version, source_dirs, excludes, chunker, chunk_size, blob_size_limit, compression, compression_level, warnings, file_count, dir_count, symlink_count, other_count, total_size, blob_count, blob_bytes, shard_count, shard_bytes FROM snapshot", /2 rows, expected 1/],
    ["another snapshot's id", "UPDATE snapshot SET id = 'web-eu-1-20261127T031500.124Z'", /describes snapshot 'web-eu-1-20261127T031500.124Z'/],
    ['a host not matching the id', "UPDATE snapshot SET host = 'other'", /host 'other' does not match/],
    ['counts that lie', 'UPDATE snapshot SET file_count = 1', /file_count = 1, the shards hold 8/],
    ['a shard count that lies', 'UPDATE snapshot SET shard_count = 2', /shard_count = 2, the shards hold 1/],
    ['a bad time', "UPDATE snapshot SET start_time = 'yesterday'", /start_time is not an ISO 8601/],
    ['overlapping shards', "INSERT INTO shards SELECT CAST('home/u/data/b' AS BLOB), CAST('home/u/data/c' AS BLOB), blob, size, 1, 1, 0, 0, 0 FROM shards", /overlap/],
    ['a shard that ends before it starts', "UPDATE shards SET last_path = CAST('a' AS BLOB)", /ends before it starts/],
    ['a shard path with ..', "UPDATE shards SET first_path = CAST('../x' AS BLOB)", /'\.\.' path component/],
    ['a short shard hash', "UPDATE shards SET blob = x'00'", /blob of the shard at 'home' has 1 bytes, expected 32/],
    ['a shard of more entries than the writer cuts at (a reader limit)', 'UPDATE shards SET entry_count = 8193', /lists 8193 entries, more than the 8192 a shard may hold/],
    ['counts by type that do not add up', 'UPDATE shards SET entry_count = 99', /counts by type of the shard at 'home' do not add up/],
    ['an extra table', 'CREATE TABLE extra (x)', /unexpected schema object table extra/],
    ['an index', 'CREATE INDEX i ON shards (blob)', /unexpected schema object index i/],
  ])('%s', (_name, sql, message) => {
    expectData(tamperRoot(sql), message);
  });

  it('a UTF-16 root is refused, naming the encoding', () => {
    const s = writeSample(tmp.dir);
    expectData(() => readRootFile(utf16Copy(root(s, [sampleRef(s)]), 'SELECT 1'), SAMPLE_ID), /text encoding UTF-16le is not supported/);
  });

  it('a version-1 store is refused with a message naming the version', () => {
    expectData(tamperRoot('SELECT 1', 'user_version = 1'), /format version 1 is not supported \(this vaultik reads version 2/);
  });

  it('a shard where a root belongs', () => {
    const s = writeSample(tmp.dir);
    expectData(() => readRootFile(s.finished.dbPath, SAMPLE_ID), /not a vaultik snapshot DB/);
  });
});
