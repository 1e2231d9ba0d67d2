/**
 * Random access: the pure planner's arithmetic, a property test against full decryption
 * (random ranges, segment boundaries, the final segment), the bytes actually fetched, and
 * refusal of tampered or truncated files.
 */
import { describe, it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import {
  AgeError,
  AgeRandomAccess,
  decrypt,
  decryptRange,
  encrypt,
  generateKeyPair,
  openAgeFile,
  parseIdentity,
  parseRecipient,
  segmentRange,
  SEGMENT_CIPHER_SIZE,
  SEGMENT_SIZE,
  type ReadRange,
} from '../../src/crypto/index.js';

const kp = generateKeyPair();
const ids = [parseIdentity(kp.identity)];
const rcpt = [parseRecipient(kp.recipient)];

/** A ReadRange over `file` that records every call. */
function counting(file: Buffer): { read: ReadRange; calls: [number, number][] } {
  const calls: [number, number][] = [];
  return {
    calls,
    read: (start, end) => {
      calls.push([start, end]);
      return Promise.resolve(file.subarray(start, end));
    },
  };
}

/** Deterministic PRNG so a failure names a reproducible case. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function rejectsKind(p: Promise<unknown>, kind: string): Promise<void> {
  await expect(p).rejects.toBeInstanceOf(AgeError);
  await expect(p).rejects.toMatchObject({ kind });
}

describe('segmentRange', () => {
  const h = 200;
  const size = (plain: number): number => h + 16 + plain + 16 * Math.max(1, Math.ceil(plain / SEGMENT_SIZE));

  it('maps plaintext ranges to whole segments', () => {
    const total = 3 * SEGMENT_SIZE + 100;
    expect(segmentRange(h, size(total), 0, 1)).toEqual({
      firstSegment: 0, lastSegment: 0, finalSegment: 3, cipherStart: 216, cipherEnd: 216 + 65552, skip: 0, length: 1,
    });
    // Last byte of segment 0 and first of segment 1.
    expect(segmentRange(h, size(total), 65535, 2)).toMatchObject({ firstSegment: 0, lastSegment: 1, cipherStart: 216, cipherEnd: 216 + 2 * 65552, skip: 65535 });
    expect(segmentRange(h, size(total), 65536, 65536)).toMatchObject({ firstSegment: 1, lastSegment: 1, cipherStart: 216 + 65552, skip: 0 });
    // The final, short segment ends at the end of the file.
    expect(segmentRange(h, size(total), total - 1, 1)).toMatchObject({ firstSegment: 3, lastSegment: 3, cipherStart: 216 + 3 * 65552, cipherEnd: size(total), skip: 99 });
    expect(segmentRange(h, size(total), 10, 0)).toMatchObject({ length: 0, cipherStart: 216, cipherEnd: 216 });
  });

  it('rejects ranges beyond the plaintext and impossible file sizes', () => {
    expect(() => segmentRange(h, size(1000), 999, 2)).toThrow(AgeError);
    expect(() => segmentRange(h, size(1000), -1, 2)).toThrow(RangeError);
    // A payload of one full segment plus an empty one is not a valid STREAM.
    expect(() => segmentRange(h, h + 16 + SEGMENT_CIPHER_SIZE + 16, 0, 1)).toThrow(/valid STREAM/);
    expect(() => segmentRange(h, h + 16 + 15, 0, 0)).toThrow(/truncated/);
  });
});

describe('AgeRandomAccess', () => {
  it('random ranges equal the slice of a full decryption', async () => {
    const next = rng(42);
    for (const plainSize of [0, 1, 100, SEGMENT_SIZE - 1, SEGMENT_SIZE, SEGMENT_SIZE + 1, 3 * SEGMENT_SIZE, 5 * SEGMENT_SIZE + 12345]) {
      const plain = randomBytes(plainSize);
      const file = encrypt(plain, rcpt);
      expect(decrypt(file, ids).equals(plain)).toBe(true);
      const c = counting(file);
      const ra = await AgeRandomAccess.open(c.read, file.length, ids);
      expect(ra.plaintextSize).toBe(plainSize);
      const ranges: [number, number][] = [[0, plainSize], [0, 0], [plainSize, 0]];
      for (let k = 1; k * SEGMENT_SIZE <= plainSize + 1; k++) {
        const b = k * SEGMENT_SIZE;
        for (const [o, l] of [[b - 1, 1], [b - 1, 2], [b, 1], [b - 10, 20], [b, SEGMENT_SIZE]] as const) {
          if (o >= 0 && o + l <= plainSize) ranges.push([o, l]);
        }
      }
      if (plainSize > 0) ranges.push([plainSize - 1, 1]);
      for (let i = 0; i < 60 && plainSize > 0; i++) {
        const o = Math.floor(next() * plainSize);
        const l = Math.floor(next() * Math.min(plainSize - o, next() < 0.5 ? 300 : 3 * SEGMENT_SIZE)) + 1;
        ranges.push([o, Math.min(l, plainSize - o)]);
      }
      for (const [o, l] of ranges) {
        c.calls.length = 0;
        const got = await ra.read(o, l);
        expect(got.equals(plain.subarray(o, o + l)), `size ${plainSize} range ${o}+${l}`).toBe(true);
        if (l === 0) {
          expect(c.calls).toHaveLength(0);
          continue;
        }
        // Exactly the covering segments were fetched, in one call.
        const plan = ra.plan(o, l);
        expect(c.calls).toEqual([[plan.cipherStart, plan.cipherEnd]]);
        expect(plan.lastSegment - plan.firstSegment + 1).toBe(Math.floor((o + l - 1) / SEGMENT_SIZE) - Math.floor(o / SEGMENT_SIZE) + 1);
      }
    }
  });

  it('reads a long header in a few requests and a short one in one', async () => {
    const many = Array.from({ length: 60 }, () => parseRecipient(generateKeyPair().recipient));
    const plain = randomBytes(100_000);
    const file = encrypt(plain, [...many, ...rcpt]);
    const c = counting(file);
    const ra = await AgeRandomAccess.open(c.read, file.length, ids);
    expect(c.calls.length).toBeGreaterThan(1);
    expect(c.calls[0]).toEqual([0, 4096]);
    expect((await ra.read(70_000, 10)).equals(plain.subarray(70_000, 70_010))).toBe(true);

    const small = encrypt(plain, rcpt);
    const c2 = counting(small);
    await AgeRandomAccess.open(c2.read, small.length, ids);
    expect(c2.calls).toEqual([[0, 4096]]);
  });

  it('decrypts ranges from a merged fetch, reusing the opened header', async () => {
    const plain = randomBytes(10 * SEGMENT_SIZE + 7);
    const file = encrypt(plain, rcpt);
    const info = await openAgeFile((s, e) => Promise.resolve(file.subarray(s, e)), file.length, ids);
    const wanted: [number, number][] = [[100, 5000], [SEGMENT_SIZE * 2 - 3, 9], [SEGMENT_SIZE * 3 + 1, 70_000]];
    const plans = wanted.map(([o, l]) => segmentRange(info.headerLength, info.ciphertextSize, o, l));
    const start = Math.min(...plans.map((p) => p.cipherStart));
    const end = Math.max(...plans.map((p) => p.cipherEnd));
    const fetched = file.subarray(start, end);
    for (const [o, l] of wanted) expect(decryptRange(info, start, fetched, o, l).equals(plain.subarray(o, o + l))).toBe(true);
    expect(() => decryptRange(info, start + 1, fetched.subarray(1), 100, 10)).toThrow(RangeError);
  });

  it('never returns bytes of a tampered segment', async () => {
    const plain = randomBytes(4 * SEGMENT_SIZE + 10);
    const file = encrypt(plain, rcpt);
    const ra0 = await AgeRandomAccess.open(counting(file).read, file.length, ids);
    const bad = Buffer.from(file);
    const seg2 = ra0.file.payloadStart + 2 * SEGMENT_CIPHER_SIZE;
    bad[seg2 + 500]! ^= 0x01;
    const ra = await AgeRandomAccess.open(counting(bad).read, bad.length, ids);
    await rejectsKind(ra.read(2 * SEGMENT_SIZE + 10, 5), 'payload');
    await rejectsKind(ra.read(SEGMENT_SIZE, 2 * SEGMENT_SIZE), 'payload');
    // Other segments are still readable.
    expect((await ra.read(3 * SEGMENT_SIZE, 100)).equals(plain.subarray(3 * SEGMENT_SIZE, 3 * SEGMENT_SIZE + 100))).toBe(true);
    // A tampered tag too.
    const badTag = Buffer.from(file);
    badTag[badTag.length - 1]! ^= 0x80;
    const ra2 = await AgeRandomAccess.open(counting(badTag).read, badTag.length, ids);
    await rejectsKind(ra2.read(4 * SEGMENT_SIZE, 1), 'payload');
  });

  it('detects truncation through the final flag', async () => {
    const plain = randomBytes(4 * SEGMENT_SIZE + 10);
    const file = encrypt(plain, rcpt);
    const info = await openAgeFile(counting(file).read, file.length, ids);
    // Cut after segment 2: segment 2 is now "final" but was sealed without the flag.
    const cut = file.subarray(0, info.payloadStart + 3 * SEGMENT_CIPHER_SIZE);
    const ra = await AgeRandomAccess.open(counting(cut).read, cut.length, ids);
    expect(ra.plaintextSize).toBe(3 * SEGMENT_SIZE);
    await rejectsKind(ra.read(3 * SEGMENT_SIZE - 1, 1), 'payload');
    expect((await ra.read(0, 10)).equals(plain.subarray(0, 10))).toBe(true);
    // A cut inside a segment.
    const cut2 = file.subarray(0, file.length - 5);
    const ra2 = await AgeRandomAccess.open(counting(cut2).read, cut2.length, ids);
    await rejectsKind(ra2.read(ra2.plaintextSize - 1, 1), 'payload');
    // A cut inside the header.
    await rejectsKind(AgeRandomAccess.open(counting(file.subarray(0, 50)).read, 50, ids), 'header');
    // A reader that returns fewer bytes than asked.
    const short: ReadRange = (s, e) => Promise.resolve(file.subarray(s, Math.max(s, e - 1)));
    await rejectsKind(AgeRandomAccess.open(short, file.length, ids), 'header');
  });

  it('reports a wrong key as no-match and a bad MAC as hmac', async () => {
    const file = encrypt(randomBytes(1000), rcpt);
    const other = [parseIdentity(generateKeyPair().identity)];
    await rejectsKind(AgeRandomAccess.open(counting(file).read, file.length, other), 'no-match');
    const badMac = Buffer.from(file);
    const macLine = badMac.indexOf('\n---') + 5;
    badMac[macLine + 3] = badMac[macLine + 3] === 0x41 ? 0x42 : 0x41;
    await rejectsKind(AgeRandomAccess.open(counting(badMac).read, badMac.length, ids), 'hmac');
  });
});
