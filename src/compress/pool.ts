/**
 * A worker-thread pool that turns chunks into (SHA-256 id, zstd frame) so hashing and
 * compression use every core while the main thread reads, encrypts and uploads. It also runs
 * FastCDC on streams (cutStream: a large file's reads go to one worker, which sends back its
 * chunks) so the main thread only routes bytes.
 *
 * Contracts:
 * - Results are exactly what the main thread would produce: the workers run chunkWorker.ts,
 *   which calls the same compressFrame() (src/compress/zstd.ts) and, for cutStream(), the same
 *   StreamCutter as chunkStream().
 * - Memory is bounded: at most `size * IN_FLIGHT_PER_WORKER` chunks are inside workers and at
 *   most `maxQueued` wait for one; a call beyond that waits (before taking a copy of its chunk)
 *   until there is room. Callers that await each call therefore hold a bounded number of
 *   chunks. (A caller that fires unbounded calls without awaiting keeps its own chunks alive;
 *   that is the caller's memory, not the pool's.) processBatched() copies small chunks into one
 *   open batch of at most BATCH_BYTES; a sent batch counts as one task.
 *   cutStream() keeps at most CUT_AHEAD reads in flight to its worker, which holds them and the
 *   bytes of the chunk being cut (< maxSize); those messages do not take task places.
 * - A task fails (its promise rejects with a VaultikError) when the worker reports an error or
 *   dies; a dead worker is replaced, so the pool keeps working. After close() every pending and
 *   later call rejects.
 *
 * Data moves by transfer, not copy, where that is safe: frames come back as transferred
 * ArrayBuffers (allocated by the worker for this one result); an input chunk is transferred only
 * when the caller allows it and the Buffer owns its whole ArrayBuffer (never a view into a read
 * buffer or Node's shared pool slab); otherwise exactly its bytes are copied once.
 *
 * How the backup engine (src/backup/engine.ts) uses it: large files are cut by cutStream(); the
 * chunks of a new file go through processBatched() (hashed and compressed in a worker, small
 * ones batched, larger ones alone through process()); a changed file's chunks are hashed on the
 * main thread and looked up first, so that only new ones are compressed (compress()).
 */
import { availableParallelism } from 'node:os';
import { Worker, type ResourceLimits } from 'node:worker_threads';
import { ExitCode, VaultikError, errorMessage } from '../errors.js';
import { resolveChunker, type ChunkerOptions } from '../chunker/fastcdc.js';
import { workerModule } from '../util/workerModule.js';
import type { ChunkReply, ChunkRequest, ChunkTask, CutRequest } from './chunkWorker.js';
import { copyToArrayBuffer, ownArrayBuffer } from './transfer.js';
import { DEFAULT_COMPRESSION_LEVEL, checkCompressionLevel } from './zstd.js';

/** A chunk's id (SHA-256 of the plaintext) and its zstd frame. */
export interface ChunkResult {
  /** SHA-256 of the plaintext, 32 bytes. */
  readonly id: Buffer;
  /** One zstd frame (content size and checksum set) holding the plaintext. */
  readonly frame: Buffer;
  readonly plainLength: number;
}

export interface ChunkPoolOptions {
  /** Worker threads; default os.availableParallelism(). */
  readonly size?: number;
  /** zstd level for every frame; default 3. */
  readonly level?: number;
  /** Chunks allowed to wait for a worker beyond those in workers; default `size`. */
  readonly maxQueued?: number;
  /** Passed to each Worker (e.g. to cap its heap). */
  readonly resourceLimits?: ResourceLimits;
}

export interface SubmitOptions {
  /**
   * Hand the chunk's memory to the worker instead of copying it. Only honoured when the Buffer
   * spans its whole ArrayBuffer; the caller's Buffer is then detached (length 0) on return.
   */
  readonly transfer?: boolean;
}

/**
 * Tasks a worker may hold at once: one running, one queued, so it never idles for a message round
 * trip between tasks. Measured on 2 cores: with 64 KiB chunks 1 leaves workers idle ~30% of the
 * time; with 10 MB chunks 2 costs nothing as long as chunks keep coming.
 */
export const IN_FLIGHT_PER_WORKER = 2;

/** cutStream(): reads sent to the cutting worker before waiting for its first answer. */
const CUT_AHEAD = 4;

interface Task {
  readonly message: ChunkTask;
  readonly resolve: (r: ChunkReply) => void;
  readonly reject: (e: Error) => void;
}

interface Slot {
  readonly worker: Worker;
  readonly inflight: Map<number, Task>;
  /** cutStream() messages awaiting their reply (not counted against IN_FLIGHT_PER_WORKER). */
  readonly cuts: Map<number, { resolve: (r: ChunkReply) => void; reject: (e: Error) => void }>;
  /** cutStream() streams whose cutter lives in this worker. */
  streams: number;
  dead: boolean;
}

/** processBatched(): a batch is sent once it holds this many bytes or chunks. */
export const BATCH_BYTES = 1024 * 1024;
export const BATCH_COUNT = 512;
/** processBatched() sends chunks larger than this on their own (process()). */
export const BATCH_MAX_CHUNK = 256 * 1024;

interface OpenBatch {
  readonly buf: Buffer;
  bytes: number;
  readonly lens: number[];
  readonly members: { resolve: (r: ChunkResult) => void; reject: (e: unknown) => void }[];
}

/** A chunk's bytes as an ArrayBuffer the pool may hand to a worker (see SubmitOptions). */
function detachable(chunk: Uint8Array, transfer: boolean): ArrayBuffer {
  return transfer ? ownArrayBuffer(chunk) : copyToArrayBuffer(chunk);
}

/** Worker-thread pool for chunk hashing and compression. See the file comment for contracts. */
export class ChunkPool {
  /** Number of worker threads. */
  readonly size: number;
  /** zstd level of every frame. */
  readonly level: number;
  /** Chunks that may wait for a worker. */
  readonly maxQueued: number;
  private readonly resourceLimits: ResourceLimits | undefined;
  private readonly slots: Slot[] = [];
  private readonly queue: Task[] = [];
  private readonly spaceWaiters: (() => void)[] = [];
  private seq = 0;
  /** The batch being gathered by processBatched(), and its scheduled send. */
  private batch: OpenBatch | undefined;
  private batchTimer: NodeJS.Immediate | undefined;
  private closed = false;
  private deathsInARow = 0;
  private broken: VaultikError | undefined;

  /**
   * Starts the workers.
   * @throws RangeError for a size < 1, a bad level or a negative maxQueued.
   */
  constructor(opts: ChunkPoolOptions = {}) {
    this.size = opts.size ?? availableParallelism();
    if (!Number.isInteger(this.size) || this.size < 1) throw new RangeError(`pool size must be >= 1, got ${this.size}`);
    this.level = checkCompressionLevel(opts.level ?? DEFAULT_COMPRESSION_LEVEL);
    this.maxQueued = opts.maxQueued ?? this.size;
    if (!Number.isInteger(this.maxQueued) || this.maxQueued < 0) throw new RangeError(`maxQueued must be >= 0, got ${this.maxQueued}`);
    this.resourceLimits = opts.resourceLimits;
    for (let i = 0; i < this.size; i++) this.slots.push(this.spawn());
  }

  /** Chunks the pool holds at most (in workers plus queued): the natural pipeline depth. */
  get capacity(): number {
    return this.size * IN_FLIGHT_PER_WORKER + this.maxQueued;
  }

  /**
   * SHA-256 and zstd frame of a chunk.
   * @throws VaultikError when the pool is closed or the worker fails.
   */
  async process(chunk: Uint8Array, opts: SubmitOptions = {}): Promise<ChunkResult> {
    const r = await this.submit(chunk, 'process', opts);
    return { id: idOf(r), frame: frameOf(r), plainLength: r.len };
  }

  /**
   * zstd frame only (the caller already has the id).
   * @throws VaultikError when the pool is closed or the worker fails.
   */
  async compress(chunk: Uint8Array, opts: SubmitOptions = {}): Promise<Buffer> {
    return frameOf(await this.submit(chunk, 'compress', opts));
  }

  /**
   * process() for small chunks (at most BATCH_MAX_CHUNK bytes; larger ones go through process()
   * with `opts`): the chunk's bytes are copied into a batch, and a batch goes to a worker as one
   * message when it holds BATCH_BYTES or BATCH_COUNT chunks, or when the event loop next turns
   * (setImmediate) — so a caller that awaits a result never waits for a batch nobody sends.
   * One message per chunk cost the main thread ~30 µs (postMessage, reply, promise), more than
   * reading the file, for a tree of small files; a batch costs that once.
   * @throws VaultikError as process().
   */
  processBatched(chunk: Uint8Array, opts: SubmitOptions = {}): Promise<ChunkResult> {
    if (!(chunk instanceof Uint8Array)) return Promise.reject(new TypeError('chunk must be a Buffer or Uint8Array'));
    const len = chunk.byteLength;
    if (len > BATCH_MAX_CHUNK) return this.process(chunk, opts);
    if (this.closed) return Promise.reject(new VaultikError('chunk pool closed', ExitCode.FAILURE));
    let b = this.batch;
    if (b !== undefined && b.bytes + len > b.buf.length) {
      this.sendBatch();
      b = undefined;
    }
    if (b === undefined) {
      b = { buf: Buffer.allocUnsafeSlow(BATCH_BYTES), bytes: 0, lens: [], members: [] };
      this.batch = b;
      this.batchTimer ??= setImmediate(() => {
        this.batchTimer = undefined;
        this.sendBatch();
      });
    }
    b.buf.set(chunk, b.bytes);
    b.bytes += len;
    b.lens.push(len);
    const p = new Promise<ChunkResult>((resolve, reject) => b.members.push({ resolve, reject }));
    if (b.lens.length >= BATCH_COUNT || b.bytes >= b.buf.length) this.sendBatch();
    return p;
  }

  /** Sends the open batch (if any) to a worker and settles its members' promises. */
  private sendBatch(): void {
    const b = this.batch;
    this.batch = undefined;
    if (b === undefined || b.lens.length === 0) return;
    const fail = (err: unknown): void => {
      for (const m of b.members) m.reject(err);
    };
    this.submitRaw({ seq: ++this.seq, op: 'batch', level: this.level, buf: b.buf.buffer as ArrayBuffer, len: b.bytes, lens: b.lens }).then((r) => {
      const lens = r.frameLens;
      if (!r.ids || !r.frame || !lens || lens.length !== b.lens.length) throw new VaultikError('chunk worker sent a malformed batch', ExitCode.FAILURE);
      for (let i = 0, off = 0; i < lens.length; off += lens[i]!, i++) {
        b.members[i]!.resolve({ id: Buffer.from(r.ids, 32 * i, 32), frame: Buffer.from(r.frame, off, lens[i]!), plainLength: b.lens[i]! });
      }
    }).catch(fail);
  }

  /**
   * chunkStream() (src/chunker/stream.ts) run in a worker: the same chunks, in order, each in its
   * own ArrayBuffer (so it can be transferred on to process()). One worker holds the stream's
   * cutter; reads are transferred to it when `opts.transfer` allows (see SubmitOptions), and up to
   * CUT_AHEAD of them are in flight. The main thread only routes bytes: on 2 cores FastCDC on the
   * main thread was its largest cost (~2.7 s of an 11 s initial backup of 2 GB).
   * Breaking out early is fine (the worker drops the stream).
   * @throws RangeError for invalid options (before reading anything); VaultikError when the pool
   *   is closed or the worker fails or dies; whatever `source` throws.
   */
  async *cutStream(
    source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
    chunker: ChunkerOptions,
    opts: SubmitOptions = {},
  ): AsyncGenerator<Buffer, void, undefined> {
    // Validated here, before reading anything; the worker's StreamCutter gets the same options.
    const r = resolveChunker(chunker);
    const options: ChunkerOptions = { minSize: r.minSize, avgSize: r.avgSize, maxSize: r.maxSize, normalization: r.normalization, seed: r.seed };
    if (this.closed) throw new VaultikError('chunk pool closed', ExitCode.FAILURE);
    if (this.broken !== undefined) throw this.broken;
    let slot: Slot | undefined;
    for (const s of this.slots) {
      if (!s.dead && (!slot || s.streams < slot.streams || (s.streams === slot.streams && s.inflight.size + s.cuts.size < slot.inflight.size + slot.cuts.size))) slot = s;
    }
    if (!slot) throw new VaultikError('chunk pool has no live worker', ExitCode.FAILURE);
    const target = slot;
    const stream = ++this.seq;
    target.streams++;
    const send = (msg: Pick<CutRequest, 'buf' | 'len' | 'end' | 'chunker'>): Promise<ChunkReply> => {
      if (target.dead || this.closed) {
        const lost = Promise.reject(new VaultikError('chunk worker died: the stream being cut is lost', ExitCode.FAILURE));
        lost.catch(() => undefined); // surfaces when the stream reaches it
        return lost;
      }
      const seq = ++this.seq;
      const p = new Promise<ChunkReply>((resolve, reject) => target.cuts.set(seq, { resolve, reject }));
      p.catch(() => undefined);
      if (target.inflight.size === 0 && target.cuts.size === 1) target.worker.ref();
      const request: CutRequest = { seq, op: 'cut', stream, ...msg };
      target.worker.postMessage(request, msg.buf ? [msg.buf] : []);
      return p;
    };
    const outstanding: Promise<ChunkReply>[] = [];
    const chunksOf = (r: ChunkReply): Buffer[] => (r.chunks ?? []).map((ab) => Buffer.from(ab));
    let first = true;
    let done = false;
    try {
      for await (const rd of source) {
        if (!(rd instanceof Uint8Array)) throw new TypeError('cutStream: source must yield Buffers/Uint8Arrays (no encoding set)');
        if (rd.byteLength === 0) continue;
        const len = rd.byteLength;
        outstanding.push(send({ buf: detachable(rd, opts.transfer === true), len, ...(first ? { chunker: options } : {}) }));
        first = false;
        while (outstanding.length >= CUT_AHEAD) yield* chunksOf(await outstanding.shift()!);
      }
      outstanding.push(send({ end: true, ...(first ? { chunker: options } : {}) }));
      while (outstanding.length > 0) yield* chunksOf(await outstanding.shift()!);
      done = true;
    } finally {
      target.streams--;
      if (!done && !target.dead && !this.closed) target.worker.postMessage({ op: 'drop', stream } satisfies ChunkRequest);
    }
  }

  /**
   * Terminates the workers. Pending and later calls reject. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = (): VaultikError => new VaultikError('chunk pool closed', ExitCode.FAILURE);
    if (this.batchTimer !== undefined) clearImmediate(this.batchTimer);
    this.batchTimer = undefined;
    for (const m of this.batch?.members ?? []) m.reject(err());
    this.batch = undefined;
    for (const t of this.queue.splice(0)) t.reject(err());
    for (const w of this.spaceWaiters.splice(0)) w();
    const slots = this.slots.splice(0);
    for (const s of slots) {
      s.dead = true;
      for (const t of s.inflight.values()) t.reject(err());
      s.inflight.clear();
      for (const t of s.cuts.values()) t.reject(err());
      s.cuts.clear();
    }
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private async submit(
    chunk: Uint8Array,
    op: 'process' | 'compress',
    opts: SubmitOptions,
  ): Promise<ChunkReply & { len: number }> {
    if (!(chunk instanceof Uint8Array)) throw new TypeError('chunk must be a Buffer or Uint8Array');
    const len = chunk.byteLength;
    const reply = await this.whenRoom(() => {
      const buf = detachable(chunk, opts.transfer === true);
      return { seq: ++this.seq, op, level: this.level, buf, len };
    });
    return { ...reply, len };
  }

  /** submit() for a buffer the pool owns (a batch): waits for room the same way, no copy. */
  private submitRaw(message: ChunkTask): Promise<ChunkReply> {
    return this.whenRoom(() => message);
  }

  /**
   * Waits for room, then queues the message `make` returns. Newcomers queue behind earlier
   * waiters so nobody starves. `make` and the push run in the same tick as the last room check:
   * an await in between let callers that do not await get past the limit.
   */
  private async whenRoom(make: () => ChunkTask): Promise<ChunkReply> {
    let first = true;
    while (!this.closed && this.broken === undefined && ((first && this.spaceWaiters.length > 0) || !this.hasRoom())) {
      first = false;
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
    if (this.closed) throw new VaultikError('chunk pool closed', ExitCode.FAILURE);
    if (this.broken !== undefined) throw this.broken;
    const message = make();
    return await new Promise<ChunkReply>((resolve, reject) => {
      this.queue.push({ message, resolve, reject });
      this.dispatch();
    });
  }

  private freeSlots(): number {
    let n = 0;
    for (const s of this.slots) if (!s.dead) n += IN_FLIGHT_PER_WORKER - s.inflight.size;
    return n;
  }

  /** dispatch() keeps the queue empty while a worker has a free place, so this is exact. */
  private hasRoom(): boolean {
    return this.queue.length < this.maxQueued || (this.queue.length === 0 && this.freeSlots() > 0);
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let best: Slot | undefined;
      for (const s of this.slots) {
        // Reads queued for a stream's cutter count as load too (see cutStream).
        if (!s.dead && s.inflight.size < IN_FLIGHT_PER_WORKER && (!best || s.inflight.size + s.cuts.size < best.inflight.size + best.cuts.size)) best = s;
      }
      if (!best) break;
      const t = this.queue.shift()!;
      if (best.inflight.size === 0 && best.cuts.size === 0) best.worker.ref();
      best.inflight.set(t.message.seq, t);
      best.worker.postMessage(t.message, [t.message.buf]);
    }
    // Wake one waiter per place that opened up; each re-checks hasRoom() itself.
    let room = this.maxQueued - this.queue.length + (this.queue.length === 0 ? this.freeSlots() : 0);
    while (room-- > 0 && this.spaceWaiters.length > 0) this.spaceWaiters.shift()!();
  }

  /** Gives up after this many worker deaths with no successful task in between. */
  private static readonly MAX_DEATHS_IN_A_ROW = 3;

  /** Rejects everything queued and every later call: workers keep dying. */
  private breakPool(err: VaultikError): void {
    this.broken = err;
    for (const t of this.queue.splice(0)) t.reject(err);
    for (const w of this.spaceWaiters.splice(0)) w();
  }

  private spawn(): Slot {
    const worker = new Worker(workerModule(import.meta.url, 'chunkWorker'), this.resourceLimits ? { resourceLimits: this.resourceLimits } : {});
    const slot: Slot = { worker, inflight: new Map(), cuts: new Map(), streams: 0, dead: false };
    worker.on('message', (r: ChunkReply) => {
      const c = slot.cuts.get(r.seq);
      if (c) {
        slot.cuts.delete(r.seq);
        if (slot.inflight.size === 0 && slot.cuts.size === 0) worker.unref();
        if (r.error !== undefined) c.reject(new VaultikError(`chunk worker failed: ${r.error}`, ExitCode.FAILURE));
        else c.resolve(r);
        return;
      }
      const t = slot.inflight.get(r.seq);
      if (!t) return;
      slot.inflight.delete(r.seq);
      if (slot.inflight.size === 0 && slot.cuts.size === 0) worker.unref();
      this.deathsInARow = 0;
      if (r.error !== undefined) t.reject(new VaultikError(`chunk worker failed: ${r.error}`, ExitCode.FAILURE));
      else t.resolve(r);
      this.dispatch();
    });
    const die = (why: string, cause?: unknown): void => {
      if (slot.dead) return;
      slot.dead = true;
      const err = new VaultikError(`chunk worker died: ${why}`, ExitCode.FAILURE, cause === undefined ? undefined : { cause });
      for (const t of slot.inflight.values()) t.reject(err);
      slot.inflight.clear();
      for (const t of slot.cuts.values()) t.reject(err);
      slot.cuts.clear();
      void worker.terminate();
      if (this.closed || this.broken !== undefined) return;
      // Replace the worker, unless they die on arrival (e.g. its module cannot load): then the
      // pool reports that error instead of respawning forever.
      if (++this.deathsInARow >= ChunkPool.MAX_DEATHS_IN_A_ROW) {
        this.breakPool(err);
        return;
      }
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots[i] = this.spawn();
      this.dispatch();
    };
    worker.on('error', (err) => die(errorMessage(err), err));
    worker.on('messageerror', (err) => die(errorMessage(err), err));
    worker.on('exit', (code) => die(`exited with code ${code}`));
    // An idle pool must not keep the process alive; a busy one must (dispatch refs a worker that
    // gets work, the message handler unrefs it when it has none). After the listeners: attaching
    // them refs the worker's port again.
    worker.unref();
    return slot;
  }
}

function idOf(r: ChunkReply): Buffer {
  if (!r.ids) throw new VaultikError('chunk worker sent no id', ExitCode.FAILURE);
  return Buffer.from(r.ids, 0, 32);
}

function frameOf(r: ChunkReply): Buffer {
  if (!r.frame) throw new VaultikError('chunk worker sent no frame', ExitCode.FAILURE);
  return Buffer.from(r.frame, r.frameOff ?? 0, r.frameLen ?? r.frame.byteLength);
}
