/**
 * The restore plan: which byte ranges of which blobs to fetch, and where every chunk in them goes.
 * Pure: no I/O, no crypto; it only does arithmetic on the placement stream the snapshot reader
 * yields (src/snapshot/reader.ts `chunkPlacements`: every (chunk, file position) pair, ordered
 * by blob, then frame offset, with a chunk's uses on consecutive rows).
 *
 * Ranges are planned in units of age STREAM segments (64 KiB of plaintext each, see
 * docs/FORMAT.md): a frame is readable only by decrypting every segment that holds a byte of
 * it, so two frames that share or nearly share segments are cheaper to fetch together. Chunks of
 * one blob are merged into one range while the gap between them is at most `maxGap` bytes and
 * the range stays within `maxRangeSize` (a single frame larger than that gets a range of its
 * own). The header length of the blob is not needed here: `cipherSpan` turns a planned range
 * into stored-byte offsets once the header is read.
 *
 * Memory: the generator holds only the range being built. A range is closed when it would hold
 * more than `maxUses` chunk uses, so a chunk written at a million positions (a run of zeros in
 * many sparse files) cannot pile up: its remaining uses continue in a new range over just its own
 * segments (the one case where bytes are fetched again, once per `maxUses` uses).
 */
import { SEGMENT_CIPHER_SIZE, SEGMENT_SIZE } from '../crypto/index.js';
import type { ChunkLocation } from '../snapshot/types.js';

/** One file position a chunk is written to. */
export interface ChunkUse {
  /** Snapshot path of the file (the key the engine's file table uses). */
  path: Buffer;
  /** Byte offset of the chunk's plaintext in the file. */
  fileOffset: number;
}

/** A chunk to decode from a range, and every position it is written to. */
export interface ChunkJob {
  chunk: ChunkLocation;
  uses: ChunkUse[];
}

/** One fetch: segments [firstSegment, lastSegment] of one blob, and the chunks they hold. */
export interface RangePlan {
  blob: string;
  firstSegment: number;
  /** Inclusive. */
  lastSegment: number;
  /** Chunks in frame-offset order; every frame lies inside the range's segments. */
  chunks: ChunkJob[];
  /** Sum of `uses.length` over `chunks`. */
  useCount: number;
}

/** The input rows: the shape of the snapshot reader's ChunkPlacement (extra fields ignored). */
export interface PlacementLike {
  chunk: ChunkLocation;
  path: Buffer;
  fileOffset: number;
}

export interface PlanOptions {
  /** Merge two frames when at most this many bytes of plaintext lie between their segments (default 256 KiB). */
  maxGap?: number;
  /** Largest merged range, in plaintext bytes of whole segments (default 8 MiB). */
  maxRangeSize?: number;
  /** Most chunk uses per range (default 4096). */
  maxUses?: number;
}

export const PLAN_DEFAULTS = {
  maxGap: 256 * 1024,
  maxRangeSize: 8 * 1024 * 1024,
  maxUses: 4096,
} as const;

/** Segments [first, last] holding plaintext [offset, offset + length); length ≥ 1. */
export function segmentsOf(offset: number, length: number): { first: number; last: number } {
  return { first: Math.floor(offset / SEGMENT_SIZE), last: Math.floor((offset + Math.max(length, 1) - 1) / SEGMENT_SIZE) };
}

/**
 * Groups placements into ranges (see the top of this file). Placements must come in (blob,
 * offset) order with a chunk's uses consecutive, as `SnapshotReader.chunkPlacements` yields
 * them; out-of-order input still yields correct (only less merged) ranges.
 * @throws RangeError for options below 1 byte / 1 use.
 */
export function* planRanges(placements: Iterable<PlacementLike>, options: PlanOptions = {}): Generator<RangePlan> {
  const maxGap = options.maxGap ?? PLAN_DEFAULTS.maxGap;
  const maxRangeSize = options.maxRangeSize ?? PLAN_DEFAULTS.maxRangeSize;
  const maxUses = options.maxUses ?? PLAN_DEFAULTS.maxUses;
  if (!(maxGap >= 0) || !(maxRangeSize >= 1) || !(maxUses >= 1)) throw new RangeError('invalid plan options');
  const gapSegments = Math.floor(maxGap / SEGMENT_SIZE);
  const maxSegments = Math.max(1, Math.floor(maxRangeSize / SEGMENT_SIZE));

  let current: RangePlan | undefined;
  let job: ChunkJob | undefined;

  for (const p of placements) {
    const { chunk } = p;
    const use: ChunkUse = { path: p.path, fileOffset: p.fileOffset };
    // Another use of the chunk just planned.
    if (current && job && job.chunk.id.equals(chunk.id) && job.chunk.blob === chunk.blob) {
      if (current.useCount < maxUses) {
        job.uses.push(use);
        current.useCount++;
        continue;
      }
      // Too many uses in this range: continue the chunk in a range of its own segments.
      yield current;
      const s = segmentsOf(chunk.offset, chunk.length);
      job = { chunk, uses: [use] };
      current = { blob: chunk.blob, firstSegment: s.first, lastSegment: s.last, chunks: [job], useCount: 1 };
      continue;
    }
    const s = segmentsOf(chunk.offset, chunk.length);
    if (current) {
      const sameBlob = current.blob === chunk.blob;
      const inOrder = s.first >= current.firstSegment;
      const gap = s.first - current.lastSegment - 1; // whole segments between; negative when shared
      const newLast = Math.max(current.lastSegment, s.last);
      const size = newLast - current.firstSegment + 1;
      if (sameBlob && inOrder && gap <= gapSegments && size <= maxSegments && current.useCount < maxUses) {
        job = { chunk, uses: [use] };
        current.chunks.push(job);
        current.lastSegment = newLast;
        current.useCount++;
        continue;
      }
      yield current;
    }
    job = { chunk, uses: [use] };
    current = { blob: chunk.blob, firstSegment: s.first, lastSegment: s.last, chunks: [job], useCount: 1 };
  }
  if (current) yield current;
}

/**
 * The stored bytes [start, end) to fetch for a planned range, for a blob of `blobSize` stored
 * bytes whose age header is `headerLength` bytes: segment i starts at headerLength + 16 +
 * 65552·i, and the final segment ends at the end of the blob.
 */
export function cipherSpan(range: Pick<RangePlan, 'firstSegment' | 'lastSegment'>, headerLength: number, blobSize: number): { start: number; end: number } {
  const payloadStart = headerLength + 16;
  return {
    start: payloadStart + range.firstSegment * SEGMENT_CIPHER_SIZE,
    end: Math.min(payloadStart + (range.lastSegment + 1) * SEGMENT_CIPHER_SIZE, blobSize),
  };
}

/** Where a chunk's frame starts in the plaintext of its range's decrypted segments. */
export function frameOffsetInRange(range: Pick<RangePlan, 'firstSegment'>, chunk: Pick<ChunkLocation, 'offset'>): number {
  return chunk.offset - range.firstSegment * SEGMENT_SIZE;
}
