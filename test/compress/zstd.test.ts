/**
 * zstd frames: one chunk, one self-describing frame that the stock `zstd` CLI reads alone and
 * concatenated (the blob format depends on it), and every kind of damage reported as DATA.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_COMPRESSION_LEVEL,
  boundedDecompress,
  checkCompressionLevel,
  compressFrame,
  decompressFrame,
} from '../../src/compress/zstd.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { makeTempDir } from '../helpers/tmp.js';
import { runTool } from '../helpers/tools.js';

/** Deterministic text-like data: compressible, not trivially so. */
function textLike(size: number, seed = 1): Buffer {
  const words = ['backup', 'vaultik', 'chunk', 'frame', 'age', 'zstd', 'blob', 'restore', 'the', 'of', 'snapshot'];
  let x = seed;
  const parts: string[] = [];
  let n = 0;
  while (n < size) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const w = words[x % words.length]! + ((x >>> 8) % 7 === 0 ? `-${x % 1000}\n` : ' ');
    parts.push(w);
    n += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, size);
}

/** Parsed zstd frame header (RFC 8878 §3.1.1.1). */
function frameHeader(frame: Buffer): { contentSize: bigint | null; checksum: boolean; dictIdFlag: number } {
  expect(frame.readUInt32LE(0)).toBe(0xfd2fb528);
  const fhd = frame[4]!;
  const fcsFlag = fhd >> 6;
  const singleSegment = (fhd >> 5) & 1;
  const checksum = ((fhd >> 2) & 1) === 1;
  const dictIdFlag = fhd & 3;
  expect((fhd >> 3) & 1).toBe(0); // reserved bit
  let pos = 5 + (singleSegment ? 0 : 1) + [0, 1, 2, 4][dictIdFlag]!;
  const fcsBytes = fcsFlag === 0 ? (singleSegment ? 1 : 0) : [1, 2, 4, 8][fcsFlag]!;
  let contentSize: bigint | null = null;
  if (fcsBytes > 0) {
    let v = 0n;
    for (let i = fcsBytes - 1; i >= 0; i--) v = (v << 8n) | BigInt(frame[pos + i]!);
    if (fcsBytes === 2) v += 256n;
    contentSize = v;
    pos += fcsBytes;
  }
  return { contentSize, checksum, dictIdFlag };
}

function expectData(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(VaultikError);
    expect((err as VaultikError).exitCode).toBe(ExitCode.DATA);
    return;
  }
  throw new Error('expected a DATA error');
}

const samples: [string, Buffer][] = [
  ['empty', Buffer.alloc(0)],
  ['1 byte', Buffer.from([42])],
  ['300 B text', textLike(300)],
  ['70 KiB text', textLike(70_000)],
  ['1 MiB random', randomBytes(1 << 20)],
  ['3 MiB mixed', Buffer.concat([textLike(1_500_000, 5), randomBytes(1_500_000)])],
];

describe('zstd frames', () => {
  const tmp = makeTempDir('vaultik-zstd-');
  afterAll(tmp.cleanup);

  it.each(samples)('%s: one frame with content size and checksum, round trip', (_name, plain) => {
    const frame = compressFrame(plain);
    const h = frameHeader(frame);
    expect(h.contentSize).toBe(BigInt(plain.length));
    expect(h.checksum).toBe(true);
    expect(h.dictIdFlag).toBe(0);
    expect(decompressFrame(frame).equals(plain)).toBe(true);
    expect(decompressFrame(frame, plain.length).equals(plain)).toBe(true);
  });

  it('the zstd CLI decompresses each frame alone and their concatenation', () => {
    const frames = samples.map(([, p]) => compressFrame(p));
    for (const [i, f] of frames.entries()) {
      expect(runTool('zstd', ['-d', '-c', '-q'], f).equals(samples[i]![1]), samples[i]![0]).toBe(true);
    }
    const all = Buffer.concat(frames);
    const file = join(tmp.dir, 'frames.zst');
    writeFileSync(file, all);
    runTool('zstd', ['-t', '-q', file]); // verifies every frame's checksum
    expect(runTool('zstd', ['-d', '-c', '-q', file]).equals(Buffer.concat(samples.map(([, p]) => p)))).toBe(true);
    // And the other way: a frame the CLI wrote from a file (it records the size) reads back.
    const src = join(tmp.dir, 'plain');
    writeFileSync(src, samples[3]![1]);
    const cliFrame = runTool('zstd', ['-c', '-q', '--check', src]);
    expect(decompressFrame(cliFrame).equals(samples[3]![1])).toBe(true);
  });

  it('the level is configurable (default 3) and checked', () => {
    expect(DEFAULT_COMPRESSION_LEVEL).toBe(3);
    const text = textLike(400_000, 9);
    const sizes = [1, 3, 19].map((l) => compressFrame(text, l).length);
    expect(sizes[2]!).toBeLessThan(sizes[0]!);
    expect(compressFrame(text).equals(compressFrame(text, 3))).toBe(true);
    expect(decompressFrame(compressFrame(text, -5)).equals(text)).toBe(true);
    expect(decompressFrame(compressFrame(text, 19)).equals(text)).toBe(true);
    for (const bad of [23, 1.5, Number.NaN]) {
      expect(() => compressFrame(text, bad)).toThrow(RangeError);
      expect(() => checkCompressionLevel(bad)).toThrow(RangeError);
    }
  });

  it('damage is a DATA error: flipped bits, checksum, truncation, trailing bytes, wrong size', () => {
    const plain = textLike(200_000, 3);
    const frame = compressFrame(plain);
    // A flipped bit either fails (most do; the checksum catches whatever the decoder does not)
    // or lands in a bit the decoder ignores (e.g. header bit 4, table padding): never wrong data.
    let failed = 0;
    let tried = 0;
    for (let pos = 0; pos < frame.length; pos += 37) {
      for (const bit of [0x01, 0x10, 0x80]) {
        const bad = Buffer.from(frame);
        bad[pos]! ^= bit;
        tried++;
        try {
          expect(decompressFrame(bad).equals(plain)).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(VaultikError);
          expect((err as VaultikError).exitCode).toBe(ExitCode.DATA);
          failed++;
        }
      }
    }
    expect(failed / tried).toBeGreaterThan(0.95);
    const badSum = Buffer.from(frame);
    badSum[frame.length - 1]! ^= 0x80; // the checksum itself
    expectData(() => decompressFrame(badSum));
    expectData(() => decompressFrame(frame.subarray(0, frame.length - 1)));
    expectData(() => decompressFrame(frame.subarray(0, 3)));
    expectData(() => decompressFrame(Buffer.alloc(0)));
    expectData(() => decompressFrame(Buffer.concat([frame, Buffer.from([0])])));
    expectData(() => decompressFrame(Buffer.concat([frame, frame]))); // one frame, not a run
    expectData(() => decompressFrame(frame, plain.length + 1));
    expectData(() => decompressFrame(frame, undefined, plain.length - 1));
    expectData(() => decompressFrame(runTool('zstd', ['-c', '-q'], plain))); // stdin: no content size
  });

  it('refuses a tiny frame that declares a huge size before allocating it', () => {
    // Single-segment header declaring 2^40 bytes, then an empty raw last block.
    const evil = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0xe0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0]);
    expectData(() => decompressFrame(evil));
  });
});

describe('boundedDecompress', () => {
  const collect = async (input: Buffer[], max: number): Promise<Buffer> => {
    const out: Buffer[] = [];
    const stage = boundedDecompress(max, () => new VaultikError('over the cap', ExitCode.DATA));
    for await (const b of stage((async function* () { yield* input; })())) out.push(b);
    return Buffer.concat(out);
  };

  it('decompresses concatenated frames fed in any pieces, up to exactly the cap', async () => {
    const a = textLike(300_000, 1);
    const b = textLike(200_000, 2);
    const z = Buffer.concat([compressFrame(a), compressFrame(b)]);
    for (const piece of [1, 7, 4096, z.length]) {
      const parts: Buffer[] = [];
      for (let i = 0; i < z.length; i += piece) parts.push(z.subarray(i, i + piece));
      expect((await collect(parts, a.length + b.length)).equals(Buffer.concat([a, b]))).toBe(true);
    }
    await expect(collect([z], a.length + b.length - 1)).rejects.toThrow('over the cap');
  });

  it('a stream cut inside a frame, or not zstd, is DATA', async () => {
    const z = compressFrame(textLike(100_000));
    await expect(collect([z.subarray(0, z.length - 3)], 1 << 20)).rejects.toMatchObject({ exitCode: ExitCode.DATA, message: expect.stringMatching(/ends inside a frame/) as unknown });
    await expect(collect([Buffer.from('SQLite format 3\0')], 1 << 20)).rejects.toMatchObject({ exitCode: ExitCode.DATA });
  });
});
