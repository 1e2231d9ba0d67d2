/**
 * Worker threads that turn a range's ciphertext into verified chunks, and write the chunks that
 * are whole small files straight into the target.
 *
 * A range goes to a worker twice. `decrypt` authenticates and decrypts its age STREAM segments
 * in place (ChaCha20-Poly1305; a segment that is truncated or fails authentication is reported
 * and fails only the chunks with a byte in it). Then `run`, per batch of its frames: decompress
 * each frame, check its declared and actual size against the metadata and its SHA-256 against
 * the chunk id (src/blob/reader.ts decodeChunkInto) and, for the jobs that carry a `write`,
 * create the file and write it (see WholeFileWrite). The workers run decodeWorker.ts, which
 * calls the main thread's own functions for all of it.
 *
 * Why: a restore's main thread is CPU-bound (SQLite, planning, file-system calls). Profiled on a
 * 48,700-file, 2 GB restore before this design: the worker only decompressed and hashed and sat
 * idle 60% of the time while the main thread was busy 75% of it (decryption 0.4 s, 48,000
 * promise-based file creations through the thread pool ~1.5 s, and ~1.4 s of garbage collection
 * forced by a fresh buffer per range, per batch copy and per batch result).
 *
 * Contracts:
 * - No copies and no allocations per batch on the main thread: the range data and the outputs
 *   are views of SharedArrayBuffers (see SharedBuffers) that the caller owns and reuses; the
 *   worker decrypts the range in place, reads the frames from it and fills `out` (chunk k at
 *   the sum of the plain lengths before it). The caller must not touch either until the call
 *   settles.
 * - A worker that dies while writing a file can leave that file partly written: the restore
 *   then fails as a whole (exit code 1).
 * - A chunk that fails to decode comes back as an error message (the caller fails the files
 *   that need it); a write that fails comes back as `writeError` and the file is not there (the
 *   worker removes what it created); a worker that dies rejects its batches with a VaultikError
 *   and is replaced.
 * - Idle workers do not keep the process alive. After close() every call rejects.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ExitCode, VaultikError, errorMessage } from '../errors.js';
import { MAX_FRAME_CONTENT } from '../compress/zstd.js';
import { workerModule } from '../util/workerModule.js';
import type { BatchRequest, DecodeReply, DecodeRequest, DecryptRequest, SharedView, WholeFileWrite, WriteError } from './decodeWorker.js';

/** One frame of a batch: where it lies in the batch's plaintext, and what it must decode to. */
export interface BatchJob {
  /** Offset of the frame in `Batch.data`. */
  offset: number;
  length: number;
  plainLength: number;
  /** SHA-256 of the chunk plaintext. */
  id: Uint8Array;
  write?: WholeFileWrite;
}

export interface Batch {
  /** Decrypted frames (a view of a SharedArrayBuffer, e.g. a range after `decrypt`). */
  data: Buffer;
  jobs: readonly BatchJob[];
  /** Room for the sum of the jobs' plainLength (a view of a SharedArrayBuffer). */
  out: Buffer;
}

/** Per job: the verified chunk (a view of `out`), or why not; `written` when the worker wrote its file. */
export type BatchResult = { chunk: Buffer; written: boolean; writeError?: WriteError } | { error: string };

/** Segments of one age payload to decrypt in place. */
export interface DecryptJob {
  /** Ciphertext of whole segments firstSegment.. (a view of a SharedArrayBuffer). */
  data: Buffer;
  /** The STREAM key (secret). */
  key: Uint8Array;
  firstSegment: number;
  /** Index of the payload's last segment (its nonce carries the final flag). */
  finalSegment: number;
}

/** One frame to decode (the plaintext-frames convenience API). */
export interface DecodeJob {
  frame: Uint8Array;
  plainLength: number;
  /** SHA-256 of the chunk plaintext. */
  id: Buffer;
}

/** A decoded, verified chunk, or why it could not be decoded. */
export type DecodeResult = { chunk: Buffer } | { error: string };

interface Task {
  seq: number;
  onReply: (r: DecodeReply) => void;
  reject: (e: unknown) => void;
}

interface Slot {
  worker: Worker;
  inflight: Map<number, Task>;
  dead: boolean;
}

/** `parts` concatenated into a fresh SharedArrayBuffer (for `decode`, outside the engine's reused buffers). */
function sharedCopy(parts: readonly Uint8Array[]): Buffer {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const b = Buffer.from(new SharedArrayBuffer(Math.max(n, 1)), 0, n);
  let at = 0;
  for (const p of parts) {
    b.set(p, at);
    at += p.length;
  }
  return b;
}

/** A view of a SharedArrayBuffer, to pass to a worker without copying it. */
function shared(name: string, view: Buffer): SharedView {
  if (!(view.buffer instanceof SharedArrayBuffer)) throw new TypeError(`${name} must be a view of a SharedArrayBuffer`);
  return { sab: view.buffer, offset: view.byteOffset, length: view.length };
}


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
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  /**
   * Decrypts, decodes and verifies a batch on a worker, and writes the jobs that carry a
   * `write` (see the module comment).
   * @returns one result per job, in order; chunks are views of `batch.out`.
   * @throws VaultikError when the worker dies or the pool is closed, DATA for an impossible
   *   chunk length.
   */
  run(batch: Batch): Promise<BatchResult[]> {
    const n = batch.jobs.length;
    const offsets = new Array<number>(n);
    const lengths = new Array<number>(n);
    const plainLengths = new Array<number>(n);
    const writes = new Array<WholeFileWrite | null>(n);
    let total = 0;
    for (let i = 0; i < n; i++) {
      const j = batch.jobs[i]!;
      if (!Number.isSafeInteger(j.plainLength) || j.plainLength < 0 || j.plainLength > MAX_FRAME_CONTENT) {
        return Promise.reject(new VaultikError(`invalid chunk length ${j.plainLength}`, ExitCode.DATA));
      }
      offsets[i] = j.offset;
      lengths[i] = j.length;
      plainLengths[i] = j.plainLength;
      writes[i] = j.write ?? null;
      total += j.plainLength;
    }
    if (total > batch.out.length) return Promise.reject(new RangeError(`batch output needs ${total} bytes, has ${batch.out.length}`));
    const ids = new Uint8Array(32 * n);
    for (let i = 0; i < n; i++) ids.set(batch.jobs[i]!.id, 32 * i);
    const data = shared('data', batch.data);
    const out = batch.out;
    const outView = shared('out', out);
    const request = (seq: number): BatchRequest => ({ type: 'batch', seq, data, out: outView, ids: ids.buffer, offsets, lengths, plainLengths, writes });
    return this.send(request, (r, resolve: (v: BatchResult[]) => void, reject) => {
      if (!('errors' in r)) {
        reject(new VaultikError(`decode worker failed: ${'error' in r ? r.error : 'no batch results'}`, ExitCode.FAILURE));
        return;
      }
      let at = 0;
      resolve(
        plainLengths.map((len, i): BatchResult => {
          const chunk = out.subarray(at, at + len);
          at += len;
          const error = r.errors[i];
          if (error !== null && error !== undefined) return { error };
          const w = r.writes[i];
          if (w === true) return { chunk, written: true };
          if (w) return { chunk, written: false, writeError: w };
          return { chunk, written: false };
        }),
      );
    });
  }

  /**
   * Decrypts `job.data` in place on a worker: segment firstSegment + k's plaintext ends up at
   * k × 64 KiB, authenticated. A segment that is truncated, past the final one or fails
   * authentication leaves garbage in its slot and is reported.
   * @returns segment index → why it cannot be used (empty when all are good).
   * @throws VaultikError when the worker dies or the pool is closed.
   */
  decrypt(job: DecryptJob): Promise<Map<number, string>> {
    const data = shared('data', job.data);
    const request = (seq: number): DecryptRequest => ({ type: 'decrypt', seq, data, key: job.key, firstSegment: job.firstSegment, finalSegment: job.finalSegment });
    return this.send(request, (r, resolve: (v: Map<number, string>) => void, reject) => {
      if ('bad' in r) resolve(new Map(r.bad));
      else reject(new VaultikError(`decrypting failed: ${'error' in r ? r.error : 'no decrypt result'}`, ExitCode.FAILURE));
    });
  }

  private send<T>(request: (seq: number) => DecodeRequest, onReply: (r: DecodeReply, resolve: (v: T) => void, reject: (e: unknown) => void) => void): Promise<T> {
    if (this.closed) return Promise.reject(new VaultikError('decode pool is closed', ExitCode.FAILURE));
    if (this.deathsInARow >= 3) return Promise.reject(new VaultikError('decode workers keep dying', ExitCode.FAILURE));
    const slot = this.pick();
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      slot.inflight.set(seq, { seq, onReply: (r) => onReply(r, resolve, reject), reject });
      if (slot.inflight.size === 1) slot.worker.ref();
      slot.worker.postMessage(request(seq));
    });
  }

  /**
   * Decodes and verifies frames already in plaintext (copied once into shared memory).
   * @returns one result per job, in order.
   */
  async decode(jobs: readonly DecodeJob[]): Promise<DecodeResult[]> {
    const data = sharedCopy(jobs.map((j) => j.frame));
    const out = Buffer.from(new SharedArrayBuffer(Math.max(1, jobs.reduce((s, j) => s + Math.max(0, j.plainLength), 0))));
    let at = 0;
    const batchJobs = jobs.map((j) => {
      const job = { offset: at, length: j.frame.length, plainLength: j.plainLength, id: j.id };
      at += j.frame.length;
      return job;
    });
    const results = await this.run({ data, jobs: batchJobs, out });
    return results.map((r) => ('chunk' in r ? { chunk: r.chunk } : r));
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
    const worker = new Worker(workerModule(import.meta.url, 'decodeWorker'));
    const slot: Slot = { worker, inflight: new Map(), dead: false };
    worker.on('message', (r: DecodeReply) => {
      const t = slot.inflight.get(r.seq);
      if (!t) return;
      slot.inflight.delete(r.seq);
      if (slot.inflight.size === 0) worker.unref();
      this.deathsInARow = 0;
      t.onReply(r);
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
