import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { compressFrame } from '../../src/compress/zstd.js';
import { DecodePool } from '../../src/restore/decodePool.js';

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
