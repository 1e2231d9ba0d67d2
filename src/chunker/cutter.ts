/**
 * A streaming FastCDC cutter that copies each chunk into its own exact-size buffer: what the
 * chunk pool's workers run to chunk a large file off the main thread (ChunkPool.cutStream). It
 * finds the same cuts as chunkStream() and chunkBuffer() (same algorithm, same scanPairs); it
 * differs only in always copying, so every chunk owns its ArrayBuffer and can be transferred.
 *
 * Self-contained on purpose: the pool's worker body is an eval'd string (see src/compress/pool.ts),
 * so the worker builds this function from its source text (Function.prototype.toString). Its body
 * may refer to nothing but its parameters and JavaScript built-ins; `scan` is scanPairs, rebuilt
 * the same way with the constants it uses (see cutterSource()).
 */
import { HI_MASK, LO_BITS, LO_MASK, scanPairs, type ResolvedChunker, type ScanState } from './fastcdc.js';

/** The numbers of a ResolvedChunker that the cutter needs (structured-clonable, no BigInt). */
export type CutterParams = Pick<
  ResolvedChunker,
  'minSize' | 'avgSize' | 'maxSize' | 'gLo' | 'gHi' | 'lsLo' | 'lsHi' | 'sLo' | 'sHi' | 'sLsLo' | 'sLsHi' | 'lLo' | 'lHi' | 'lLsLo' | 'lLsHi'
>;

export interface Cutter {
  /** Feeds the next read; returns the chunks it completes, in order (each its own ArrayBuffer). */
  push(rd: Uint8Array): Uint8Array[];
  /** The last chunk (the bytes after the last cut), if any. The cutter is spent afterwards. */
  end(): Uint8Array | undefined;
}

export function cutterParams(r: ResolvedChunker): CutterParams {
  const { minSize, avgSize, maxSize, gLo, gHi, lsLo, lsHi, sLo, sHi, sLsLo, sLsHi, lLo, lHi, lLsLo, lLsHi } = r;
  return { minSize, avgSize, maxSize, gLo, gHi, lsLo, lsHi, sLo, sHi, sLsLo, sLsHi, lLo, lHi, lLsLo, lLsHi };
}

/**
 * The streaming loop of chunkStream (see stream.ts for why it equals the one-shot cut), with the
 * chunk's earlier bytes kept as views of earlier reads and copied out once the cut is known.
 */
export function createCutter(r: CutterParams, scan: typeof scanPairs): Cutter {
  const firstPair = r.minSize >>> 1;
  const centerPairs = r.avgSize >>> 1;
  const pairLimit = r.maxSize >>> 1;
  let parts: Uint8Array[] = [];
  let have = 0;
  let pair = firstPair;
  const st: ScanState = { lo: 0, hi: 0 };
  const bridge = new Uint8Array(2);
  const res = r as ResolvedChunker;

  /** The first `len` bytes of (parts ++ rd[off..]) in a new buffer; the rest stays. */
  const take = (rd: Uint8Array, off: number, len: number): { chunk: Uint8Array; off: number } => {
    const chunk = new Uint8Array(len);
    let at = 0;
    let i = 0;
    while (i < parts.length && at < len) {
      const p = parts[i]!;
      const n = Math.min(p.length, len - at);
      chunk.set(n === p.length ? p : p.subarray(0, n), at);
      at += n;
      if (n < p.length) {
        parts[i] = p.subarray(n);
        break;
      }
      i++;
    }
    if (i < parts.length) {
      // The cut falls inside the earlier reads (only on their last byte: the bridge pair).
      parts = parts.slice(i);
      have -= len;
      return { chunk, off };
    }
    const fromRead = len - at;
    if (fromRead > 0) chunk.set(rd.subarray(off, off + fromRead), at);
    parts = [];
    have = 0;
    return { chunk, off: off + fromRead };
  };

  return {
    push(rd: Uint8Array): Uint8Array[] {
      const out: Uint8Array[] = [];
      let off = 0;
      while (off < rd.length) {
        const total = have + (rd.length - off);
        const base = off - have;
        let cut = -1;
        if (pair < pairLimit && 2 * pair === have - 1) {
          const prev = parts[parts.length - 1]!;
          bridge[0] = prev[prev.length - 1]!;
          bridge[1] = rd[off]!;
          cut = scan(bridge, -2 * pair, pair, pair + 1, res, pair < centerPairs, st);
          pair++;
        }
        if (cut < 0 && pair < pairLimit) {
          const end = Math.min(pairLimit, total >>> 1);
          if (pair < centerPairs) {
            const to = Math.min(end, centerPairs);
            cut = scan(rd, base, pair, to, res, true, st);
            if (cut < 0) pair = Math.max(pair, to);
          }
          if (cut < 0 && pair < end) {
            cut = scan(rd, base, pair, end, res, false, st);
            if (cut < 0) pair = end;
          }
        }
        if (cut < 0 && pair >= pairLimit && total >= r.maxSize) cut = r.maxSize;
        if (cut < 0) {
          parts.push(rd.subarray(off));
          have = total;
          break;
        }
        const t = take(rd, off, cut);
        off = t.off;
        pair = firstPair;
        st.lo = 0;
        st.hi = 0;
        out.push(t.chunk);
      }
      return out;
    },
    end(): Uint8Array | undefined {
      if (have === 0) return undefined;
      const chunk = new Uint8Array(have);
      let at = 0;
      for (const p of parts) {
        chunk.set(p, at);
        at += p.length;
      }
      parts = [];
      have = 0;
      return chunk;
    },
  };
}

/**
 * JavaScript source of an expression that evaluates to `(params) => Cutter` on its own (no
 * imports): scanPairs with its constants, then createCutter bound to it.
 */
export function cutterSource(): string {
  return (
    `(() => { const LO_BITS = ${LO_BITS}, LO_MASK = ${LO_MASK}, HI_MASK = ${HI_MASK};\n` +
    `const scanPairs = (${scanPairs.toString()});\n` +
    `const createCutter = (${createCutter.toString()});\n` +
    `return (params) => createCutter(params, scanPairs); })()`
  );
}
