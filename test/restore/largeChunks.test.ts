/**
 * Large chunks on restore (issue 16, item 6): a chunk larger than any backup writes (4 × the
 * largest chunk_size) is damaged or forged metadata and is refused before anything is
 * allocated; legitimate large chunks are streamed — decrypted, decompressed, hashed and written
 * in 1 MiB steps — so restore's memory stays within its budget whatever the chunk sizes; a
 * frame that holds more than its chunk's declared size is refused as it decodes.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import zstd from 'zstd-napi/binding.js';
import { compressFrame, FrameStream, MAX_FRAME_CONTENT } from '../../src/compress/zstd.js';
import { CHUNK_SIZE_MAX, maxChunkSize } from '../../src/config/index.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { runRestore } from '../../src/restore/index.js';
import { verifyStore } from '../../src/verify/index.js';
import { MAX_CHUNK_PLAIN_LENGTH } from '../../src/snapshot/index.js';
import { openStorage } from '../../src/storage/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { MAIN, ensureBuilt } from '../backup/cli.js';
import { CountingStorage, makeKey, snapPath, snapshotTree, writeKeyFile, type ExtraFrame } from './helpers.js';

const tmp = makeTempDir('vaultik-restore-large-');
afterAll(tmp.cleanup);
let n = 0;
const TIME = '/usr/bin/time';

/** Deterministic incompressible bytes. */
function noise(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let block = createHash('sha256').update(`seed ${seed}`).digest();
  for (let i = 0; i < size; i += 32) {
    block = createHash('sha256').update(block).digest();
    block.copy(out, i, 0, Math.min(32, size - i));
  }
  return out;
}

/** One real zstd frame of `size` zero bytes, compressed in 1 MiB steps (never holding the content). */
function zeroFrame(size: number): { frame: Buffer; id: Buffer } {
  const cctx = new zstd.CCtx();
  cctx.setParameter(zstd.CParameter.compressionLevel, 1);
  cctx.setParameter(zstd.CParameter.contentSizeFlag, 1);
  cctx.setParameter(zstd.CParameter.checksumFlag, 1);
  cctx.setPledgedSrcSize(size);
  const step = Buffer.alloc(1 << 20);
  const out = Buffer.allocUnsafe(1 << 20);
  const parts: Buffer[] = [];
  const hash = createHash('sha256');
  for (let done = 0; done < size; ) {
    const len = Math.min(step.length, size - done);
    let input = step.subarray(0, len);
    done += len;
    hash.update(input);
    const last = done === size;
    for (;;) {
      const [rest, produced, consumed] = cctx.compressStream2(out, input, last ? zstd.EndDirective.end : zstd.EndDirective.continue);
      parts.push(Buffer.from(out.subarray(0, produced)));
      input = input.subarray(consumed);
      if (last ? rest === 0 : input.length === 0) break;
    }
  }
  return { frame: Buffer.concat(parts), id: hash.digest() };
}

interface Forge {
  /** Frames put in the snapshot's blob, used by no file (see snapshotTree). */
  extraFrames?: ExtraFrame[];
  /** Rewrites the finished shard DB (the source's snapshot path is `base`). */
  tamper?: (db: Database.Database, base: Buffer) => void;
}

/** A store (prefix 'pc/', host 'h') with one snapshot of `files` (a number: a sparse file of that size), the key in a file. */
async function store(files: Record<string, Buffer | number>, options: Forge & { chunkSize?: number } = {}) {
  const dir = join(tmp.dir, `case${n++}`);
  const src = join(dir, 'src');
  mkdirSync(src, { recursive: true });
  mkdirSync(join(dir, 'store'));
  for (const [name, data] of Object.entries(files)) {
    if (typeof data === 'number') {
      closeSync(openSync(join(src, name), 'w'));
      truncateSync(join(src, name), data);
    }
    else writeFileSync(join(src, name), data);
  }
  const key = makeKey();
  const keyFile = writeKeyFile(key, join(dir, 'key.txt'));
  const storage = openStorage({ type: 'local', path: join(dir, 'store'), prefix: 'pc/' });
  const tamper = options.tamper;
  const tree = await snapshotTree(storage, src, {
    recipients: key.recipients,
    tmp: dir,
    host: 'h',
    ...(options.extraFrames ? { extraFrames: options.extraFrames } : {}),
    ...(options.chunkSize ? { chunkSize: options.chunkSize } : {}),
    ...(tamper
      ? {
          tamper: (dbPath: string) => {
            const db = new Database(dbPath);
            try {
              tamper(db, snapPath(src));
            } finally {
              db.close();
            }
          },
        }
      : {}),
  });
  return { dir, src, key, keyFile, storage, tree, url: `file://${join(dir, 'store')}`, target: join(dir, 'target') };
}

/** Points the file at `path` (its first chunk) at an extra frame, declaring `plainLength` bytes. */
function repoint(db: Database.Database, path: Buffer, extra: ExtraFrame, id: Buffer, plainLength: number): void {
  const at = extra.location!;
  db.prepare('INSERT OR REPLACE INTO chunks (id, blob, offset, length, plain_length) VALUES (?, ?, ?, ?, ?)').run(id, Buffer.from(at.blob, 'hex'), at.offset, at.length, plainLength);
  db.prepare('DELETE FROM file_chunks WHERE path = ? AND seq > 0').run(path);
  db.prepare('UPDATE file_chunks SET chunk = ?, file_offset = 0 WHERE path = ?').run(id, path);
}

/**
 * Runs the built CLI (what users run: the sources through the test loader take ~100 MB more,
 * and by a varying amount) under /usr/bin/time: exit code, output and peak RSS (bytes).
 */
function timedCli(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string; maxRss: number; ms: number }> {
  if (!existsSync(TIME)) throw new Error(`this test needs GNU time at ${TIME} (apt-get install time); .ci/run installs it`);
  ensureBuilt();
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(TIME, ['-f', 'MAXRSS_KB=%M', process.execPath, MAIN, ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const m = /MAXRSS_KB=(\d+)/.exec(stderr);
      resolve({ code, stdout, stderr: stderr.replace(/MAXRSS_KB=\d+\n?/, ''), maxRss: m ? Number(m[1]) * 1024 : NaN, ms: Date.now() - started });
    });
  });
}

const MiB = 1024 * 1024;

describe('the largest chunk', () => {
  it('is the largest a backup can write: 4 × the largest chunk_size, for the metadata and for zstd', () => {
    expect(MAX_CHUNK_PLAIN_LENGTH).toBe(maxChunkSize(CHUNK_SIZE_MAX));
    expect(MAX_CHUNK_PLAIN_LENGTH).toBe(256 * MiB);
    expect(MAX_FRAME_CONTENT).toBe(MAX_CHUNK_PLAIN_LENGTH);
  });

  it(
    'a forged chunk of more than that is refused (exit 5) before it is allocated, in little memory',
    async () => {
      // A real frame of 300 MiB of zeros (about 10 KB), in a blob encrypted to the public key, as
      // the chunk of a (sparse) file of that size: metadata as consistent as a backup's.
      const size = 300 * MiB;
      const { frame, id } = zeroFrame(size);
      expect(frame.length).toBeLessThan(MiB);
      const forged: ExtraFrame = { frame, plainLength: 1 };
      const s = await store(
        { 'big.bin': size, 'small.txt': Buffer.from('fine') },
        {
          extraFrames: [forged],
          tamper: (db, base) => repoint(db, Buffer.concat([base, Buffer.from('/big.bin')]), forged, id, size),
        },
      );
      const r = await timedCli(['restore', s.url, 'pc', 'latest', s.target], { HOME: s.dir, TMPDIR: s.dir, VAULTIK_PRIVATE_KEY: s.keyFile });
      // Nothing near the chunk's size was ever held: the built CLI peaks near 80 MB here.
      expect(r.maxRss).toBeLessThan(160 * MiB);
      expect(r.code, r.stderr).toBe(ExitCode.DATA);
      expect(r.stderr).toMatch(/plain_length .* damaged or forged/);
      expect(r.stderr).not.toMatch(/\n\s+at /); // a message, not a stack
      expect(existsSync(join(s.target, snapPath(s.src).toString(), 'big.bin'))).toBe(false);
    },
    60_000,
  );
});

describe('large chunks are streamed', () => {
  it('restores byte-identically, one chunk at a time, through the streaming path', async () => {
    const big = noise(3 * MiB, 1);
    const s = await store({ 'big.bin': big, 'small.txt': Buffer.from('fine') }, { chunkSize: 256 * 1024 });
    const counting = new CountingStorage(s.storage);
    const summary = await runRestore({ storage: counting, identities: s.key.identities, snapshotId: 'latest', target: s.target, streamChunkSize: 64 * 1024 });
    expect(summary.failed).toBe(0);
    const base = join(s.target, snapPath(s.src).toString());
    expect(readFileSync(join(base, 'big.bin')).equals(big)).toBe(true);
    expect(readFileSync(join(base, 'small.txt'), 'utf8')).toBe('fine');
    // Merged, the blob's ranges would take one GET; streamed, every chunk of big.bin takes its own.
    const chunks = s.tree.chunksOf.get(Buffer.concat([snapPath(s.src), Buffer.from('/big.bin')]).toString('latin1'))!;
    expect(chunks.length).toBeGreaterThan(4);
    expect(counting.blobGets).toBeGreaterThan(chunks.length);
  });
});

/** `frame` with the content size in its header rewritten to `size` (same field width). */
function withDeclaredSize(frame: Buffer, size: number): Buffer {
  const out = Buffer.from(frame);
  const fhd = out[4]!;
  const at = 5 + ((fhd >> 5) & 1 ? 0 : 1);
  const fcs = fhd >> 6;
  expect(fcs).toBe(2); // 4 bytes: the sizes used here
  out.writeUInt32LE(size, at);
  return out;
}

describe('a frame holding more than its chunk declares', () => {
  it('is refused as it decodes, never yielding past the declared size', () => {
    const real = compressFrame(Buffer.alloc(8 * MiB));
    const declared = 2 * MiB;
    const stream = new FrameStream(declared);
    let out = 0;
    const run = (): void => {
      for (const piece of stream.push(withDeclaredSize(real, declared))) out += piece.length;
      for (const piece of stream.end()) out += piece.length;
    };
    expect(run).toThrow(VaultikError);
    expect(out).toBeLessThanOrEqual(declared);
    stream.close();
    // And a header that declares other than the metadata says: refused before decoding.
    const other = new FrameStream(declared);
    expect(() => [...other.push(real)]).toThrow(/holds 8388608 bytes, expected 2097152/);
    other.close();
    // A frame cut short: refused at its end.
    const cut = new FrameStream(8 * MiB);
    expect(() => {
      for (const piece of cut.push(real.subarray(0, real.length - 10))) void piece;
      for (const piece of cut.end()) void piece;
    }).toThrow(/truncated|checksum|corrupt/);
    cut.close();
  });

  it('fails its file in a restore (exit 5) and nothing that looks restored is left', async () => {
    const real = compressFrame(Buffer.alloc(8 * MiB));
    const declared = 2 * MiB;
    const id = createHash('sha256').update(Buffer.alloc(declared)).digest();
    const forged: ExtraFrame = { frame: withDeclaredSize(real, declared), plainLength: declared };
    const s = await store(
      { 'big.bin': Buffer.alloc(declared, 1), 'small.txt': Buffer.from('fine') },
      {
        extraFrames: [forged],
        tamper: (db, base) => repoint(db, Buffer.concat([base, Buffer.from('/big.bin')]), forged, id, declared),
      },
    );
    const summary = await runRestore({ storage: s.storage, identities: s.key.identities, snapshotId: 'latest', target: s.target, streamChunkSize: 64 * 1024 });
    expect(summary.failed).toBe(1);
    expect(summary.failures[0]!.message).toMatch(/more than the 2097152 bytes declared|corrupt zstd frame/);
    const base = join(s.target, snapPath(s.src).toString());
    expect(readdirSync(base)).toEqual(['small.txt']);
  });
});

describe('a streamed chunk whose content is not its id', () => {
  it('fails its file, removed: the bytes were written only to be checked', async () => {
    const data = randomBytes(2 * MiB);
    const wrongId = createHash('sha256').update('other content').digest();
    const forged: ExtraFrame = { frame: compressFrame(data), plainLength: data.length };
    const s = await store(
      { 'big.bin': Buffer.alloc(data.length, 1), 'small.txt': Buffer.from('fine') },
      {
        extraFrames: [forged],
        tamper: (db, base) => repoint(db, Buffer.concat([base, Buffer.from('/big.bin')]), forged, wrongId, data.length),
      },
    );
    const summary = await runRestore({ storage: s.storage, identities: s.key.identities, snapshotId: 'latest', target: s.target, streamChunkSize: 64 * 1024 });
    expect(summary.failed).toBe(1);
    expect(summary.failures[0]!.message).toMatch(/SHA-256 [0-9a-f]{64}, expected/);
    expect(readdirSync(join(s.target, snapPath(s.src).toString()))).toEqual(['small.txt']);
  });
});

describe('restore memory with large legitimate chunks', () => {
  it(
    'does not grow with the chunks: a 160 MiB file in chunks of 16 to 160 MiB',
    async () => {
      const big = randomBytes(160 * MiB);
      const s = await store({ 'big.bin': big, 'medium.bin': randomBytes(2 * MiB) }, { chunkSize: 64 * MiB });
      const r = await timedCli(['restore', s.url, 'pc', 'latest', s.target], { HOME: s.dir, TMPDIR: s.dir, VAULTIK_PRIVATE_KEY: s.keyFile });
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(join(s.target, snapPath(s.src).toString(), 'big.bin')).equals(big)).toBe(true);
      // Streamed, the built CLI peaks at 160-170 MB here. Holding a chunk whole (its
      // ciphertext, then its plaintext) is twice its size on top: 400 MB and more.
      expect(r.maxRss).toBeLessThan(240 * MiB);
    },
    120_000,
  );
});

describe('verify --deep with large chunks', () => {
  it('checks a chunk larger than one fetch as it streams in, and finds one that is not its id', async () => {
    const big = randomBytes(24 * MiB);
    const data = randomBytes(12 * MiB);
    const wrongId = createHash('sha256').update('other content').digest();
    const forged: ExtraFrame = { frame: compressFrame(data), plainLength: data.length };
    const s = await store(
      { 'big.bin': big, 'forged.bin': Buffer.alloc(data.length, 1) },
      { chunkSize: 16 * MiB, extraFrames: [forged], tamper: (db, base) => repoint(db, Buffer.concat([base, Buffer.from('/forged.bin')]), forged, wrongId, data.length) },
    );
    const chunks = s.tree.chunksOf.get(Buffer.concat([snapPath(s.src), Buffer.from('/big.bin')]).toString('latin1'))!;
    expect(Math.max(...chunks.map((c) => c.plainLength))).toBeGreaterThan(8 * MiB); // verify fetches up to 8 MiB at once
    const report = await verifyStore(s.storage, { indexPrefix: 'index/', deep: { identities: s.key.identities, tmpDir: s.dir } });
    // big.bin's chunks, and forged.bin's original ones (left in the table by the forgery).
    expect(report.chunks.bytes).toBe(big.length + data.length);
    expect(report.problems).toEqual([expect.objectContaining({ kind: 'bad-chunk', message: expect.stringMatching(/SHA-256 [0-9a-f]{64}, expected/) as unknown })]);
  }, 60_000);
});
