import { createHash, randomBytes } from 'node:crypto';
import { closeSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compressFrame } from '../../src/compress/zstd.js';
import { SEGMENT_CIPHER_SIZE, SEGMENT_SIZE, bufferReader, decryptSegments, encrypt, openAgeFile, type AgeFileInfo } from '../../src/crypto/index.js';
import { DecodePool } from '../../src/restore/decodePool.js';
import { makeKey } from './helpers.js';

const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

describe('DecodePool', () => {
  const pool = new DecodePool(2);
  afterAll(() => pool.close());

  it('decodes and verifies a batch like decodeChunk, failing only the bad chunks', async () => {
    const chunks = [Buffer.from('hello '.repeat(1000)), Buffer.alloc(0), Buffer.alloc(70000, 7), Buffer.from('tail')];
    const frames = chunks.map((c) => compressFrame(c));
    const corrupt = Buffer.from(frames[2]!);
    corrupt[corrupt.length - 1]! ^= 1; // the content checksum
    const results = await pool.decode([
      { frame: frames[0]!, plainLength: chunks[0]!.length, id: sha(chunks[0]!) },
      { frame: frames[1]!, plainLength: 0, id: sha(chunks[1]!) },
      { frame: corrupt, plainLength: chunks[2]!.length, id: sha(chunks[2]!) },
      { frame: frames[3]!, plainLength: 4, id: sha(Buffer.from('nope')) },
      { frame: frames[0]!, plainLength: 5, id: sha(chunks[0]!) },
      { frame: frames[3]!, plainLength: 4, id: sha(chunks[3]!) },
    ]);
    expect(results[0]).toEqual({ chunk: chunks[0] });
    expect(results[1]).toEqual({ chunk: Buffer.alloc(0) });
    expect(results[2]).toMatchObject({ error: expect.stringContaining('corrupt zstd frame') });
    expect(results[3]).toMatchObject({ error: expect.stringContaining('SHA-256') });
    expect(results[4]).toMatchObject({ error: expect.stringContaining('expected 5') });
    expect(results[5]).toEqual({ chunk: chunks[3] });
  });

  it('runs batches on every worker at once and keeps their results apart', async () => {
    const batches = Array.from({ length: 8 }, (_, i) => Buffer.alloc(100000 + i, i));
    const out = await Promise.all(batches.map((c) => pool.decode([{ frame: compressFrame(c), plainLength: c.length, id: sha(c) }])));
    out.forEach((r, i) => expect(r[0]).toEqual({ chunk: batches[i] }));
  });

  it('rejects after close', async () => {
    const p = new DecodePool(1);
    await p.close();
    await expect(p.decode([])).rejects.toThrow(/closed/);
  });
});

describe('DecodePool: ranges of a real age payload, and whole-file writes', () => {
  const pool = new DecodePool(1);
  afterAll(() => pool.close());
  const key = makeKey();

  /** Frames packed into one age file; the ciphertext of segments [first, last] in shared memory. */
  async function blob(chunks: Buffer[]): Promise<{ file: AgeFileInfo; ranges: (first: number, last: number) => Buffer; offsets: number[]; frames: Buffer[]; age: Buffer }> {
    const frames = chunks.map((c) => compressFrame(c));
    const offsets: number[] = [];
    let at = 0;
    for (const f of frames) {
      offsets.push(at);
      at += f.length;
    }
    const age = encrypt(Buffer.concat(frames), key.recipients);
    const file = await openAgeFile(bufferReader(age), age.length, key.identities);
    const ranges = (first: number, last: number): Buffer => {
      const start = file.payloadStart + first * SEGMENT_CIPHER_SIZE;
      const end = Math.min(age.length, file.payloadStart + (last + 1) * SEGMENT_CIPHER_SIZE);
      const b = Buffer.from(new SharedArrayBuffer(end - start));
      age.copy(b, 0, start, end);
      return b;
    };
    return { file, ranges, offsets, frames, age };
  }

  it('decrypts in place, reports only the bad segment, and decodes the frames from the plaintext', async () => {
    // Incompressible chunks of 50,000 bytes: frames straddle the 64 KiB segments.
    const chunks = Array.from({ length: 8 }, () => randomBytes(50_000));
    const b = await blob(chunks);
    expect(b.file.segmentCount).toBeGreaterThan(4);
    const last = b.file.segmentCount - 1;
    const data = b.ranges(0, last);
    data[2 * SEGMENT_CIPHER_SIZE + 100]! ^= 1; // inside segment 2
    const bad = await pool.decrypt({ data, key: b.file.payloadKey, firstSegment: 0, finalSegment: last });
    expect([...bad.keys()]).toEqual([2]);
    expect(bad.get(2)).toMatch(/failed authentication/);
    const good = chunks
      .map((c, i) => ({ c, i, first: Math.floor(b.offsets[i]! / SEGMENT_SIZE), last: Math.floor((b.offsets[i]! + b.frames[i]!.length - 1) / SEGMENT_SIZE) }))
      .filter((x) => x.first > 2 || x.last < 2);
    expect(good.length).toBeGreaterThan(3);
    const out = Buffer.from(new SharedArrayBuffer(good.length * 50_000));
    const results = await pool.run({ data, out, jobs: good.map((x) => ({ offset: b.offsets[x.i]!, length: b.frames[x.i]!.length, plainLength: 50_000, id: sha(x.c) })) });
    results.forEach((r, k) => expect(r).toEqual({ chunk: good[k]!.c, written: false }));

    // A range that starts mid-payload and ends with the final (short) segment.
    const tail = b.ranges(last - 1, last);
    expect(await pool.decrypt({ data: tail, key: b.file.payloadKey, firstSegment: last - 1, finalSegment: last })).toEqual(new Map());
    expect(tail.subarray(0, SEGMENT_SIZE).equals(decryptSegments(b.file.payloadKey, last - 1, b.age.subarray(b.file.payloadStart + (last - 1) * SEGMENT_CIPHER_SIZE), last).subarray(0, SEGMENT_SIZE))).toBe(true);
    // Called the final segment when it is not: every segment fails.
    const wrong = b.ranges(0, 1);
    expect([...(await pool.decrypt({ data: wrong, key: b.file.payloadKey, firstSegment: 0, finalSegment: 1 })).keys()]).toEqual([1]);
  });

  it('writes whole files in the directory it is given, never through a symlink, and removes nothing else', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'vaultik-decode-'));
    try {
      writeFileSync(join(tmp, 'outside'), 'keep');
      symlinkSync(join(tmp, 'outside'), join(tmp, 'dir-link'));
      mkdirSync(join(tmp, 'd'));
      symlinkSync(join(tmp, 'outside'), join(tmp, 'd', 'planted'));
      const dirFd = openSync(join(tmp, 'd'), 'r');
      try {
        const chunks = [Buffer.from('first file\n'), Buffer.alloc(10_000), Buffer.from('through a symlink?'), Buffer.from('setuid')];
        const data = sharedCopyOf(chunks.map((c) => compressFrame(c)));
        let at = 0;
        const names = ['a', 'holes', 'planted', 'suid'];
        // Modes the umask would take bits from, and a setuid bit: each must come out exact.
        const modes = [0o640, 0o666, 0o644, 0o4750];
        const jobs = chunks.map((c, i) => {
          const frame = compressFrame(c);
          const job = {
            offset: at,
            length: frame.length,
            plainLength: c.length,
            id: sha(c),
            write: { dirFd, name: names[i]!, mode: modes[i]!, uid: 0, gid: 0, owners: false, time: 1_600_000_000.5 },
          };
          at += frame.length;
          return job;
        });
        const out = Buffer.from(new SharedArrayBuffer(20_000));
        const results = await pool.run({ data, jobs, out });
        expect(results[0]).toMatchObject({ written: true });
        expect(results[1]).toMatchObject({ written: true });
        expect(results[2]).toMatchObject({ written: false, writeError: { code: 'EEXIST' } });
        expect(results[3]).toMatchObject({ written: true });
        expect(statSync(join(tmp, 'd', 'suid')).mode & 0o7777).toBe(0o4750);
        expect(readFileSync(join(tmp, 'd', 'a'), 'utf8')).toBe('first file\n');
        const st = statSync(join(tmp, 'd', 'a'));
        expect(st.mode & 0o777).toBe(0o640);
        expect(st.mtimeMs).toBe(1_600_000_000_500);
        const holes = statSync(join(tmp, 'd', 'holes'));
        expect(holes.size).toBe(10_000);
        expect(holes.blocks).toBe(0); // all zeros: a hole, not a write
        expect(holes.mode & 0o777).toBe(0o666);
        expect(lstatSync(join(tmp, 'd', 'planted')).isSymbolicLink()).toBe(true);
        expect(readFileSync(join(tmp, 'outside'), 'utf8')).toBe('keep');
      } finally {
        closeSync(dirFd);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

function sharedCopyOf(parts: Buffer[]): Buffer {
  const b = Buffer.from(new SharedArrayBuffer(parts.reduce((n, p) => n + p.length, 0)));
  let at = 0;
  for (const p of parts) {
    p.copy(b, at);
    at += p.length;
  }
  return b;
}
