/**
 * Worker threads that turn a batch of zstd frames (already decrypted and authenticated by age on
 * the main thread) into verified chunks: decompress each frame, check its declared and actual
 * size against the metadata, and its SHA-256 against the chunk id — exactly what
 * src/blob/reader.ts `decodeChunk` does on the main thread.
 *
 * Why: a restore's main thread is CPU-bound (SQLite, decryption, file-system calls); with
 * decompression and hashing there too, the second core sat idle. Profiled on a 46,000-file,
 * 1 GB restore, zstd + SHA-256 took about 1.2 s of main-thread time.
 *
 * Contracts:
 * - A batch is one message each way: its frames are copied once into a new buffer that is
 *   transferred to the worker, and all its chunks come back in one transferred buffer (views of
 *   it are returned). Memory per batch is its frames plus its chunks; the caller bounds batches.
 * - A chunk that fails to decode comes back as an error message (the caller fails the files
 *   that need it); a worker that dies rejects its batches with a VaultikError and is replaced.
 * - Idle workers do not keep the process alive. After close() every call rejects.
 *
 * The worker body is an eval'd CommonJS string for the reason given in src/compress/pool.ts: it
 * runs the same from the TypeScript sources under vitest and from dist/.
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { ExitCode, VaultikError, errorMessage } from '../errors.js';
import { MAX_FRAME_CONTENT } from '../compress/zstd.js';

/** One frame to decode. */
export interface DecodeJob {
  frame: Uint8Array;
  plainLength: number;
  /** SHA-256 of the chunk plaintext. */
  id: Buffer;
}

/** A decoded, verified chunk, or why it could not be decoded. */
export type DecodeResult = { chunk: Buffer } | { error: string };

const WORKER_SOURCE = String.raw`
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const zstd = require(workerData.bindingPath);
const dctx = new zstd.DCtx();
parentPort.on('message', (m) => {
  const frames = new Uint8Array(m.buf);
  const ids = Buffer.from(m.ids);
  let total = 0;
  for (const n of m.plainLengths) total += n;
  const out = new Uint8Array(new ArrayBuffer(total));
  const errors = [];
  let frameAt = 0;
  let outAt = 0;
  for (let k = 0; k < m.lengths.length; k++) {
    const j = { length: m.lengths[k], plainLength: m.plainLengths[k], id: ids.subarray(32 * k, 32 * k + 32) };
    const frame = frames.subarray(frameAt, frameAt + j.length);
    frameAt += j.length;
    const slot = out.subarray(outAt, outAt + j.plainLength);
    outAt += j.plainLength;
    try {
      let declared;
      let frameLength;
      try {
        declared = zstd.getFrameContentSize(frame);
        frameLength = zstd.findFrameCompressedSize(frame);
      } catch (err) {
        throw new Error('corrupt zstd frame: ' + err.message);
      }
      if (frameLength !== frame.length) throw new Error('corrupt zstd frame: ' + (frame.length - frameLength) + ' bytes after the end of the frame');
      if (declared === null) throw new Error('corrupt zstd frame: no content size in the frame header');
      if (declared !== j.plainLength) throw new Error('zstd frame holds ' + declared + ' bytes, expected ' + j.plainLength);
      if (declared > workerData.maxFrame) throw new Error('corrupt zstd frame: declares ' + declared + ' bytes, more than the ' + workerData.maxFrame + ' allowed');
      let n;
      try {
        n = dctx.decompress(slot, frame);
      } catch (err) {
        throw new Error('corrupt zstd frame: ' + err.message);
      }
      if (n !== declared) throw new Error('corrupt zstd frame: decompressed to ' + n + ' bytes, header says ' + declared);
      const id = createHash('sha256').update(slot).digest();
      if (!id.equals(j.id)) throw new Error('chunk has SHA-256 ' + id.toString('hex') + ', expected ' + Buffer.from(j.id).toString('hex'));
      errors.push(null);
    } catch (err) {
      errors.push(String(err && err.message ? err.message : err));
    }
  }
  parentPort.postMessage({ seq: m.seq, buf: out.buffer, errors }, [out.buffer]);
});
`;

interface Reply {
  seq: number;
  buf: ArrayBuffer;
  errors: (string | null)[];
}

interface Task {
  seq: number;
  lengths: number[];
  resolve: (r: DecodeResult[]) => void;
  reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  inflight: Map<number, Task>;
  dead: boolean;
}

let bindingPath: string | undefined;

export class DecodePool {
  private readonly slots: Slot[] = [];
  private seq = 0;
  private next = 0;
  private closed = false;
  /** Worker deaths with no batch completed in between: workers that die on arrival break the pool. */
  private deathsInARow = 0;

  /**
   * @param size workers; default one per core but the main thread's. Measured on 2 cores (a
   *   46,000-file, 1 GB restore): 1 worker used the same CPU and wall time as 2, and each extra
   *   worker (its own V8 heap) added about 40 MB to the peak RSS.
   */
  constructor(readonly size = Math.max(1, availableParallelism() - 1)) {
    bindingPath ??= createRequire(import.meta.url).resolve('zstd-napi/binding.js');
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  /**
   * Decodes and verifies a batch of frames on a worker.
   * @returns one result per job, in order; chunks are views of one buffer owned by the caller.
   * @throws VaultikError when the worker dies or the pool is closed.
   */
  decode(jobs: readonly DecodeJob[]): Promise<DecodeResult[]> {
    if (this.closed) return Promise.reject(new VaultikError('decode pool is closed', ExitCode.FAILURE));
    if (this.deathsInARow >= 3) return Promise.reject(new VaultikError('decode workers keep dying', ExitCode.FAILURE));
    let frameBytes = 0;
    for (const j of jobs) {
      if (!Number.isSafeInteger(j.plainLength) || j.plainLength < 0 || j.plainLength > MAX_FRAME_CONTENT) {
        return Promise.reject(new VaultikError(`invalid chunk length ${j.plainLength}`, ExitCode.DATA));
      }
      frameBytes += j.frame.length;
    }
    // One copy of the frames: they are views of a range's plaintext, which stays on this thread.
    const buf = new Uint8Array(new ArrayBuffer(frameBytes));
    let at = 0;
    for (const j of jobs) {
      buf.set(j.frame, at);
      at += j.frame.length;
    }
    const slot = this.pick();
    const seq = ++this.seq;
    return new Promise<DecodeResult[]>((resolve, reject) => {
      slot.inflight.set(seq, { seq, lengths: jobs.map((j) => j.plainLength), resolve, reject });
      if (slot.inflight.size === 1) slot.worker.ref();
      // Ids travel packed in one buffer: a Buffer id is often a view into an 8 KiB pool slab,
      // and structured clone would copy the whole slab for each one.
      const ids = new Uint8Array(new ArrayBuffer(32 * jobs.length));
      jobs.forEach((j, i) => ids.set(j.id, 32 * i));
      slot.worker.postMessage(
        { seq, buf: buf.buffer, ids: ids.buffer, lengths: jobs.map((j) => j.frame.length), plainLengths: jobs.map((j) => j.plainLength) },
        [buf.buffer, ids.buffer],
      );
    });
  }

  /** Stops the workers; pending calls reject. */
  async close(): Promise<void> {
    this.closed = true;
    const err = new VaultikError('decode pool is closed', ExitCode.FAILURE);
    await Promise.all(
      this.slots.map(async (s) => {
        s.dead = true;
        for (const t of s.inflight.values()) t.reject(err);
        s.inflight.clear();
        await s.worker.terminate();
      }),
    );
  }

  /** The live worker with the fewest batches in flight (round robin among equals). */
  private pick(): Slot {
    let best: Slot | undefined;
    for (let i = 0; i < this.slots.length; i++) {
      const s = this.slots[(this.next + i) % this.slots.length]!;
      if (!best || s.inflight.size < best.inflight.size) best = s;
    }
    this.next = (this.next + 1) % this.slots.length;
    return best!;
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { bindingPath, maxFrame: MAX_FRAME_CONTENT } });
    const slot: Slot = { worker, inflight: new Map(), dead: false };
    worker.on('message', (r: Reply) => {
      const t = slot.inflight.get(r.seq);
      if (!t) return;
      slot.inflight.delete(r.seq);
      if (slot.inflight.size === 0) worker.unref();
      this.deathsInARow = 0;
      const out = Buffer.from(r.buf);
      let at = 0;
      t.resolve(
        t.lengths.map((n, i) => {
          const chunk = out.subarray(at, at + n);
          at += n;
          const error = r.errors[i];
          return error === null || error === undefined ? { chunk } : { error };
        }),
      );
    });
    const die = (why: string, cause?: unknown): void => {
      if (slot.dead) return;
      slot.dead = true;
      const err = new VaultikError(`decode worker died: ${why}`, ExitCode.FAILURE, cause === undefined ? undefined : { cause });
      for (const t of slot.inflight.values()) t.reject(err);
      slot.inflight.clear();
      void worker.terminate();
      if (this.closed || ++this.deathsInARow >= 3) return;
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots[i] = this.spawn();
    };
    worker.on('error', (err) => die(errorMessage(err), err));
    worker.on('messageerror', (err) => die(errorMessage(err), err));
    worker.on('exit', (code) => die(`exited with code ${code}`));
    worker.unref();
    return slot;
  }
}
