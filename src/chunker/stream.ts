/**
 * Streaming FastCDC: cuts an async stream of buffers into the same chunks chunkBuffer() finds on
 * the concatenated data, for a file of any size. StreamCutter is the loop, fed one read at a
 * time; chunkStream() drives it on this thread, the chunk pool's workers drive it with the reads
 * they are sent (ChunkPool.cutStream).
 *
 * Memory: the bytes of the chunk being assembled (< maxSize) plus the read in hand. Each byte is
 * hashed once: the scanner keeps the rolling hash between reads instead of re-scanning, so read
 * size does not matter (1-byte reads give the same chunks, only slower).
 *
 * Copies: a chunk that lies inside one read buffer is yielded as a view of it (zero-copy); a chunk
 * spanning reads is copied once into an exact-size Buffer. So with large reads most chunks cost
 * no copy, and with the usual 64 KiB file reads each byte is copied exactly once.
 *
 * Why it equals the one-shot cut without knowing where the data ends: findCut() only uses the
 * length of the rest of the data (R) to (a) stop at min(R, maxSize) and (b) use the strict mask up
 * to min(R, avgSize). We scan a pair only when both of its bytes have arrived, i.e. when it lies
 * below R; every such pair is tested with the same mask as in the one-shot run (pairs below R <
 * avgSize are strict in both). When the source ends, no scanned pair cut, and the rest (< maxSize)
 * is the last chunk — exactly what findCut returns for R < maxSize.
 */
import { resolveChunker, scanPairs, type ChunkerOptions, type ResolvedChunker, type ScanState } from './fastcdc.js';

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/**
 * The streaming loop: push() each read in order, then end(). The contract for reads and chunks
 * is chunkStream's.
 */
export class StreamCutter {
  private readonly r: ResolvedChunker;
  private readonly firstPair: number;
  private readonly centerPairs: number;
  private readonly pairLimit: number;
  // The current chunk's bytes that came from earlier reads, in order (views), and their total.
  private parts: Buffer[] = [];
  private have = 0;
  // Next pair to hash (chunk-relative pair index) and the rolling hash so far.
  private pair: number;
  private readonly st: ScanState = { lo: 0, hi: 0 };
  // A Buffer like the reads, so scanPairs sees one array type (keeps its element loads monomorphic).
  private readonly bridge = Buffer.alloc(2);

  /** @throws RangeError for invalid options. */
  constructor(opts: ChunkerOptions) {
    this.r = resolveChunker(opts);
    this.firstPair = this.r.minSize >>> 1;
    this.centerPairs = this.r.avgSize >>> 1;
    this.pairLimit = this.r.maxSize >>> 1;
    this.pair = this.firstPair;
  }

  /** Feeds the next read; returns the chunks it completes, in order. */
  push(rd: Buffer): Buffer[] {
    const { r, centerPairs, pairLimit, st } = this;
    const out: Buffer[] = [];
    let off = 0;
    while (off < rd.length) {
      // Chunk-relative position p is rd[base + p] for p >= have.
      const total = this.have + (rd.length - off);
      const base = off - this.have;
      let pair = this.pair;
      let cut = -1;
      if (pair < pairLimit && 2 * pair === this.have - 1) {
        // The pair straddles the previous read and this one: hash it from a 2-byte bridge.
        const prev = this.parts[this.parts.length - 1]!;
        this.bridge[0] = prev[prev.length - 1]!;
        this.bridge[1] = rd[off]!;
        cut = scanPairs(this.bridge, -2 * pair, pair, pair + 1, r, pair < centerPairs, st);
        pair++;
      }
      if (cut < 0 && pair < pairLimit) {
        const end = Math.min(pairLimit, total >>> 1);
        if (pair < centerPairs) {
          const to = Math.min(end, centerPairs);
          cut = scanPairs(rd, base, pair, to, r, true, st);
          if (cut < 0) pair = Math.max(pair, to);
        }
        if (cut < 0 && pair < end) {
          cut = scanPairs(rd, base, pair, end, r, false, st);
          if (cut < 0) pair = end;
        }
      }
      if (cut < 0 && pair >= pairLimit && total >= r.maxSize) cut = r.maxSize;
      if (cut < 0) {
        // No cut in what we have: keep the rest of this read for the chunk and read on.
        let rest = rd.subarray(off);
        // A small tail would pin a large read buffer; copy it out instead (it is < maxSize).
        if (rest.length < rd.length >>> 1) rest = Buffer.from(rest);
        this.parts.push(rest);
        this.have = total;
        this.pair = pair;
        break;
      }
      // The chunk's bytes from this read (none when the cut falls inside the earlier reads).
      const fromRead = cut - this.have;
      out.push(this.take(rd, off, cut));
      if (fromRead > 0) off += fromRead;
      this.pair = this.firstPair;
      st.lo = 0;
      st.hi = 0;
    }
    return out;
  }

  /** The last chunk (the bytes after the last cut), if any. The cutter is spent afterwards. */
  end(): Buffer | undefined {
    if (this.have === 0) return undefined;
    const last = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.have);
    this.parts = [];
    this.have = 0;
    return last;
  }

  /** Removes the first `len` bytes of (parts ++ rd[off..]) and returns them as one Buffer. */
  private take(rd: Buffer, off: number, len: number): Buffer {
    const have = this.have;
    if (len <= have) {
      if (len === have) {
        const chunk = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, have);
        this.parts = [];
        this.have = 0;
        return chunk;
      }
      // Only when a cut falls on the last byte of the previous reads (see the bridge above).
      const all = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, have);
      this.parts = [all.subarray(len)];
      this.have -= len;
      return all.subarray(0, len);
    }
    const fromRead = len - have;
    let chunk: Buffer;
    if (have === 0) {
      chunk = rd.subarray(off, off + fromRead);
    } else {
      this.parts.push(rd.subarray(off, off + fromRead));
      chunk = Buffer.concat(this.parts, len);
    }
    this.parts = [];
    this.have = 0;
    return chunk;
  }
}

/**
 * Cut a stream into content-defined chunks.
 *
 * Contract for `source`: it must not modify or reuse a buffer after yielding it (Node's
 * fs.createReadStream and FileHandle.readableWebStream are fine), because yielded chunks may be
 * views into those buffers. Yielded chunks are never modified by the chunker afterwards.
 * Empty buffers are allowed. Chunks are non-empty; all but the last are within [minSize, maxSize].
 *
 * @throws RangeError for invalid options (before reading anything); TypeError when the source
 *   yields something that is not a Uint8Array (e.g. a stream with an encoding set); whatever the
 *   source throws.
 */
export async function* chunkStream(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: ChunkerOptions,
): AsyncGenerator<Buffer, void, undefined> {
  const cutter = new StreamCutter(opts);
  for await (const item of source) {
    if (!(item instanceof Uint8Array)) {
      throw new TypeError('chunkStream: source must yield Buffers/Uint8Arrays (no encoding set)');
    }
    yield* cutter.push(asBuffer(item));
  }
  const last = cutter.end();
  if (last) yield last;
}
