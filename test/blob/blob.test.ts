/**
 * The blob format end to end: many chunks packed (spooling past the memory threshold), read back
 * one by one by random access (counting the bytes fetched), decoded by the stock `age` and `zstd`
 * tools, recovered with docs/FORMAT.md's recipe verbatim, and refused when tampered with.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compressFrame } from '../../src/compress/zstd.js';
import {
  AgeRandomAccess,
  generateKeyPair,
  openAgeFile,
  parseIdentity,
  parseRecipient,
  segmentRange,
  SEGMENT_CIPHER_SIZE,
  SEGMENT_SIZE,
  type ReadRange,
} from '../../src/crypto/index.js';
import { BlobWriter, blobHashOf, blobKey, chunkFromFetched, decodeChunk, readChunk, type FinishedBlob } from '../../src/blob/index.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { requireTool, runTool } from '../helpers/tools.js';
import { makeTempDir } from '../helpers/tmp.js';

const tmp = makeTempDir();
afterAll(tmp.cleanup);
const kp = generateKeyPair();
const ids = [parseIdentity(kp.identity)];
const keyFile = join(tmp.dir, 'key.txt');
writeFileSync(keyFile, kp.identity + '\n');

interface Packed {
  id: Buffer;
  plain: Buffer;
  offset: number;
  length: number;
  plainLength: number;
}

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

/** Text-like data (compressible), deterministic per seed. */
function textish(n: number, seed: number): Buffer {
  const words = ['backup', 'vaultik', 'segment', 'frame', 'chunk', 'the', 'of', 'blob', String(seed)];
  let s = '';
  let x = seed;
  while (s.length < n) {
    x = (x * 1103515245 + 12345) >>> 0;
    s += words[x % words.length]! + (x % 7 === 0 ? '\n' : ' ');
  }
  return Buffer.from(s.slice(0, n));
}

/** Chunk sizes around segment boundaries, tiny ones, an empty one, and a few large ones. */
const SIZES = [0, 1, 17, 1000, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 200_000, 3, 700_000, 5000, 1_500_000, 64, 2 * SEGMENT_SIZE + 5, 900_000, 12, 2_000_000, 300];

async function collect(body: FinishedBlob['body']): Promise<Buffer> {
  if (Buffer.isBuffer(body)) return body;
  const parts: Buffer[] = [];
  for await (const c of body.open()) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function counting(file: Buffer): { read: ReadRange; bytes: () => number; reset: () => void } {
  let n = 0;
  return {
    read: (s, e) => {
      n += e - s;
      return Promise.resolve(file.subarray(s, e));
    },
    bytes: () => n,
    reset: () => (n = 0),
  };
}

describe('blob format', () => {
  const spoolDir = join(tmp.dir, 'spool');
  const chunks: Packed[] = [];
  let blob: FinishedBlob;
  let file: Buffer;
  let blobPath: string;
  let spooledBeforeDispose: string[] = [];

  beforeAll(async () => {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(spoolDir);
    const w = new BlobWriter({ recipients: [parseRecipient(kp.recipient)], spoolDir, memoryThreshold: 1024 * 1024 });
    SIZES.forEach((size, i) => {
      // Alternate incompressible and text-like data so frames span segments both ways.
      const plain = i % 3 === 1 ? textish(size, i) : randomBytes(size);
      const frame = compressFrame(plain);
      const loc = w.addFrame(frame, plain.length);
      chunks.push({ id: sha256(plain), plain, offset: loc.offset, length: loc.length, plainLength: plain.length });
    });
    expect(w.spooled).toBe(true);
    expect(w.frameCount).toBe(SIZES.length);
    expect(w.uncompressedSize).toBe(SIZES.reduce((a, b) => a + b, 0));
    const expectedSize = w.ciphertextSize;
    blob = await w.finish();
    expect(blob.size).toBe(expectedSize);
    spooledBeforeDispose = readdirSync(spoolDir);
    file = await collect(blob.body);
    blobPath = join(tmp.dir, blob.hash);
    writeFileSync(blobPath, file);
  });

  it('names the blob by the SHA-256 of its bytes and lays frames end to end', () => {
    expect(blob.hash).toBe(sha256(file).toString('hex'));
    expect(blob.sha256.equals(sha256(file))).toBe(true);
    expect(blob.size).toBe(file.length);
    expect(Buffer.isBuffer(blob.body)).toBe(false);
    let offset = 0;
    for (const c of chunks) {
      expect(c.offset).toBe(offset);
      offset += c.length;
    }
    expect(blob.plaintextSize).toBe(offset);
    expect(blobKey(blob.hash)).toBe(`blobs/${blob.hash.slice(0, 2)}/${blob.hash.slice(2, 4)}/${blob.hash}`);
    expect(blobHashOf(blobKey(blob.hash))).toBe(blob.hash);
    expect(blobHashOf('blobs/00/00/' + blob.hash)).toBe(blob.hash.startsWith('0000') ? blob.hash : null);
    expect(() => blobKey('ABC')).toThrow(VaultikError);
  });

  it('spools ciphertext only, and dispose() removes the spool file', async () => {
    expect(spooledBeforeDispose).toHaveLength(1);
    const spool = readFileSync(join(spoolDir, spooledBeforeDispose[0]!));
    expect(spool.equals(file)).toBe(true);
    expect(spool.toString('latin1', 0, 22)).toBe('age-encryption.org/v1\n');
    await blob.dispose();
    await blob.dispose();
    expect(readdirSync(spoolDir)).toEqual([]);
    // Re-opening the body after dispose is impossible, which is why upload comes first.
  });

  it('reads every chunk back by random access, fetching only its segments', async () => {
    const c = counting(file);
    const ra = await AgeRandomAccess.open(c.read, file.length, ids);
    const headerRead = c.bytes();
    expect(headerRead).toBe(4096);
    for (const ch of chunks) {
      c.reset();
      const got = await readChunk(ra, ch, ch.id);
      expect(got.equals(ch.plain)).toBe(true);
      const segments = ch.length === 0 ? 0 : Math.floor((ch.offset + ch.length - 1) / SEGMENT_SIZE) - Math.floor(ch.offset / SEGMENT_SIZE) + 1;
      expect(c.bytes()).toBeLessThanOrEqual(segments * SEGMENT_CIPHER_SIZE);
      if (ch.length < 100) expect(c.bytes()).toBeLessThanOrEqual(2 * SEGMENT_CIPHER_SIZE);
    }
    expect(file.length).toBeGreaterThan(40 * SEGMENT_CIPHER_SIZE);
  });

  it('decodes chunks from one merged fetch', async () => {
    const info = await openAgeFile((s, e) => Promise.resolve(file.subarray(s, e)), file.length, ids);
    const picked = chunks.slice(3, 9);
    const plans = picked.map((ch) => segmentRange(info.headerLength, info.ciphertextSize, ch.offset, ch.length));
    const start = plans[0]!.cipherStart;
    const end = plans[plans.length - 1]!.cipherEnd;
    const fetched = file.subarray(start, end);
    for (const ch of picked) expect(chunkFromFetched(info, start, fetched, ch, ch.id).equals(ch.plain)).toBe(true);
  });

  it('age -d | zstd -d yields the concatenated chunks', () => {
    requireTool('age');
    requireTool('zstd');
    const out = runTool('bash', ['-o', 'pipefail', '-c', `age -d -i "${keyFile}" "${blobPath}" | zstd -d`]);
    expect(out.equals(Buffer.concat(chunks.map((c) => c.plain)))).toBe(true);
  });

  it("docs/FORMAT.md's recovery recipes work verbatim", () => {
    requireTool('age');
    requireTool('zstd');
    const doc = readFileSync(new URL('../../docs/FORMAT.md', import.meta.url), 'utf8');
    const recipes = doc.split('\n').filter((l) => l.startsWith('age -d -i key.txt BLOB |'));
    expect(recipes.length).toBe(3);
    // A chunk inside one segment, one across a boundary, the last one, and an empty one.
    const crossing = chunks.find((c) => Math.floor(c.offset / SEGMENT_SIZE) !== Math.floor((c.offset + c.length - 1) / SEGMENT_SIZE))!;
    for (const recipe of recipes) {
      // `dd bs=1` makes one system call per byte: keep it to chunks near the start.
      const picks = [chunks[2]!, crossing, chunks[chunks.length - 1]!, chunks[0]!].filter((c) => !recipe.includes('bs=1 ') || c.offset < 300_000);
      for (const ch of picks) {
        const cmd = recipe
          .replaceAll('key.txt', `"${keyFile}"`)
          .replaceAll('BLOB', `"${blobPath}"`)
          .replaceAll('OFFSET', String(ch.offset))
          .replaceAll('LENGTH', String(ch.length))
          .replace(/ > chunk$/, '');
        // No pipefail: `head` closing the pipe early stops `age` with SIGPIPE, as in a user's shell.
        const out = runTool('bash', ['-c', cmd]);
        expect(out.equals(ch.plain), cmd).toBe(true);
      }
    }
  });

  it('a flipped ciphertext byte is a DATA error, never wrong plaintext', async () => {
    const target = chunks.find((c) => c.length > 3 * SEGMENT_SIZE)!;
    const info = await openAgeFile((s, e) => Promise.resolve(file.subarray(s, e)), file.length, ids);
    const plan = segmentRange(info.headerLength, info.ciphertextSize, target.offset, target.length);
    for (const at of [plan.cipherStart + 3, Math.floor((plan.cipherStart + plan.cipherEnd) / 2), plan.cipherEnd - 1]) {
      const bad = Buffer.from(file);
      bad[at]! ^= 0x10;
      const ra = await AgeRandomAccess.open(counting(bad).read, bad.length, ids);
      await expect(readChunk(ra, target, target.id)).rejects.toMatchObject({ exitCode: ExitCode.DATA });
      // Chunks in other segments are unaffected.
      expect((await readChunk(ra, chunks[2]!, chunks[2]!.id)).equals(chunks[2]!.plain)).toBe(true);
    }
    // A flip in the MAC. (A flip in a stanza reads as "not for this key", as in age itself.)
    const badHeader = Buffer.from(file);
    badHeader[file.indexOf('\n--- ') + 10]! ^= 0x01;
    await expect(AgeRandomAccess.open(counting(badHeader).read, badHeader.length, ids)).rejects.toMatchObject({ exitCode: ExitCode.DATA });
  });

  it('checks the chunk length and id', () => {
    const ch = chunks[3]!;
    const frame = compressFrame(ch.plain);
    expect(decodeChunk(frame, ch, ch.id).equals(ch.plain)).toBe(true);
    expect(() => decodeChunk(frame, { ...ch, plainLength: ch.plainLength + 1 }, ch.id)).toThrow(expect.objectContaining({ exitCode: ExitCode.DATA }) as Error);
    expect(() => decodeChunk(frame, ch, sha256(Buffer.from('other')))).toThrow(/SHA-256/);
    expect(() => decodeChunk(frame.subarray(0, frame.length - 2), ch)).toThrow(expect.objectContaining({ exitCode: ExitCode.DATA }) as Error);
  });
});

describe('BlobWriter', () => {
  it('keeps small blobs in memory, without a spool file', async () => {
    const dir = join(tmp.dir, 'small');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir);
    const w = new BlobWriter({ recipients: [parseRecipient(kp.recipient)], spoolDir: dir });
    const plain = textish(100_000, 7);
    const loc = w.addFrame(compressFrame(plain), plain.length);
    const b = await w.finish();
    expect(Buffer.isBuffer(b.body)).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
    const body = b.body as Buffer;
    expect(b.hash).toBe(sha256(body).toString('hex'));
    const ra = await AgeRandomAccess.open((s, e) => Promise.resolve(body.subarray(s, e)), body.length, ids);
    expect((await readChunk(ra, { ...loc, plainLength: plain.length }, sha256(plain))).equals(plain)).toBe(true);
    await expect(w.finish()).rejects.toThrow(/finished/);
    expect(() => w.addFrame(Buffer.alloc(1), 1)).toThrow(/finished/);
  });

  it('an empty blob is a valid age file', async () => {
    const b = await new BlobWriter({ recipients: [parseRecipient(kp.recipient)] }).finish();
    const path = join(tmp.dir, 'empty-blob');
    writeFileSync(path, b.body as Buffer);
    expect(runTool('age', ['-d', '-i', keyFile, path]).length).toBe(0);
    expect(b.plaintextSize).toBe(0);
  });

  it('abort() deletes the spool file', async () => {
    const dir = join(tmp.dir, 'abort');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir);
    const w = new BlobWriter({ recipients: [parseRecipient(kp.recipient)], spoolDir: dir, memoryThreshold: 1000 });
    w.addFrame(randomBytes(5000), 5000);
    w.addFrame(randomBytes(2 << 20), 2 << 20);
    expect(readdirSync(dir)).toHaveLength(1);
    await w.abort();
    expect(readdirSync(dir)).toEqual([]);
  });
});
