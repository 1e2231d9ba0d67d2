/**
 * The restore planner alone (pure): merging of nearby frames, the size and use caps, blob
 * boundaries, the stored-byte arithmetic, and a property test that every placement is planned
 * exactly once inside its range.
 */
import { describe, it, expect } from 'vitest';
import { createHash } from 'node:crypto';
import { SEGMENT_CIPHER_SIZE, SEGMENT_SIZE, segmentRange } from '../../src/crypto/index.js';
import { cipherSpan, frameOffsetInRange, planRanges, segmentsOf, type PlacementLike, type RangePlan } from '../../src/restore/plan.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const blobA = 'a'.repeat(64);
const blobB = 'b'.repeat(64);

function id(n: number): Buffer {
  return createHash('sha256').update(String(n)).digest();
}

function place(n: number, blob: string, offset: number, length: number, path = `f${n}`, fileOffset = 0): PlacementLike {
  return { chunk: { id: id(n), blob, offset, length, plainLength: length * 2 }, path: Buffer.from(path), fileOffset };
}

const spans = (ranges: RangePlan[]): [string, number, number][] => ranges.map((r) => [r.blob.slice(0, 1), r.firstSegment, r.lastSegment]);

describe('planRanges', () => {
  it('merges frames that share or nearly share segments, and splits at a large gap', () => {
    const ranges = [
      ...planRanges([
        place(1, blobA, 0, 1000),
        place(2, blobA, 1000, 70_000), // segments 0-1
        place(3, blobA, 200 * KiB, 10), // segment 3: a 1-segment gap, merged
        place(4, blobA, 2 * MiB, 10), // far away: new range
      ]),
    ];
    expect(spans(ranges)).toEqual([
      ['a', 0, 3],
      ['a', 32, 32],
    ]);
    expect(ranges[0]!.chunks.map((c) => c.chunk.offset)).toEqual([0, 1000, 200 * KiB]);
  });

  it('honours maxGap and maxRangeSize, but never splits one frame', () => {
    const p = [place(1, blobA, 0, 10), place(2, blobA, 5 * SEGMENT_SIZE, 10)];
    expect(spans([...planRanges(p, { maxGap: 4 * SEGMENT_SIZE })])).toEqual([['a', 0, 5]]);
    expect(spans([...planRanges(p, { maxGap: 3 * SEGMENT_SIZE })])).toEqual([
      ['a', 0, 0],
      ['a', 5, 5],
    ]);
    expect(spans([...planRanges(p, { maxGap: 1 * MiB, maxRangeSize: 4 * SEGMENT_SIZE })])).toEqual([
      ['a', 0, 0],
      ['a', 5, 5],
    ]);
    // A 1 MiB frame makes a 17-segment range even with a 64 KiB cap.
    expect(spans([...planRanges([place(1, blobA, 100, MiB)], { maxRangeSize: SEGMENT_SIZE })])).toEqual([['a', 0, 16]]);
  });

  it('starts a new range at a new blob', () => {
    expect(spans([...planRanges([place(1, blobA, 0, 10), place(2, blobB, 0, 10)])])).toEqual([
      ['a', 0, 0],
      ['b', 0, 0],
    ]);
  });

  it('keeps a chunk used many times in one job, and caps uses per range', () => {
    const uses = Array.from({ length: 10 }, (_, i) => place(1, blobA, 0, 100, `file${i}`, i * 200));
    const one = [...planRanges(uses)];
    expect(one).toHaveLength(1);
    expect(one[0]!.chunks).toHaveLength(1);
    expect(one[0]!.chunks[0]!.uses.map((u) => u.fileOffset)).toEqual(uses.map((u) => u.fileOffset));
    // With at most 4 uses per range: 4 + 4 + 2, each continuation over the chunk's own segments.
    const capped = [...planRanges([...uses, place(2, blobA, 100, 10)], { maxUses: 4 })];
    expect(capped.map((r) => r.useCount)).toEqual([4, 4, 3]);
    expect(capped.flatMap((r) => r.chunks.flatMap((c) => c.uses.map((u) => u.path.toString())))).toEqual([
      ...uses.map((u) => u.path.toString()),
      'f2',
    ]);
  });

  it('plans every placement exactly once, inside its range (property)', () => {
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    for (let round = 0; round < 50; round++) {
      const placements: PlacementLike[] = [];
      for (const blob of [blobA, blobB]) {
        let offset = rnd(1000);
        const count = rnd(60);
        for (let i = 0; i < count; i++) {
          const length = 1 + rnd(rnd(4) === 0 ? 400_000 : 20_000);
          const n = round * 1000 + placements.length;
          for (let u = 0; u <= rnd(3); u++) placements.push(place(n, blob, offset, length, `p${n}-${u}`, u));
          offset += length + (rnd(5) === 0 ? rnd(600_000) : 0);
        }
      }
      const options = { maxGap: rnd(400_000), maxRangeSize: 1 + rnd(3 * MiB), maxUses: 1 + rnd(8) };
      const seen: string[] = [];
      for (const r of planRanges(placements, options)) {
        expect(r.useCount).toBe(r.chunks.reduce((a, c) => a + c.uses.length, 0));
        expect(r.useCount).toBeLessThanOrEqual(options.maxUses);
        for (const job of r.chunks) {
          expect(job.chunk.blob).toBe(r.blob);
          const s = segmentsOf(job.chunk.offset, job.chunk.length);
          expect(s.first).toBeGreaterThanOrEqual(r.firstSegment);
          expect(s.last).toBeLessThanOrEqual(r.lastSegment);
          for (const u of job.uses) seen.push(`${job.chunk.id.toString('hex')}:${u.path.toString()}:${u.fileOffset}`);
        }
      }
      expect(seen).toEqual(placements.map((p) => `${p.chunk.id.toString('hex')}:${p.path.toString()}:${p.fileOffset}`));
    }
  });
});

describe('range arithmetic', () => {
  it('cipherSpan and frameOffsetInRange agree with crypto segmentRange', () => {
    const header = 168;
    const plain = 5 * SEGMENT_SIZE + 777;
    const size = header + 16 + plain + 16 * 6;
    for (const [offset, length] of [
      [0, 1],
      [100_000, 70_000],
      [5 * SEGMENT_SIZE, 777],
      [SEGMENT_SIZE - 1, 2],
    ] as const) {
      const s = segmentsOf(offset, length);
      const span = cipherSpan({ firstSegment: s.first, lastSegment: s.last }, header, size);
      const ref = segmentRange(header, size, offset, length);
      expect(span).toEqual({ start: ref.cipherStart, end: ref.cipherEnd });
      expect(frameOffsetInRange({ firstSegment: s.first }, { offset })).toBe(ref.skip);
    }
    // FORMAT.md's worked example.
    expect(cipherSpan({ firstSegment: 1, lastSegment: 2 }, 168, 10 * SEGMENT_CIPHER_SIZE)).toEqual({ start: 65736, end: 196840 });
  });
});
