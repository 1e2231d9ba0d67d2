/**
 * Streaming FastCDC: cuts an async stream of buffers into the same chunks chunkBuffer() finds on
 * the concatenated data, for a file of any size.
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
import { resolveChunker, scanPairs, type ChunkerOptions, type ScanState } from './fastcdc.js';

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
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
  const r = resolveChunker(opts);
  const firstPair = r.minSize >>> 1;
  const centerPairs = r.avgSize >>> 1;
  const pairLimit = r.maxSize >>> 1;

  // The current chunk's bytes that came from earlier reads, in order (views), and their total.
  let parts: Buffer[] = [];
  let have = 0;
  // Next pair to hash (chunk-relative pair index) and the rolling hash so far.
  let pair = firstPair;
  const st: ScanState = { lo: 0, hi: 0 };
  // A Buffer like the reads, so scanPairs sees one array type (keeps its element loads monomorphic).
  const bridge = Buffer.alloc(2);

  /** Removes the first `len` bytes of (parts ++ rd[off..]) and returns them as one Buffer. */
  const take = (rd: Buffer, off: number, len: number): { chunk: Buffer; off: number } => {
    if (len === have) {
      const chunk = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
      parts = [];
      have = 0;
      return { chunk, off };
    }
    if (len < have) {
      // Only when a cut falls on the last byte of the previous reads (see the bridge below).
      const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
      parts = [all.subarray(len)];
      have -= len;
      return { chunk: all.subarray(0, len), off };
    }
    const fromRead = len - have;
    let chunk: Buffer;
    if (have === 0) {
      chunk = rd.subarray(off, off + fromRead);
    } else {
      parts.push(rd.subarray(off, off + fromRead));
      chunk = Buffer.concat(parts, len);
    }
    parts = [];
    have = 0;
    return { chunk, off: off + fromRead };
  };

  for await (const item of source) {
    if (!(item instanceof Uint8Array)) {
      throw new TypeError('chunkStream: source must yield Buffers/Uint8Arrays (no encoding set)');
    }
    const rd = asBuffer(item);
    let off = 0;
    while (off < rd.length) {
      // Chunk-relative position p is rd[base + p] for p >= have.
      const total = have + (rd.length - off);
      const base = off - have;
      let cut = -1;
      if (pair < pairLimit && 2 * pair === have - 1) {
        // The pair straddles the previous read and this one: hash it from a 2-byte bridge.
        const prev = parts[parts.length - 1]!;
        bridge[0] = prev[prev.length - 1]!;
        bridge[1] = rd[off]!;
        cut = scanPairs(bridge, -2 * pair, pair, pair + 1, r, pair < centerPairs, st);
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
        parts.push(rest);
        have = total;
        break;
      }
      const t = take(rd, off, cut);
      off = t.off;
      pair = firstPair;
      st.lo = 0;
      st.hi = 0;
      yield t.chunk;
    }
  }
  if (have > 0) yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
}
