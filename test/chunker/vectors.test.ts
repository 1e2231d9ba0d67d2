/**
 * FastCDC cross-implementation vectors (test/fixtures/fastcdc, see its README for provenance):
 * every published case must come out exactly — offsets, lengths, gear hashes and SHA-256.
 *
 * The chunker implements v2020 only. The v2016 cases are still checked in full: their boundaries
 * equal v2020's on this input (the fixture notes so), which we check with our chunker, and their
 * v2016 gear hashes are checked with a literal BigInt port of fastcdc-rs v2016 below, built on our
 * GEAR table and masks.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  GEAR,
  GEAR_LS,
  MASKS,
  chunkBuffer,
  chunkStream,
  findCutWithHash,
  masksFor,
  resolveChunker,
  seededGear,
  type ChunkerOptions,
} from '../../src/chunker/index.js';
import { ChunkPool } from '../../src/compress/pool.js';

const dir = new URL('../fixtures/fastcdc/', import.meta.url);
const image = readFileSync(new URL('SekienAkashita.jpg', dir));

interface VectorChunk {
  offset: number;
  length: number;
  gear_hash: string;
  sha256: string;
}
interface VectorCase {
  name: string;
  algorithm: 'v2016' | 'v2020';
  min_size: number;
  avg_size: number;
  max_size: number;
  normalization: number;
  seed: number;
  mask_s: string;
  mask_l: string;
  chunks: VectorChunk[];
}
const vectors = JSON.parse(readFileSync(new URL('sekien-expected-chunks.json', dir), 'utf8')) as {
  input: { size: number; sha256: string };
  cases: VectorCase[];
};
const constants = JSON.parse(readFileSync(new URL('fastcdc-constants.json', dir), 'utf8')) as {
  MASKS: string[];
  GEAR: string[];
  GEAR_LS: string[];
};

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function optionsOf(c: VectorCase): ChunkerOptions {
  return {
    minSize: c.min_size,
    avgSize: c.avg_size,
    maxSize: c.max_size,
    normalization: c.normalization,
    seed: BigInt(c.seed),
  };
}

/** Literal BigInt port of fastcdc-rs v2016 `cut` (one byte per step), for the v2016 hashes. */
function cutV2016(buf: Uint8Array, start: number, end: number, c: VectorCase): { length: number; hash: bigint } {
  const U64 = (1n << 64n) - 1n;
  const { gear } = seededGear(BigInt(c.seed));
  const { maskS, maskL } = masksFor(c.avg_size, c.normalization);
  let remaining = end - start;
  if (remaining <= c.min_size) return { length: remaining, hash: 0n };
  let center = c.avg_size;
  if (remaining > c.max_size) remaining = c.max_size;
  else if (remaining < center) center = remaining;
  let hash = 0n;
  let i = c.min_size;
  for (; i < center; i++) {
    hash = ((hash << 1n) + gear[buf[start + i]!]!) & U64;
    if ((hash & maskS) === 0n) return { length: i, hash };
  }
  for (; i < remaining; i++) {
    hash = ((hash << 1n) + gear[buf[start + i]!]!) & U64;
    if ((hash & maskL) === 0n) return { length: i, hash };
  }
  return { length: remaining, hash };
}

describe('FastCDC constants', () => {
  it('the fixture image is the published one', () => {
    expect(image.length).toBe(vectors.input.size);
    expect(sha256(image)).toBe(vectors.input.sha256);
  });

  it('GEAR and GEAR_LS equal the published tables (GEAR[0] = 0x3b5d3c7d207e37dc)', () => {
    expect(GEAR[0]).toBe(0x3b5d3c7d207e37dcn);
    expect(GEAR.map((g) => '0x' + g.toString(16).padStart(16, '0'))).toEqual(constants.GEAR);
    expect(GEAR_LS.map((g) => '0x' + g.toString(16).padStart(16, '0'))).toEqual(constants.GEAR_LS);
  });

  it('MASKS 0..25 equal the published table; the extension keeps its shape', () => {
    expect(MASKS.slice(0, 26).map((m) => '0x' + m.toString(16).padStart(16, '0'))).toEqual(constants.MASKS);
    for (let n = 5; n < MASKS.length; n++) {
      const m = MASKS[n]!;
      expect(m.toString(2).replaceAll('0', '').length).toBe(n);
      expect(m < 1n << 48n).toBe(true);
      if (n > 17) expect(m & MASKS[n - 1]!).toBe(MASKS[n - 1]); // supersets, as the published upper half
    }
  });
});

describe.each(vectors.cases)('vector $name', (c) => {
  const opts = optionsOf(c);

  it('uses the published masks', () => {
    const r = resolveChunker(opts);
    expect(r.maskS).toBe(BigInt(c.mask_s));
    expect(r.maskL).toBe(BigInt(c.mask_l));
  });

  it('finds every chunk: offset, length, SHA-256 (and the v2020 gear hash)', () => {
    let offset = 0;
    const got = [];
    while (offset < image.length) {
      const { length, hash } = findCutWithHash(image, offset, image.length, opts);
      got.push({
        offset,
        length,
        sha256: sha256(image.subarray(offset, offset + length)),
        ...(c.algorithm === 'v2020' ? { gear_hash: hash.toString() } : {}),
      });
      offset += length;
    }
    const want = c.chunks.map((k) => ({
      offset: k.offset,
      length: k.length,
      sha256: k.sha256,
      ...(c.algorithm === 'v2020' ? { gear_hash: k.gear_hash } : {}),
    }));
    expect(got).toEqual(want);
  });

  if (c.algorithm === 'v2016') {
    it('v2016 gear hashes (reference port)', () => {
      const got = c.chunks.map((k) => cutV2016(image, k.offset, image.length, c));
      expect(got.map((g) => g.length)).toEqual(c.chunks.map((k) => k.length));
      expect(got.map((g) => g.hash.toString())).toEqual(c.chunks.map((k) => k.gear_hash));
    });
  }

  it('chunkBuffer and chunkStream (odd read sizes) agree', async () => {
    const lengths = c.chunks.map((k) => k.length);
    expect(chunkBuffer(image, opts)).toEqual(lengths);
    for (const readSize of [1, 7, 4096, 65536, image.length]) {
      const reads = [];
      for (let i = 0; i < image.length; i += readSize) reads.push(image.subarray(i, i + readSize));
      const out: number[] = [];
      const hashes: string[] = [];
      for await (const chunk of chunkStream(reads, opts)) {
        out.push(chunk.length);
        hashes.push(sha256(chunk));
      }
      expect(out, `read size ${readSize}`).toEqual(lengths);
      expect(hashes).toEqual(c.chunks.map((k) => k.sha256));
    }
  });

  it('ChunkPool.cutStream (the same loop, in a worker thread) finds the same chunks (odd read sizes)', async () => {
    const pool = new ChunkPool({ size: 1 });
    try {
      // One message per read: the tiny reads are chunkStream's test above.
      for (const readSize of [997, 65536, image.length]) {
        const reads = [];
        for (let i = 0; i < image.length; i += readSize) reads.push(image.subarray(i, i + readSize));
        const chunks: Buffer[] = [];
        for await (const chunk of pool.cutStream(reads, opts)) chunks.push(chunk);
        expect(chunks.map((k) => k.length), `read size ${readSize}`).toEqual(c.chunks.map((k) => k.length));
        expect(chunks.map(sha256)).toEqual(c.chunks.map((k) => k.sha256));
      }
    } finally {
      await pool.close();
    }
  });
});
