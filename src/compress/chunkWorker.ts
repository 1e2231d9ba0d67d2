/**
 * The chunk pool's worker thread (see pool.ts): hashes and compresses chunks with the same
 * compressFrame() the main thread uses, and cuts large files with the same StreamCutter that
 * chunkStream() runs. Each request gets one reply, in order, except `drop`.
 */
import { createHash } from 'node:crypto';
import { isMarkedAsUntransferable, parentPort } from 'node:worker_threads';
import { StreamCutter } from '../chunker/stream.js';
import type { ChunkerOptions } from '../chunker/fastcdc.js';
import { errorMessage } from '../errors.js';
import { ownArrayBuffer } from './transfer.js';
import { compressFrame } from './zstd.js';

/** A chunk (`process`: id and frame; `compress`: frame only) or a batch of them (`lens` splits `buf`). */
export type ChunkTask =
  | { seq: number; op: 'process' | 'compress'; level: number; buf: ArrayBuffer; len: number }
  | { seq: number; op: 'batch'; level: number; buf: ArrayBuffer; len: number; lens: number[] };

/**
 * The next read of a stream being cut (ChunkPool.cutStream): its first message carries the
 * chunker options, its last `end`.
 */
export interface CutRequest {
  seq: number;
  op: 'cut';
  stream: number;
  chunker?: ChunkerOptions;
  buf?: ArrayBuffer;
  len?: number;
  end?: boolean;
}

/** Forget a stream's cutter (its consumer stopped early). No reply. */
export interface DropRequest {
  op: 'drop';
  stream: number;
}

export type ChunkRequest = ChunkTask | CutRequest | DropRequest;

export interface ChunkReply {
  seq: number;
  /** process, batch: the chunks' SHA-256 ids, 32 bytes each, in order. */
  ids?: ArrayBuffer;
  /** process, compress: the frame at frameOff, frameLen bytes; batch: the frames one after the other. */
  frame?: ArrayBuffer;
  frameOff?: number;
  frameLen?: number;
  /** batch: each chunk's frame length, in order. */
  frameLens?: number[];
  /** cut: the chunks the read completed, each in an ArrayBuffer of exactly its size. */
  chunks?: ArrayBuffer[];
  error?: string;
}

const port = parentPort;
if (!port) throw new Error('chunkWorker runs as a worker thread of a ChunkPool');

const cutters = new Map<number, StreamCutter>();

/**
 * Hands the frame's buffer over: compressFrame allocates one per call, but small ones come from
 * Node's shared pool slab (up to 4 KiB on Node 22, 32 KiB on 24), which Node marks untransferable
 * (transferring it would detach every other Buffer in it): those are copied.
 */
function frameReply(reply: ChunkReply, transfer: ArrayBuffer[], frame: Buffer): void {
  const own: Uint8Array = isMarkedAsUntransferable(frame.buffer) ? new Uint8Array(frame) : frame;
  reply.frame = own.buffer as ArrayBuffer;
  reply.frameOff = own.byteOffset;
  reply.frameLen = own.byteLength;
  transfer.push(reply.frame);
}

function handle(m: ChunkTask | CutRequest, reply: ChunkReply, transfer: ArrayBuffer[]): void {
  if (m.op === 'cut') {
    let cutter = cutters.get(m.stream);
    if (!cutter) {
      if (!m.chunker) throw new Error(`no cutter for stream ${m.stream}`);
      cutter = new StreamCutter(m.chunker);
      cutters.set(m.stream, cutter);
    }
    const chunks = m.buf ? cutter.push(Buffer.from(m.buf, 0, m.len)) : [];
    if (m.end) {
      const last = cutter.end();
      if (last) chunks.push(last);
      cutters.delete(m.stream);
    }
    // A chunk the cutter assembled is its own buffer already; a view into a read is copied.
    reply.chunks = chunks.map(ownArrayBuffer);
    transfer.push(...reply.chunks);
    return;
  }
  const data = Buffer.from(m.buf, 0, m.len);
  if (m.op === 'batch') {
    const n = m.lens.length;
    const ids = Buffer.allocUnsafeSlow(32 * n);
    const frames: Buffer[] = [];
    const frameLens = new Array<number>(n);
    for (let i = 0, off = 0; i < n; off += m.lens[i]!, i++) {
      const chunk = data.subarray(off, off + m.lens[i]!);
      createHash('sha256').update(chunk).digest().copy(ids, 32 * i);
      const f = compressFrame(chunk, m.level);
      frames.push(f);
      frameLens[i] = f.length;
    }
    // Buffer.concat of a batch's frames may land in the pool slab: one allocation of our own instead.
    const all = Buffer.allocUnsafeSlow(frameLens.reduce((a, b) => a + b, 0));
    for (let i = 0, off = 0; i < n; off += frameLens[i]!, i++) frames[i]!.copy(all, off);
    reply.ids = ids.buffer as ArrayBuffer;
    reply.frame = all.buffer as ArrayBuffer;
    reply.frameLens = frameLens;
    transfer.push(reply.ids, reply.frame);
    return;
  }
  if (m.op === 'process') {
    const id = Buffer.allocUnsafeSlow(32);
    createHash('sha256').update(data).digest().copy(id);
    reply.ids = id.buffer as ArrayBuffer;
    transfer.push(reply.ids);
  }
  frameReply(reply, transfer, compressFrame(data, m.level));
}

port.on('message', (m: ChunkRequest) => {
  if (m.op === 'drop') {
    cutters.delete(m.stream);
    return;
  }
  const reply: ChunkReply = { seq: m.seq };
  const transfer: ArrayBuffer[] = [];
  try {
    handle(m, reply, transfer);
  } catch (err) {
    reply.error = err instanceof Error && err.stack !== undefined ? err.stack : errorMessage(err);
    transfer.length = 0;
  }
  port.postMessage(reply, transfer);
});
