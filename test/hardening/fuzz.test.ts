/**
 * Fuzzing every parser that reads untrusted bytes (issue 9), with seeded mutations (bit flips,
 * byte sets to edge values, truncations, insertions, deletions, splices, duplications):
 *   - age files: whole-buffer decrypt, the streaming decryptor, the header parser;
 *   - snapshot metadata: the SQLite bytes, logical edits of the decrypted DB (rows and values a
 *     hostile store could craft), and mutated DBs re-encrypted so they pass age and come in
 *     through openSnapshot like a real download;
 *   - manifests: the zstd bytes and the JSON inside;
 *   - config YAML text.
 * Every input must give a result or a clean VaultikError — never another exception, a hang (each
 * input is timed) or unbounded memory (heap checked at the end).
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { BlobWriter, readChunk } from '../../src/blob/index.js';
import { compressFrame, decompressFrame } from '../../src/compress/zstd.js';
import { parseConfig } from '../../src/config/index.js';
import { AgeRandomAccess, createDecryptStream, decrypt, encrypt, generateKeyPair, parseHeader, parseIdentity, parseRecipient } from '../../src/crypto/index.js';
import { VaultikError } from '../../src/errors.js';
import { buildManifest, makeSnapshotId, openShardFile, openSnapshot, parseManifest, readRootFile, ShardWriter, SnapshotWriter, writeRoot, type Entry, type MetadataReader } from '../../src/snapshot/index.js';
import { MemoryStorage } from '../helpers/memoryStorage.js';
import { pseudoRandom } from '../helpers/tree.js';
import { int, prng, suiteSeed } from './kit.js';
import { listingOf } from '../helpers/snapshots.js';

const tmp = mkdtempSync(join(tmpdir(), 'vaultik-fuzz-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const kp = generateKeyPair();
const identities = [parseIdentity(kp.identity)];
const recipients = [parseRecipient(kp.recipient)];

/** Per-input time limit: anything slower is reported as a hang. */
const SLOW_MS = 2000;

interface Stats {
  inputs: number;
  ok: number;
  rejected: number;
  slowest: number;
}
const totals = new Map<string, Stats>();

/** One random mutation of `buf` (never in place). */
function mutate(rnd: () => number, buf: Buffer, donor?: Buffer): Buffer {
  const b = Buffer.from(buf);
  const at = (): number => int(rnd, Math.max(1, b.length));
  switch (int(rnd, 8)) {
    case 0: {
      const n = 1 + int(rnd, 4);
      for (let i = 0; i < n && b.length > 0; i++) b[at()]! ^= 1 << int(rnd, 8);
      return b;
    }
    case 1: {
      const edge = [0x00, 0xff, 0x7f, 0x80, 0x0a, 0x20, 0x2d, 0x3e];
      if (b.length > 0) b[at()] = edge[int(rnd, edge.length)]!;
      return b;
    }
    case 2:
      return b.subarray(0, at());
    case 3: {
      const p = at();
      return Buffer.concat([b.subarray(0, p), Buffer.from(Array.from({ length: 1 + int(rnd, 16) }, () => int(rnd, 256))), b.subarray(p)]);
    }
    case 4: {
      const p = at();
      return Buffer.concat([b.subarray(0, p), b.subarray(Math.min(b.length, p + 1 + int(rnd, 64)))]);
    }
    case 5: {
      // Splice: a run of bytes from elsewhere (or from a donor input) over this position.
      const src = donor && rnd() < 0.5 ? donor : buf;
      const from = int(rnd, Math.max(1, src.length));
      const piece = src.subarray(from, from + 1 + int(rnd, 256));
      const p = at();
      return Buffer.concat([b.subarray(0, p), piece, b.subarray(p + piece.length)]);
    }
    case 6: {
      const p = at();
      const piece = b.subarray(p, p + 1 + int(rnd, 128));
      return Buffer.concat([b.subarray(0, p), piece, piece, b.subarray(p + piece.length)]);
    }
    default: {
      // Several mutations at once.
      let out: Buffer = b;
      for (let i = 0; i < 3; i++) out = mutate(rnd, out, donor);
      return out;
    }
  }
}

/** Runs `fn` on one input; a VaultikError is a clean rejection, anything else fails the test. */
async function attempt(target: string, fn: () => unknown, describeInput: () => string): Promise<void> {
  const s = totals.get(target) ?? { inputs: 0, ok: 0, rejected: 0, slowest: 0 };
  totals.set(target, s);
  s.inputs++;
  const t0 = performance.now();
  try {
    await Promise.race([
      Promise.resolve().then(fn),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`hang: over ${SLOW_MS} ms`)), SLOW_MS).unref()),
    ]);
    s.ok++;
  } catch (err) {
    if (!(err instanceof VaultikError)) {
      throw new Error(`${target}: ${describeInput()} → ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`, { cause: err });
    }
    s.rejected++;
  }
  const ms = performance.now() - t0;
  s.slowest = Math.max(s.slowest, ms);
  if (ms > SLOW_MS) throw new Error(`${target}: ${describeInput()} took ${Math.round(ms)} ms`);
}

const hex = (b: Buffer): string => (b.length > 96 ? `${b.subarray(0, 96).toString('hex')}… (${b.length} bytes)` : b.toString('hex'));

describe('fuzz: age', () => {
  const plain = Buffer.concat([Buffer.from('hello fuzz '), Buffer.alloc(70_000, 7)]); // two STREAM segments
  const sample = encrypt(plain, recipients);
  const headerEnd = sample.indexOf('\n---') + 1;
  const headerText = sample.subarray(0, sample.indexOf('\n', headerEnd) + 1);

  it('mutated age files: decrypt gives the plaintext or an AgeError', async () => {
    // The unmutated file decrypts to its plaintext: the loop below compares against a working reader.
    expect(decrypt(sample, identities).equals(plain)).toBe(true);
    expect(parseHeader(headerText).stanzas.length).toBeGreaterThan(0);
    const rnd = prng(suiteSeed('fuzz/age', 5001));
    for (let i = 0; i < 4000; i++) {
      // Bias half the mutations into the header, where the parser lives.
      const input = rnd() < 0.5 ? Buffer.concat([mutate(rnd, headerText, sample), sample.subarray(headerText.length)]) : mutate(rnd, sample, headerText);
      await attempt('age decrypt', () => {
        const out = decrypt(input, identities);
        // Authenticated: anything that decrypts is the original.
        if (!out.equals(plain)) throw new Error('decrypted to different bytes');
      }, () => hex(input));
    }
  }, 60_000);

  it('mutated age files through the streaming decryptor (as restore and prune read them)', async () => {
    const rnd = prng(suiteSeed('fuzz/age-stream', 5002));
    for (let i = 0; i < 1000; i++) {
      const input = mutate(rnd, sample, headerText);
      await attempt('age stream', async () => {
        const parts: Buffer[] = [];
        await pipeline(Readable.from([input.subarray(0, 100), input.subarray(100)]), createDecryptStream(identities), async (src: AsyncIterable<Buffer>) => {
          for await (const c of src) parts.push(c);
        });
        if (!Buffer.concat(parts).equals(plain)) throw new Error('streamed to different bytes');
      }, () => hex(input));
    }
  }, 60_000);

  it('mutated headers: parseHeader parses or throws an AgeError', async () => {
    const rnd = prng(suiteSeed('fuzz/age-header', 5003));
    for (let i = 0; i < 3000; i++) {
      const input = mutate(rnd, headerText);
      await attempt('age header', () => parseHeader(input), () => JSON.stringify(input.toString('latin1')));
    }
  });
});

describe('fuzz: blobs (random access, as restore reads them)', () => {
  it('mutated blobs: every chunk reads back exactly or fails with a VaultikError', async () => {
    const rnd = prng(suiteSeed('fuzz/blob', 5009));
    const w = new BlobWriter({ recipients, spoolDir: tmp });
    const chunks: { id: Buffer; plain: Buffer; offset: number; length: number; plainLength: number }[] = [];
    for (let i = 0; i < 12; i++) {
      const plain = pseudoRandom(9000 + i * 1500, 40 + i); // incompressible: the blob spans several segments
      const loc = w.addFrame(compressFrame(plain), plain.length);
      chunks.push({ id: createHash('sha256').update(plain).digest(), plain, ...loc, plainLength: plain.length });
    }
    const done = await w.finish();
    const blob = done.body as Buffer;
    // Unmutated, every chunk reads back exactly.
    const whole = await AgeRandomAccess.open((a: number, b: number) => Promise.resolve(blob.subarray(a, b)), blob.length, identities);
    for (const c of chunks) expect((await readChunk(whole, c, c.id)).equals(c.plain)).toBe(true);
    for (let i = 0; i < 1500; i++) {
      const input = mutate(rnd, blob);
      const c = chunks[int(rnd, chunks.length)]!;
      await attempt('blob chunk', async () => {
        const read = (start: number, end: number): Promise<Buffer> => {
          if (start < 0 || end > input.length || start > end) throw new VaultikError(`range ${start}-${end} outside the ${input.length}-byte object`);
          return Promise.resolve(input.subarray(start, end));
        };
        const ra = await AgeRandomAccess.open(read, input.length, identities);
        const got = await readChunk(ra, c, c.id);
        if (!got.equals(c.plain)) throw new Error('a chunk read back different bytes');
      }, () => `mutation ${i} of the blob, chunk at ${c.offset}`);
    }
  }, 60_000);
});

const fuzzId = makeSnapshotId('fuzzhost', new Date(Date.UTC(2026, 10, 27, 1, 2, 3)));
const fuzzSummary = { id: fuzzId, startTime: new Date(), endTime: new Date(), toolVersion: 'fuzz', sourceDirs: ['/home'], excludes: [], chunkSize: 65536, blobSizeLimit: 1 << 20, compressionLevel: 3 };

/** A small but complete shard's rows: every entry type, chunks, two blobs. */
function addRows(w: Pick<ShardWriter, 'addEntry' | 'addChunk' | 'addBlob'>): void {
  const blobA = createHash('sha256').update('a').digest('hex');
  const blobB = createHash('sha256').update('b').digest('hex');
  w.addBlob(blobA, 5000);
  w.addBlob(blobB, 3000);
  const chunk = (n: number): Buffer => createHash('sha256').update(`chunk${n}`).digest();
  for (let n = 0; n < 6; n++) w.addChunk({ id: chunk(n), blob: n < 4 ? blobA : blobB, offset: (n % 4) * 1000, length: 900, plainLength: 2000 + n });
  const e = (path: string, type: Entry['type'], extra: Partial<Entry> = {}): Entry => ({ path: Buffer.from(path), type, mode: 0o644, uid: 1000, gid: 1000, mtimeNs: 1_700_000_000_123_456_789n, size: 0, ...extra });
  w.addEntry(e('home', 'dir', { mode: 0o755 }));
  w.addEntry(e('home/a.txt', 'file', { size: 2000 + 2001 }), [chunk(0), chunk(1)]);
  w.addEntry(e('home/b.bin', 'file', { size: 2002 + 2003 + 2004, linkGroup: 1 }), [chunk(2), chunk(3), chunk(4)]);
  w.addEntry(e('home/c-link', 'file', { size: 2002 + 2003 + 2004, linkGroup: 1 }));
  w.addEntry(e('home/empty', 'file'));
  w.addEntry(e('home/sym', 'symlink', { target: Buffer.from('a.txt') }));
  w.addEntry(e('home/fifo', 'fifo'));
  w.addEntry(e('home/dev', 'chardev', { rdev: 259 }));
  w.addEntry(e('home/z.bin', 'file', { size: 2005 }), [chunk(5)]);
}

/** Reads everything a restore, ls or prune would read from an opened shard. */
function readAllOf(path: string): void {
  const r = openShardFile(path);
  try {
    consume(r);
  } finally {
    r.close();
  }
}
function consume(r: MetadataReader): void {
  for (const e of r.entries()) if (e.type === 'file') r.fileChunks(e.path);
  r.blobs();
  for (const c of r.chunksByBlob()) r.chunkUses(c.id);
  for (const p of r.chunkPlacements()) void p;
  r.entry(Buffer.from('home/a.txt'));
}

describe('fuzz: snapshot metadata', () => {
  const base = join(tmp, 'base.db');
  const w = new ShardWriter(base);
  addRows(w);
  const shard = w.finish();
  const baseBytes = readFileSync(base);
  const rootPath = join(tmp, 'root.db');
  writeRoot(rootPath, fuzzSummary, {
    shards: [{ ...shard, hash: createHash('sha256').update('shard').digest('hex'), size: 4096 }],
    totalSize: shard.totalSize,
    blobs: shard.blobs,
  });
  const rootBytes = readFileSync(rootPath);

  it('sanity: the unmutated shard and root read to exactly what was written', () => {
    readAllOf(base);
    const r = openShardFile(base);
    try {
      expect([...r.entries()].map((x) => `${x.path.toString()} ${x.type} ${x.size}`)).toEqual([
        'home dir 0',
        'home/a.txt file 4001',
        'home/b.bin file 6009',
        'home/c-link file 6009',
        'home/dev chardev 0',
        'home/empty file 0',
        'home/fifo fifo 0',
        'home/sym symlink 0',
        'home/z.bin file 2005',
      ]);
      expect(r.fileChunks(Buffer.from('home/b.bin')).map((c) => c.plainLength)).toEqual([2002, 2003, 2004]);
      expect(r.blobs().map((b) => b.size).sort()).toEqual([3000, 5000]);
    } finally {
      r.close();
    }
    expect(readRootFile(rootPath, fuzzId).shards).toHaveLength(1);
  });

  it('mutated root bytes and rows: readRootFile returns or throws a VaultikError', async () => {
    const rnd = prng(suiteSeed('fuzz/root', 5007));
    const path = join(tmp, 'mutroot.db');
    for (let i = 0; i < 1500; i++) {
      rmSync(path, { force: true });
      if (rnd() < 0.5) {
        writeFileSync(path, mutate(rnd, rootBytes));
      } else {
        writeFileSync(path, rootBytes);
        const db = new Database(path);
        try {
          logicalEdit(rnd, db);
        } finally {
          db.close();
        }
      }
      await attempt('root', () => readRootFile(path, fuzzId), () => `mutation ${i} (VAULTIK_HARDENING_SEED replays it)`);
    }
  }, 60_000);

  it('mutated SQLite bytes: the reader opens and serves them or throws a VaultikError', async () => {
    const rnd = prng(suiteSeed('fuzz/metadata-bytes', 5004));
    const path = join(tmp, 'mut.db');
    for (let i = 0; i < 2000; i++) {
      const input = mutate(rnd, baseBytes);
      rmSync(path, { force: true });
      writeFileSync(path, input);
      await attempt('metadata bytes', () => readAllOf(path), () => `mutation ${i} (VAULTIK_HARDENING_SEED replays it)`);
    }
  }, 60_000);

  /** One logical edit a hostile store could make to a decrypted DB. */
  function logicalEdit(rnd: () => number, db: Database.Database): string {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
    const table = tables[int(rnd, tables.length)]!;
    const cols = (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);
    const col = cols[int(rnd, cols.length)]!;
    const values: unknown[] = [null, -1, 0, 1, 2 ** 53, -(2 ** 53), 2 ** 31, 1e300, 'x', '', '../../etc/passwd', '/abs', Buffer.alloc(0), Buffer.alloc(31, 1), Buffer.alloc(33, 2), Buffer.from('a\0b'), 9_223_372_036_854_775_807n];
    const v = values[int(rnd, values.length)];
    const op = int(rnd, 4);
    try {
      if (op === 0) db.prepare(`UPDATE ${table} SET ${col} = ? WHERE rowid IN (SELECT rowid FROM ${table} ORDER BY random() LIMIT 1)`).run(v);
      else if (op === 1) db.prepare(`DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} ORDER BY random() LIMIT 1)`).run();
      else if (op === 2) db.prepare(`INSERT INTO ${table} SELECT * FROM ${table} ORDER BY random() LIMIT 1`).run();
      else db.prepare(`UPDATE ${table} SET ${col} = ?`).run(v);
    } catch {
      // A constraint refused the edit: the DB stays valid for this round.
    }
    return `${['update one', 'delete one', 'duplicate one', 'update all'][op]} ${table}.${col} = ${String(v)}`;
  }

  it('logical edits of the decrypted DB (hostile values, deleted and duplicated rows)', async () => {
    const rnd = prng(suiteSeed('fuzz/metadata-rows', 5005));
    const path = join(tmp, 'edit.db');
    for (let i = 0; i < 1200; i++) {
      rmSync(path, { force: true });
      writeFileSync(path, baseBytes);
      const db = new Database(path);
      const edits: string[] = [];
      try {
        for (let k = 1 + int(rnd, 3); k > 0; k--) edits.push(logicalEdit(rnd, db));
      } finally {
        db.close();
      }
      await attempt('metadata rows', () => readAllOf(path), () => edits.join('; '));
    }
  }, 60_000);

  it('mutated shards re-encrypted (they pass age and their hash) come in through openSnapshot like a download', async () => {
    const rnd = prng(suiteSeed('fuzz/metadata-store', 5006));
    let published = 0;
    for (let i = 0; i < 150; i++) {
      const storage = new MemoryStorage();
      const sw = new SnapshotWriter(join(tmp, `store-${i}.db`));
      addRows(sw);
      // The root lists what the mutated shard holds, as a forger holding the public key would write it.
      const ok = await sw
        .publish(storage, fuzzSummary, {
          indexPrefix: 'index/',
          recipients,
          tamperShard: (path) => {
            if (rnd() < 0.5) {
              writeFileSync(path, mutate(rnd, readFileSync(path)));
            } else {
              const db = new Database(path);
              try {
                logicalEdit(rnd, db);
                logicalEdit(rnd, db);
              } finally {
                db.close();
              }
            }
          },
        })
        .then(
          () => true,
          () => false, // too broken for the forger's own tools to list: nothing reaches a store
        );
      if (!ok) continue;
      published++;
      await attempt('metadata via store', async () => {
        const r = await openSnapshot(storage, await listingOf(storage, 'index/', fuzzId), identities, tmp);
        try {
          consume(r);
        } finally {
          r.close();
        }
      }, () => `input ${i}`);
    }
    expect(published).toBeGreaterThan(50);
  }, 60_000);
});

describe('fuzz: manifests and config', () => {
  const id = makeSnapshotId('fuzzhost', new Date(Date.UTC(2026, 10, 27, 1, 2, 3)));
  const manifest = buildManifest(id, [
    { hash: createHash('sha256').update('a').digest('hex'), size: 5000 },
    { hash: createHash('sha256').update('b').digest('hex'), size: 3000 },
  ]);
  const json = decompressFrame(manifest);

  it('mutated manifests (zstd bytes and the JSON inside): parsed or a VaultikError', async () => {
    expect(parseManifest(manifest, id).blobs.map((b) => b.size).sort()).toEqual([3000, 5000]);
    const rnd = prng(suiteSeed('fuzz/manifest', 5007));
    for (let i = 0; i < 4000; i++) {
      const input = rnd() < 0.5 ? mutate(rnd, manifest) : compressFrame(mutate(rnd, json));
      await attempt('manifest', () => parseManifest(input, rnd() < 0.5 ? id : undefined), () => hex(input));
    }
    // A tiny frame that claims (and holds) a gigabyte of zeros is refused before inflating.
    const bomb = compressFrame(Buffer.alloc(64 * 1024 * 1024));
    await attempt('manifest', () => parseManifest(bomb), () => 'zstd bomb');
  }, 60_000);

  it('mutated config YAML: a Config or a ConfigError naming the problem', async () => {
    const rnd = prng(suiteSeed('fuzz/config', 5008));
    const yaml = [
      'source_dirs: [/etc, /home/user/data]',
      "exclude: ['*.log', '*.tmp']",
      `age_recipient: ${kp.recipient}`,
      's3: {endpoint: "http://127.0.0.1:9000", bucket: b, prefix: p/, access_key_id: k, secret_access_key: s, region: us-east-1}',
      'backup_interval: 1h',
      'full_scan_interval: 24h',
      'min_time_between_run: 15m',
      'index_path: /var/lib/vaultik/index.sqlite',
      'chunk_size: 10MB',
      'blob_size_limit: 10GB',
      'index_prefix: index/',
      '',
    ].join('\n');
    const text = Buffer.from(yaml);
    expect(parseConfig(yaml, 'fuzz.yaml')).toMatchObject({ sourceDirs: ['/etc', '/home/user/data'], indexPrefix: 'index/' });
    const donor = Buffer.from('&a [*a, *a, *a]\n!!binary x\n? complex\n: key\n"\\u0000"\n{{{{\n---\n...\n%YAML 1.1\n<<: *a\n');
    for (let i = 0; i < 4000; i++) {
      const input = mutate(rnd, text, donor).toString('latin1');
      await attempt('config', () => parseConfig(input, 'fuzz.yaml'), () => JSON.stringify(input));
    }
  }, 60_000);
});

describe('fuzz: totals', () => {
  it('reports iterations; heap stayed bounded', () => {
    let all = 0;
    for (const [target, s] of totals) {
      all += s.inputs;
      console.log(`[hardening] fuzz ${target}: ${s.inputs} inputs, ${s.ok} accepted, ${s.rejected} clean errors, slowest ${Math.round(s.slowest)} ms`);
    }
    console.log(`[hardening] fuzz total: ${all} inputs`);
    expect(all).toBeGreaterThanOrEqual(20000);
    expect(process.memoryUsage().heapUsed).toBeLessThan(1024 ** 3);
  });
});
