/**
 * Worker threads that turn a range's ciphertext into verified chunks, and write the chunks that
 * are whole small files straight into the target.
 *
 * A range goes to a worker twice. `decrypt` authenticates and decrypts its age STREAM segments
 * in place (ChaCha20-Poly1305; a segment that is truncated or fails authentication is reported
 * and fails only the chunks with a byte in it). Then `run`, per batch of its frames: decompress
 * each frame, check its declared and actual size against the metadata and its SHA-256 against
 * the chunk id — what src/blob/reader.ts `decodeChunk` does on the main thread — and, for the
 * jobs that carry a `write`, create the file and write it (see WholeFileWrite).
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
 *
 * The worker body is an eval'd CommonJS string for the reason given in src/compress/pool.ts: it
 * runs the same from the TypeScript sources under vitest and from dist/.
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { constants } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ExitCode, VaultikError, errorMessage } from '../errors.js';
import { MAX_FRAME_CONTENT } from '../compress/zstd.js';
import { SEGMENT_CIPHER_SIZE, SEGMENT_SIZE } from '../crypto/index.js';

/**
 * A chunk that is the whole content of a small regular file: the worker creates the file as
 * TargetWriter.writeWholeFile does — `/proc/self/fd/<dirFd>/<name>` with
 * O_CREAT|O_EXCL|O_NOFOLLOW, so the name is looked up in the directory the main thread opened
 * and verified and never through a symlink — writes it (an all-zero chunk of at least
 * `holeMin` bytes becomes a hole), then owner (with `owners`), mode and times through the
 * descriptor. Unlike writeWholeFile it creates the file with its permission bits rather than
 * 0600 (the content is written right away, so nothing is exposed that the final mode does not
 * expose), and skips fchown/fchmod when the new file already has the owner and mode. The
 * caller keeps `dirFd` open until the batch settles.
 */
export interface WholeFileWrite {
  dirFd: number;
  /** The final path component, as a latin1 string (one char per byte: any name round-trips). */
  name: string;
  mode: number;
  uid: number;
  gid: number;
  owners: boolean;
  /** utimesSeconds(mtimeNs), for atime and mtime. */
  time: number;
  holeMin: number;
}

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
export type BatchResult =
  | { chunk: Buffer; written: boolean; writeError?: { code: string | undefined; message: string } }
  | { error: string };

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

const WORKER_SOURCE = String.raw`
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { createHash, createDecipheriv } = require('node:crypto');
const fs = require('node:fs');
const zstd = require(workerData.bindingPath);
const dctx = new zstd.DCtx();
const SEG = workerData.segmentSize;
const SEGC = workerData.segmentCipherSize;
const TAG = SEGC - SEG;
const CREATE = workerData.createFlags;
const nonce = Buffer.alloc(12);

function isZero(b) {
  if (b.length === 0 || b[0] !== 0 || b[b.length - 1] !== 0) return b.length === 0;
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

// Decrypts the segments of m.data in place: segment i's plaintext goes to (i - first) * SEG,
// never past where its ciphertext started, and each segment is read whole before anything is
// written, so the walk forward never overwrites ciphertext it still needs. Returns
// [segment, message] for the segments that cannot be used (the checks of decryptSegments).
function decrypt(m) {
  const data = Buffer.from(m.data, m.dataOffset, m.dataLength);
  const bad = [];
  const count = Math.ceil(data.length / SEGC);
  for (let k = 0; k < count; k++) {
    const index = m.firstSegment + k;
    const pos = k * SEGC;
    const end = Math.min(data.length, pos + SEGC);
    const final = index === m.finalSegment;
    if (index > m.finalSegment || (!final && end - pos !== SEGC)) {
      bad.push([index, 'age segment ' + index + ' is truncated or lies past the final segment']);
      continue;
    }
    if (final && end - pos === TAG && index > 0) {
      bad.push([index, 'age final segment is empty']);
      continue;
    }
    if (end - pos < TAG) {
      bad.push([index, 'age segment ' + index + ' failed authentication (corrupted data)']);
      continue;
    }
    nonce.fill(0, 0, 5);
    nonce.writeUIntBE(index, 5, 6);
    nonce[11] = final ? 1 : 0;
    const d = createDecipheriv('chacha20-poly1305', m.key, nonce, { authTagLength: TAG });
    d.setAuthTag(data.subarray(end - TAG, end));
    const pt = d.update(data.subarray(pos, end - TAG));
    try {
      d.final();
    } catch {
      bad.push([index, 'age segment ' + index + ' failed authentication (corrupted data)']);
      continue;
    }
    pt.copy(data, k * SEG);
  }
  return bad;
}

function writeFile(w, data) {
  const p = Buffer.concat([Buffer.from('/proc/self/fd/' + w.dirFd + '/'), Buffer.from(w.name, 'latin1')]);
  let fd;
  let st;
  try {
    // Created with its permission bits (the umask may take some away): most files then need
    // neither fchmod nor fchown, two of the seven calls per file.
    fd = fs.openSync(p, CREATE, w.mode & 0o777);
    st = fs.fstatSync(fd);
    if (data.length >= w.holeMin && isZero(data)) {
      fs.ftruncateSync(fd, data.length);
    } else {
      for (let done = 0; done < data.length; ) done += fs.writeSync(fd, data, done, data.length - done, done);
    }
    // Owner, then mode (chown clears setuid bits), then times.
    if (w.owners && (st.uid !== w.uid || st.gid !== w.gid)) {
      fs.fchownSync(fd, w.uid, w.gid);
      fs.fchmodSync(fd, w.mode);
    } else if ((st.mode & 0o7777) !== w.mode) {
      fs.fchmodSync(fd, w.mode);
    }
    fs.futimesSync(fd, w.time, w.time);
    const closing = fd;
    fd = undefined;
    fs.closeSync(closing);
    return null;
  } catch (err) {
    if (fd !== undefined) {
      try { fs.closeSync(fd); } catch {}
    }
    if (st) {
      try {
        const now = fs.lstatSync(p);
        if (now.ino === st.ino && now.dev === st.dev) fs.unlinkSync(p);
      } catch {}
    }
    return { code: err && err.code, message: String(err && err.message ? err.message : err) };
  }
}

parentPort.on('message', (m) => {
  if (m.type === 'decrypt') {
    let bad;
    try {
      bad = decrypt(m);
    } catch (err) {
      parentPort.postMessage({ seq: m.seq, error: String(err && err.message ? err.message : err) });
      return;
    }
    parentPort.postMessage({ seq: m.seq, bad });
    return;
  }
  const src = Buffer.from(m.data, m.dataOffset, m.dataLength);
  const out = Buffer.from(m.out, m.outOffset, m.outLength);
  const ids = Buffer.from(m.ids);
  const n = m.plainLengths.length;
  const errors = [];
  const writes = [];
  let outAt = 0;
  for (let k = 0; k < n; k++) {
    const offset = m.offsets[k];
    const length = m.lengths[k];
    const plainLength = m.plainLengths[k];
    const slot = out.subarray(outAt, outAt + plainLength);
    outAt += plainLength;
    writes.push(null);
    try {
      if (offset < 0 || offset + length > src.length) throw new Error('frame at ' + offset + ' lies outside the decrypted range');
      const frame = src.subarray(offset, offset + length);
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
      if (declared !== plainLength) throw new Error('zstd frame holds ' + declared + ' bytes, expected ' + plainLength);
      if (declared > workerData.maxFrame) throw new Error('corrupt zstd frame: declares ' + declared + ' bytes, more than the ' + workerData.maxFrame + ' allowed');
      let got;
      try {
        got = dctx.decompress(slot, frame);
      } catch (err) {
        throw new Error('corrupt zstd frame: ' + err.message);
      }
      if (got !== declared) throw new Error('corrupt zstd frame: decompressed to ' + got + ' bytes, header says ' + declared);
      const id = createHash('sha256').update(slot).digest();
      const want = ids.subarray(32 * k, 32 * k + 32);
      if (!id.equals(want)) throw new Error('chunk has SHA-256 ' + id.toString('hex') + ', expected ' + want.toString('hex'));
      errors.push(null);
    } catch (err) {
      errors.push(String(err && err.message ? err.message : err));
      continue;
    }
    const w = m.writes[k];
    if (w) writes[k] = writeFile(w, slot) || true;
  }
  parentPort.postMessage({ seq: m.seq, errors, writes });
});
`;

interface Reply {
  seq: number;
  /** A decrypt reply: unusable segments and why. */
  bad?: [number, string][];
  /** A decrypt that threw. */
  error?: string;
  errors: (string | null)[];
  /** Per job: null (not asked to write), true (written) or the write's error. */
  writes: (null | true | { code: string | undefined; message: string })[];
}

interface Task {
  seq: number;
  onReply: (r: Reply) => void;
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

/** The fields that pass a view of a SharedArrayBuffer to a worker without copying it. */
function shared(name: string, view: Buffer): Record<string, unknown> {
  if (!(view.buffer instanceof SharedArrayBuffer)) throw new TypeError(`${name} must be a view of a SharedArrayBuffer`);
  return { [name]: view.buffer, [`${name}Offset`]: view.byteOffset, [`${name}Length`]: view.length };
}

let bindingPath: string | undefined;

/** As TargetWriter's createFile: a new name only, never through a final symlink. */
const CREATE_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

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
    // Ids travel packed in one small buffer: a Buffer id is often a view into an 8 KiB pool
    // slab, and structured clone would copy the whole slab for each one.
    const ids = new Uint8Array(32 * n);
    for (let i = 0; i < n; i++) ids.set(batch.jobs[i]!.id, 32 * i);
    const message = {
      ...shared('data', batch.data),
      ...shared('out', batch.out),
      ids: ids.buffer,
      offsets,
      lengths,
      plainLengths,
      writes,
    };
    const out = batch.out;
    return this.send(message, (r, resolve: (v: BatchResult[]) => void) => {
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
    const message = { type: 'decrypt', ...shared('data', job.data), key: job.key, firstSegment: job.firstSegment, finalSegment: job.finalSegment };
    return this.send(message, (r, resolve: (v: Map<number, string>) => void, reject) => {
      if (r.error !== undefined) reject(new VaultikError(`decrypting failed: ${r.error}`, ExitCode.FAILURE));
      else resolve(new Map(r.bad ?? []));
    });
  }

  private send<T>(message: object, onReply: (r: Reply, resolve: (v: T) => void, reject: (e: unknown) => void) => void): Promise<T> {
    if (this.closed) return Promise.reject(new VaultikError('decode pool is closed', ExitCode.FAILURE));
    if (this.deathsInARow >= 3) return Promise.reject(new VaultikError('decode workers keep dying', ExitCode.FAILURE));
    const slot = this.pick();
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      slot.inflight.set(seq, { seq, onReply: (r) => onReply(r, resolve, reject), reject });
      if (slot.inflight.size === 1) slot.worker.ref();
      slot.worker.postMessage({ ...message, seq });
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
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { bindingPath, maxFrame: MAX_FRAME_CONTENT, segmentSize: SEGMENT_SIZE, segmentCipherSize: SEGMENT_CIPHER_SIZE, createFlags: CREATE_FILE },
    });
    const slot: Slot = { worker, inflight: new Map(), dead: false };
    worker.on('message', (r: Reply) => {
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
