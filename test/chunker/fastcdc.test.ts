/**
 * FastCDC properties: the fast 49-bit hot loop against a literal BigInt port of fastcdc-rs
 * v2020, determinism, size bounds, streaming equivalence for any read size, bounded reading, and
 * the point of CDC — an insertion only changes the chunks around it.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  MAX_CHUNK_MAX_SIZE,
  chunkBuffer,
  chunkStream,
  chunkerOptions,
  findCut,
  masksFor,
  seededGear,
  type ChunkerOptions,
} from '../../src/chunker/index.js';

/** Deterministic pseudo-random bytes (xorshift32), so a failure reproduces. */
function prng(size: number, seed = 0x9e3779b9): Buffer {
  const buf = Buffer.allocUnsafe(size);
  const words = new Uint32Array(buf.buffer, buf.byteOffset, size >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  for (let i = words.length * 4; i < size; i++) buf[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24;
  return buf;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** fastcdc-rs v2020 cut_gear, literally, with BigInt (slow; the oracle). */
function referenceCut(buf: Uint8Array, start: number, end: number, o: ChunkerOptions): number {
  const U64 = (1n << 64n) - 1n;
  const { gear, gearLs } = seededGear(o.seed ?? 0n);
  const { maskS, maskL } = masksFor(o.avgSize, o.normalization ?? 2);
  const maskSLs = maskS << 1n;
  const maskLLs = maskL << 1n;
  let remaining = end - start;
  if (remaining <= o.minSize) return remaining;
  let center = o.avgSize;
  if (remaining > o.maxSize) remaining = o.maxSize;
  else if (remaining < center) center = remaining;
  let index = Math.floor(o.minSize / 2);
  let hash = 0n;
  for (; index < Math.floor(center / 2); index++) {
    const a = index * 2;
    hash = ((hash << 2n) + gearLs[buf[start + a]!]!) & U64;
    if ((hash & maskSLs) === 0n) return a;
    hash = (hash + gear[buf[start + a + 1]!]!) & U64;
    if ((hash & maskS) === 0n) return a + 1;
  }
  for (; index < Math.floor(remaining / 2); index++) {
    const a = index * 2;
    hash = ((hash << 2n) + gearLs[buf[start + a]!]!) & U64;
    if ((hash & maskLLs) === 0n) return a;
    hash = (hash + gear[buf[start + a + 1]!]!) & U64;
    if ((hash & maskL) === 0n) return a + 1;
  }
  return remaining;
}

function split(buf: Buffer, readSize: number | (() => number)): Buffer[] {
  const reads: Buffer[] = [];
  for (let i = 0; i < buf.length; ) {
    const n = typeof readSize === 'number' ? readSize : readSize();
    reads.push(buf.subarray(i, i + n));
    i += n;
  }
  return reads;
}

async function streamLengths(reads: Iterable<Uint8Array> | AsyncIterable<Uint8Array>, o: ChunkerOptions): Promise<number[]> {
  const out: number[] = [];
  for await (const c of chunkStream(reads, o)) out.push(c.length);
  return out;
}

// Odd bounds on purpose: odd min and max exercise the pair alignment and the unhashed last byte.
const shapes: ChunkerOptions[] = [
  chunkerOptions(4096),
  { minSize: 1001, avgSize: 4096, maxSize: 9999, normalization: 2 },
  { minSize: 64, avgSize: 256, maxSize: 1023, normalization: 3 },
  { minSize: 2048, avgSize: 8192, maxSize: 65535, normalization: 0 },
  { minSize: 777, avgSize: 3000, maxSize: 5001, normalization: 1, seed: 666n },
  { minSize: 4096, avgSize: 16384, maxSize: 65535, normalization: 2, seed: 0xfedcba9876543210n },
];

describe('findCut', () => {
  it.each(shapes.map((o, i) => [i, o] as const))('equals the BigInt reference (shape %i)', (_i, o) => {
    const data = prng(600_000, 1234);
    let pos = 0;
    let chunks = 0;
    while (pos < data.length) {
      const want = referenceCut(data, pos, data.length, o);
      expect(findCut(data, pos, data.length, o)).toBe(want);
      // Also short ends around the interesting sizes.
      for (const len of [o.minSize, o.minSize + 1, o.minSize + 2, o.avgSize - 1, o.avgSize + 1, o.maxSize - 1, o.maxSize + 1]) {
        const end = Math.min(data.length, pos + len);
        expect(findCut(data, pos, end, o)).toBe(referenceCut(data, pos, end, o));
      }
      pos += want;
      chunks++;
    }
    expect(chunks).toBeGreaterThan(5);
  });

  it('is deterministic and keeps chunks within [min, max] except the last', () => {
    const o = chunkerOptions(16384);
    const data = prng(4 << 20, 7);
    const a = chunkBuffer(data, o);
    expect(chunkBuffer(Buffer.from(data), o)).toEqual(a);
    expect(a.reduce((s, n) => s + n, 0)).toBe(data.length);
    for (const n of a.slice(0, -1)) {
      expect(n).toBeGreaterThanOrEqual(o.minSize);
      expect(n).toBeLessThanOrEqual(o.maxSize);
    }
    const mean = data.length / a.length;
    // Normalized chunking keeps the mean near the target (loosely: this is a sanity check).
    expect(mean).toBeGreaterThan(o.avgSize * 0.6);
    expect(mean).toBeLessThan(o.avgSize * 1.6);
  });

  it('cuts data with no content boundaries (zeros) at maxSize', () => {
    const o = chunkerOptions(4096);
    expect(chunkBuffer(Buffer.alloc(40_000), o)).toEqual([16384, 16384, 7232]);
    expect(chunkBuffer(Buffer.alloc(0), o)).toEqual([]);
    expect(chunkBuffer(Buffer.alloc(1000), o)).toEqual([1000]);
  });

  it('rejects invalid options', () => {
    const bad: ChunkerOptions[] = [
      { minSize: 32, avgSize: 4096, maxSize: 16384 },
      { minSize: 5000, avgSize: 4096, maxSize: 16384 },
      { minSize: 1024, avgSize: 4096, maxSize: 2048 },
      { minSize: 1024, avgSize: 4096.5, maxSize: 16384 },
      { minSize: 1024, avgSize: 4096, maxSize: 16384, normalization: 4 },
      { minSize: 64, avgSize: 64, maxSize: 256, normalization: 3 },
      { minSize: 1 << 28, avgSize: 1 << 29, maxSize: MAX_CHUNK_MAX_SIZE * 2 },
    ];
    for (const o of bad) expect(() => chunkBuffer(Buffer.alloc(10), o), JSON.stringify(o)).toThrow(RangeError);
    expect(() => findCut(Buffer.alloc(10), 5, 20, chunkerOptions(4096))).toThrow(RangeError);
  });

  it('supports vaultik-sized averages (10 MB default, up to 256 MiB)', () => {
    const o = chunkerOptions(10_000_000);
    expect(o).toMatchObject({ minSize: 2_500_000, avgSize: 10_000_000, maxSize: 40_000_000, normalization: 2 });
    const data = prng(48 << 20, 99);
    const cuts = chunkBuffer(data, o);
    expect(cuts.reduce((s, n) => s + n, 0)).toBe(data.length);
    for (const n of cuts.slice(0, -1)) expect(n).toBeGreaterThanOrEqual(o.minSize);
    expect(() => chunkerOptions(256 << 20)).not.toThrow();
  });
});

describe('chunkStream', () => {
  const o = chunkerOptions(4096);
  const data = prng(3 << 20, 42);
  const expected = chunkBuffer(data, o);

  it.each([
    ['1 byte', 1, 256 << 10],
    ['7 bytes', 7, data.length],
    ['4093 bytes', 4093, data.length],
    ['64 KiB', 65536, data.length],
    ['1 MiB', 1 << 20, data.length],
    ['whole', data.length, data.length],
  ])('reads of %s give chunkBuffer chunks', async (_name, readSize, size) => {
    const d = data.subarray(0, size);
    const want = size === data.length ? expected : chunkBuffer(d, o);
    expect(await streamLengths(split(d, readSize), o)).toEqual(want);
  });

  it('random read sizes (with empty reads) and every option shape', async () => {
    let x = 5;
    const rnd = (): number => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8) % 20000;
    // A zero run forces maxSize cuts (odd maxSizes included) in the middle of the stream.
    const d = Buffer.concat([data.subarray(0, 600_000), Buffer.alloc(150_001), data.subarray(600_000, 1 << 20)]);
    for (const shape of shapes) {
      const got: Buffer[] = [];
      for await (const c of chunkStream(split(d, rnd), shape)) got.push(c);
      expect(got.map((c) => c.length)).toEqual(chunkBuffer(d, shape));
      expect(got.some((c) => c.length === shape.maxSize)).toBe(true);
      expect(Buffer.concat(got).equals(d)).toBe(true);
    }
  });

  it('yields views of a read when a chunk lies inside it, copies otherwise, never mutates', async () => {
    const reads = split(Buffer.from(data), 1 << 20);
    const copies = reads.map((r) => Buffer.from(r));
    let views = 0;
    const chunks: Buffer[] = [];
    for await (const c of chunkStream(reads, o)) {
      if (reads.some((r) => r.buffer === c.buffer)) views++;
      chunks.push(c);
    }
    expect(views).toBeGreaterThan(chunks.length * 0.9);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    reads.forEach((r, i) => expect(r.equals(copies[i]!)).toBe(true));
  });

  it('reads at most maxSize plus one read ahead of the chunk it yields (bounded memory)', async () => {
    const big = chunkerOptions(1 << 20); // max 4 MiB
    const readSize = 65536;
    let pulled = 0;
    async function* endless(): AsyncGenerator<Buffer> {
      for (let i = 0; ; i++) {
        pulled++;
        yield i % 4 ? Buffer.alloc(readSize) : prng(readSize, i + 1); // long zero runs force max-size cuts
      }
    }
    let emitted = 0;
    for await (const c of chunkStream(endless(), big)) {
      emitted += c.length;
      expect(pulled * readSize - emitted).toBeLessThanOrEqual(big.maxSize + readSize);
      if (emitted > 64 << 20) break;
    }
  });

  it('the default 10 MB chunk size over 1 MiB reads (what the backup engine cuts)', async () => {
    const big = chunkerOptions(10_000_000);
    const d = prng(48 << 20, 5);
    expect(await streamLengths(split(d, 1 << 20), big)).toEqual(chunkBuffer(d, big));
  });

  it('accepts Uint8Array reads and rejects strings', async () => {
    const u8 = new Uint8Array(data.buffer, data.byteOffset, 100_000);
    expect(await streamLengths([u8.subarray(0, 50_001), u8.subarray(50_001)], o)).toEqual(chunkBuffer(u8, o));
    await expect(streamLengths(['text' as unknown as Buffer], o)).rejects.toThrow(TypeError);
  });
});

describe('shift resistance', () => {
  it('inserting bytes near the start of 64 MiB changes only the chunks around the edit', () => {
    const o = chunkerOptions(65536);
    const original = prng(64 << 20, 2024);
    const edited = Buffer.concat([original.subarray(0, 100_000), Buffer.from('vaultik!'), original.subarray(100_000)]);
    const ids = (buf: Buffer): string[] => {
      const out: string[] = [];
      let pos = 0;
      for (const n of chunkBuffer(buf, o)) {
        out.push(sha256(buf.subarray(pos, pos + n)));
        pos += n;
      }
      return out;
    };
    const a = ids(original);
    const b = ids(edited);
    expect(a.length).toBeGreaterThan(500);
    const before = new Set(a);
    const changed = b.filter((h) => !before.has(h));
    const lost = a.filter((h) => !new Set(b).has(h));
    // The chunk holding offset 100000 changes (and at most its neighbour when a cut moves).
    expect(changed.length).toBeGreaterThanOrEqual(1);
    expect(changed.length).toBeLessThanOrEqual(2);
    expect(lost.length).toBeLessThanOrEqual(2);
    // Everything after the edit is the same sequence, shifted.
    expect(b.slice(-(a.length - 3))).toEqual(a.slice(-(a.length - 3)));
  });
});
