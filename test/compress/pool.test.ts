/**
 * The chunk pool: results identical to the main-thread functions, transfer rules, ordering,
 * bounded memory, and failure handling (a dying worker rejects its tasks and is replaced).
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { BATCH_BYTES, BATCH_COUNT, BATCH_MAX_CHUNK, ChunkPool, type ChunkResult } from '../../src/compress/pool.js';
import { chunkBuffer } from '../../src/chunker/index.js';
import { compressFrame, decompressFrame } from '../../src/compress/zstd.js';
import { ExitCode, VaultikError } from '../../src/errors.js';

const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

function text(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = 97 + ((x >>> 16) % 13); // letters from a small alphabet: compressible
  }
  return b;
}

const pools: ChunkPool[] = [];
function pool(...args: ConstructorParameters<typeof ChunkPool>): ChunkPool {
  const p = new ChunkPool(...args);
  pools.push(p);
  return p;
}
afterEach(async () => {
  await Promise.all(pools.splice(0).map((p) => p.close()));
});

describe('ChunkPool', () => {
  it('returns the SHA-256 id and the very frame compressFrame() makes', async () => {
    const p = pool({ size: 2 });
    const chunks = [Buffer.alloc(0), Buffer.from([7]), text(4095, 1), text(4096, 2), randomBytes(300_000), text(2 << 20, 3)];
    const results = await Promise.all(chunks.map((c) => p.process(c)));
    results.forEach((r, i) => {
      const c = chunks[i]!;
      expect(r.plainLength).toBe(c.length);
      expect(r.id.equals(sha256(c))).toBe(true);
      expect(r.frame.equals(compressFrame(c, 3))).toBe(true);
      expect(decompressFrame(r.frame, c.length).equals(c)).toBe(true);
    });
  });

  it('frames small enough for Node\'s pool slab come back intact, and the worker lives on', async () => {
    // Node 24's slab is 64 KiB: incompressible chunks of 4-32 KiB give frames inside it there.
    const p = pool({ size: 1 });
    for (const n of [1000, 5000, 10_000, 20_000, 31_000, 40_000]) {
      const c = randomBytes(n);
      expect((await p.compress(c)).equals(compressFrame(c))).toBe(true);
      expect((await p.process(c)).frame.equals(compressFrame(c))).toBe(true);
    }
  });

  it('compress() makes the frame alone; the level is the pool\'s', async () => {
    const p = pool({ size: 1, level: 9 });
    const c = text(100_000, 4);
    expect((await p.compress(c)).equals(compressFrame(c, 9))).toBe(true);
    expect(() => new ChunkPool({ level: 99 })).toThrow(RangeError);
    expect(() => new ChunkPool({ size: 0 })).toThrow(RangeError);
  });

  it('transfers only Buffers that own their memory, and only when asked', async () => {
    const p = pool({ size: 1 });
    const owned = Buffer.allocUnsafeSlow(100_000).fill(1);
    await p.process(owned);
    expect(owned.length).toBe(100_000); // copied: not asked to transfer
    const r = await p.process(owned, { transfer: true });
    expect(owned.length).toBe(0); // handed over
    expect(r.plainLength).toBe(100_000);
    expect(r.id.equals(sha256(Buffer.alloc(100_000, 1)))).toBe(true);

    const read = Buffer.allocUnsafeSlow(200_000).fill(2);
    const view = read.subarray(1000, 101_000);
    await p.process(view, { transfer: true });
    expect(view.length).toBe(100_000); // a view into someone's read buffer is never detached
    expect(read.length).toBe(200_000);

    const small = Buffer.from('tiny'); // from Node's shared pool slab
    const neighbour = Buffer.from('neighbour');
    await p.process(small, { transfer: true });
    expect(small.toString()).toBe('tiny');
    expect(neighbour.toString()).toBe('neighbour');
  });

  it('callers that do not await wait for room before the pool takes their chunk', async () => {
    const p = pool({ size: 1, maxQueued: 2 });
    const internals = p as unknown as { queue: unknown[]; slots: { inflight: Map<number, unknown> }[] };
    let maxHeld = 0;
    const calls: Promise<ChunkResult>[] = [];
    for (let i = 0; i < 30; i++) calls.push(p.process(text(200_000, i)));
    const timer = setInterval(() => {
      const held = internals.queue.length + internals.slots.reduce((s, x) => s + x.inflight.size, 0);
      maxHeld = Math.max(maxHeld, held);
    }, 0);
    const results = await Promise.all(calls);
    clearInterval(timer);
    expect(results).toHaveLength(30);
    expect(maxHeld).toBeGreaterThan(0);
    expect(maxHeld).toBeLessThanOrEqual(p.capacity);
  });

  it('a worker that dies rejects its tasks and is replaced', async () => {
    const p = pool({ size: 1 });
    const internals = p as unknown as { slots: { worker: { terminate(): Promise<number> } }[] };
    const pending = p.process(text(8 << 20, 5));
    await internals.slots[0]!.worker.terminate();
    const err = await pending.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VaultikError);
    expect((err as VaultikError).exitCode).toBe(ExitCode.FAILURE);
    expect(String((err as Error).message)).toMatch(/worker died/);
    const c = text(1000, 6);
    expect((await p.process(c)).id.equals(sha256(c))).toBe(true);
  });

  it('workers that die on arrival fail the calls instead of respawning forever', async () => {
    // A 4 MB heap is too little for a worker to load its modules (ERR_WORKER_OUT_OF_MEMORY). Not
    // less: below ~2 MB, Node 22 and 24 abort the whole process ("GC during deserialization").
    const p = pool({ size: 1, resourceLimits: { maxOldGenerationSizeMb: 4, maxYoungGenerationSizeMb: 1 } });
    await expect(p.process(Buffer.from('x'))).rejects.toBeInstanceOf(VaultikError);
    await expect(p.process(Buffer.from('y'))).rejects.toBeInstanceOf(VaultikError);
  });

  it('holds the event loop open only while busy', async () => {
    const ports = (): number => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
    const before = ports();
    const p = pool({ size: 2 });
    expect(ports()).toBe(before);
    const busy = p.process(text(1 << 20, 11));
    expect(ports()).toBeGreaterThan(before);
    await busy;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(ports()).toBe(before);
  });

  it('close() rejects what is pending and every later call', async () => {
    const p = pool({ size: 1 });
    const pending = [p.process(text(4 << 20, 7)), p.process(text(4 << 20, 8)), p.process(text(10, 9))];
    const settled = Promise.allSettled(pending);
    await p.close();
    for (const r of await settled) expect(r.status).toBe('rejected');
    await expect(p.process(Buffer.from('late'))).rejects.toThrow(/closed/);
    await p.close(); // idempotent
  });
});

describe('ChunkPool.processBatched', () => {
  it('gives each chunk the id and frame process() gives, across full, counted and timed batches', async () => {
    const p = pool({ size: 2, maxQueued: 0 });
    // Sizes that fill batches by bytes (BATCH_BYTES), by count (BATCH_COUNT of tiny chunks), one
    // chunk too large to batch, and an empty chunk; the tail leaves on setImmediate.
    const sizes = [
      ...Array.from({ length: 20 }, (_, i) => 100_000 + i * 3001),
      ...Array.from({ length: BATCH_COUNT + 7 }, (_, i) => 1 + (i % 50)),
      BATCH_MAX_CHUNK + 1,
      0,
      ...Array.from({ length: 5 }, (_, i) => 40_000 + i),
    ];
    const chunks = sizes.map((n, i) => (i % 3 === 0 ? randomBytes(n) : text(n, i + 1)));
    const copies = chunks.map((c) => Buffer.from(c));
    const results = await Promise.all(chunks.map((c) => p.processBatched(c, { transfer: true })));
    expect(chunks.reduce((a, c) => a + c.length, 0)).toBeGreaterThan(BATCH_BYTES);
    for (const [i, r] of results.entries()) {
      const c = copies[i]!;
      // Batched chunks are copied, never detached; the one too large to batch is transferred.
      expect(chunks[i]!.length).toBe(sizes[i]! > BATCH_MAX_CHUNK ? 0 : sizes[i]);
      expect(r.plainLength).toBe(c.length);
      expect(r.id.equals(sha256(c))).toBe(true);
      expect(r.frame.equals(compressFrame(c))).toBe(true);
      expect(decompressFrame(r.frame).equals(c)).toBe(true);
    }
  });

  it('a result awaited alone is sent without waiting for the batch to fill', async () => {
    const p = pool({ size: 1 });
    const r = await p.processBatched(text(1000, 3));
    expect(r.id.equals(sha256(text(1000, 3)))).toBe(true);
  });

  it('close() rejects the chunks of a batch not sent yet', async () => {
    const p = pool({ size: 1 });
    const pending = p.processBatched(text(10, 1));
    pending.catch(() => undefined);
    await p.close();
    await expect(pending).rejects.toThrow(/closed/);
    await expect(p.processBatched(text(10, 1))).rejects.toThrow(/closed/);
  });
});

describe('ChunkPool.cutStream', () => {
  const o = { minSize: 4096, avgSize: 16384, maxSize: 65536, normalization: 2 };

  function reads(data: Buffer, seed: number): Buffer[] {
    const out: Buffer[] = [];
    let x = seed;
    for (let i = 0; i < data.length; ) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const n = x % 5 === 0 ? 1 : (x >>> 8) % 50_000;
      out.push(Buffer.from(data.subarray(i, i + n))); // each read owns its memory, like a file read
      i += n;
    }
    return out;
  }

  it('yields the chunks chunkBuffer finds, each in its own ArrayBuffer, on every worker at once', async () => {
    const p = pool({ size: 2 });
    const inputs = [Buffer.concat([randomBytes(1 << 20), text(1 << 20, 4)]), text(700_000, 9), randomBytes(100), Buffer.alloc(0)];
    const cut = async (data: Buffer, seed: number): Promise<Buffer[]> => {
      const out: Buffer[] = [];
      const rs = reads(data, seed);
      async function* src(): AsyncGenerator<Buffer> {
        for (const r of rs) {
          await new Promise((resolve) => setImmediate(resolve));
          yield r;
        }
      }
      for await (const c of p.cutStream(src(), o, { transfer: true })) out.push(c);
      expect(rs.every((r) => r.length === 0 || r.length < Buffer.poolSize >>> 1)).toBe(true); // transferred (not from the pool slab)
      return out;
    };
    const got = await Promise.all(inputs.map((d, i) => cut(d, i + 1)));
    for (const [i, d] of inputs.entries()) {
      const chunks = got[i]!;
      expect(chunks.map((c) => c.length)).toEqual(chunkBuffer(d, o));
      expect(Buffer.concat(chunks).equals(d)).toBe(true);
      for (const c of chunks) expect(c.byteOffset === 0 && c.byteLength === c.buffer.byteLength).toBe(true);
    }
    // Without transfer the caller's reads are left alone.
    const d = text(200_000, 3);
    const rs = reads(d, 5);
    const chunks: Buffer[] = [];
    for await (const c of p.cutStream(rs, o)) chunks.push(c);
    expect(Buffer.concat(rs).equals(d)).toBe(true);
    expect(Buffer.concat(chunks).equals(d)).toBe(true);
  });

  it('the worker cuts with every option, the gear seed too', async () => {
    const p = pool({ size: 1 });
    const d = randomBytes(600_000);
    const seeded = { ...o, normalization: 1, seed: 0x1234_5678_9abc_def0n };
    const chunks: Buffer[] = [];
    for await (const c of p.cutStream(reads(d, 3), seeded)) chunks.push(c);
    expect(chunks.map((c) => c.length)).toEqual(chunkBuffer(d, seeded));
    expect(chunkBuffer(d, seeded)).not.toEqual(chunkBuffer(d, o));
  });

  it('validates the options before reading, and survives a consumer that stops early', async () => {
    const p = pool({ size: 1 });
    let pulled = 0;
    function* src(): Generator<Buffer> {
      pulled++;
      yield text(10, 1);
    }
    await expect(p.cutStream(src(), { minSize: 10, avgSize: 5, maxSize: 20 }).next()).rejects.toBeInstanceOf(RangeError);
    expect(pulled).toBe(0);
    const big = reads(randomBytes(1 << 20), 8);
    for await (const c of p.cutStream(big, o)) {
      expect(c.length).toBeGreaterThan(0);
      break;
    }
    const c = text(5000, 2);
    expect((await p.process(c)).id.equals(sha256(c))).toBe(true);
  });

  it('a cutting worker that dies fails the stream', async () => {
    const p = pool({ size: 1 });
    const internals = p as unknown as { slots: { worker: { terminate(): Promise<number> } }[] };
    async function* src(): AsyncGenerator<Buffer> {
      yield randomBytes(100_000);
      await internals.slots[0]!.worker.terminate();
      yield randomBytes(100_000);
      yield randomBytes(100_000);
    }
    const consume = async (): Promise<void> => {
      for await (const c of p.cutStream(src(), o)) expect(c.length).toBeGreaterThan(0);
    };
    await expect(consume()).rejects.toThrow(/worker died|stream being cut is lost/);
  });
});
