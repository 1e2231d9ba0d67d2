/**
 * The storage conformance suite: every backend and wrapper stack must pass it.
 *
 *   storageConformance('local', async () => ({ storage, cleanup }), options);
 *
 * registers a vitest `describe` block. The factory runs once (beforeAll); tests use disjoint key
 * prefixes, so they do not depend on each other's leftovers.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareKeys } from '../../src/storage/keys.js';
import { StorageError, type PutBody, type Storage, type StorageErrorKind } from '../../src/storage/types.js';

export interface ConformanceTarget {
  storage: Storage;
  cleanup?: () => Promise<void>;
}

export interface ConformanceOptions {
  /** The multipart settings the factory configured, to test sizes around them. */
  multipart?: { threshold: number; partSize: number };
  /** The store verifies the SHA-256 given to put (s3rver ignores checksums). */
  verifiesChecksum?: boolean;
  /** A put cut short leaves nothing behind (s3rver alone keeps the partial object). */
  atomicPuts?: boolean;
  /** Keys are listed in exact byte order even where a shared prefix is followed by a character
   *  below '/' ("a-c" before "a/b"); s3rver's directory walk gets that case wrong. */
  exactKeyOrder?: boolean;
  /** A put never replaces an existing object (s3rver ignores If-None-Match). */
  noOverwrite?: boolean;
  /** How many keys the big listing test writes (default 1100: more than one S3 page). */
  manyKeys?: number;
}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A re-openable stream body that yields `bytes` in chunks of `chunk` bytes. */
export function streamBody(bytes: Buffer, chunk = 64 * 1024): Exclude<PutBody, Buffer> & { opened: number } {
  const body = {
    size: bytes.length,
    opened: 0,
    open: () => {
      body.opened++;
      const parts: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += chunk) parts.push(bytes.subarray(i, i + chunk));
      return Readable.from(parts, { objectMode: false });
    },
  };
  return body;
}

export const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

export async function expectStorageError(promise: Promise<unknown>, kind: StorageErrorKind, message?: RegExp): Promise<StorageError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a StorageError').toBeInstanceOf(StorageError);
  const err = caught as StorageError;
  expect(err.kind, err.message).toBe(kind);
  if (message) expect(err.message).toMatch(message);
  return err;
}

/** Buffer equality without vitest's element-wise diff (seconds for large buffers). */
export function expectBytes(got: Buffer, want: Buffer, what = 'bytes'): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  expect(got.equals(want), `${what}: content`).toBe(true);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Runs `fn` over `items` with at most `width` in flight. */
async function parallel<T>(items: T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

export function storageConformance(name: string, open: () => Promise<ConformanceTarget>, options: ConformanceOptions = {}): void {
  describe(`storage conformance: ${name}`, () => {
    let target: ConformanceTarget;
    let store: Storage;
    beforeAll(async () => {
      target = await open();
      store = target.storage;
    });
    afterAll(async () => {
      await target?.storage.close();
      await target?.cleanup?.();
    });

    it('puts and gets a buffer, and stats it', async () => {
      const bytes = randomBytes(10_000);
      const before = Date.now();
      await store.put('basic/blob', bytes, { sha256: sha256(bytes) });
      expectBytes(await readAll(await store.get('basic/blob')), bytes);
      const info = await store.stat('basic/blob');
      expect(info.key).toBe('basic/blob');
      expect(info.size).toBe(bytes.length);
      // S3 timestamps have one-second resolution; allow for clock differences of a local server.
      expect(Math.abs(info.lastModified.getTime() - before)).toBeLessThan(60_000);
    });

    it('puts a re-openable stream body, with and without a SHA-256', async () => {
      const bytes = randomBytes(300_000);
      await store.put('stream/with-hash', streamBody(bytes, 10_000), { sha256: sha256(bytes) });
      await store.put('stream/without-hash', streamBody(bytes, 7_777));
      expectBytes(await readAll(await store.get('stream/with-hash')), bytes);
      expectBytes(await readAll(await store.get('stream/without-hash')), bytes);
    });

    it('stores empty objects', async () => {
      await store.put('empty/buffer', Buffer.alloc(0), { sha256: sha256(Buffer.alloc(0)) });
      await store.put('empty/stream', streamBody(Buffer.alloc(0)));
      for (const key of ['empty/buffer', 'empty/stream']) {
        expect((await store.stat(key)).size).toBe(0);
        expect((await readAll(await store.get(key))).length).toBe(0);
        expect((await readAll(await store.get(key, { offset: 0, length: 0 }))).length).toBe(0);
      }
      expect((await collect(store.list('empty/'))).map((o) => [o.key, o.size])).toEqual([
        ['empty/buffer', 0],
        ['empty/stream', 0],
      ]);
    });

    it('reads byte ranges at the start, middle and end', async () => {
      const bytes = randomBytes(200_000);
      await store.put('range/obj', bytes);
      const size = bytes.length;
      const ranges = [
        { offset: 0, length: 1 },
        { offset: 0, length: 1000 },
        { offset: 65_535, length: 65_538 },
        { offset: 100_000, length: 12_345 },
        { offset: size - 1000, length: 1000 },
        { offset: size - 1, length: 1 },
        { offset: 0, length: size },
        { offset: 1234, length: 0 },
      ];
      for (const r of ranges) {
        const got = await readAll(await store.get('range/obj', r));
        expect(got.equals(bytes.subarray(r.offset, r.offset + r.length)), `range ${r.offset}+${r.length}`).toBe(true);
      }
    });

    it('refuses ranges past the end', async () => {
      await store.put('range/short', randomBytes(100));
      await expectStorageError(store.get('range/short', { offset: 90, length: 20 }), 'permanent', /past the end/);
      await expectStorageError(store.get('range/short', { offset: 100, length: 1 }), 'permanent', /past the end/);
    });

    it('reports missing objects as not-found', async () => {
      await expectStorageError(store.get('missing/none'), 'not-found', /missing\/none/);
      await expectStorageError(store.get('missing/none', { offset: 0, length: 10 }), 'not-found');
      await expectStorageError(store.stat('missing/none'), 'not-found', /does not exist/);
      expect(await collect(store.list('missing/'))).toEqual([]);
    });

    it('lists by prefix in key order', async () => {
      const keys = ['list/c', 'list/b/2', 'list/a', 'list/bb', 'list/b/1', 'listing/x'];
      await Promise.all(keys.map((k, i) => store.put(k, Buffer.alloc(i + 1, 7))));
      const all = await collect(store.list('list/'));
      expect(all.map((o) => o.key)).toEqual(['list/a', 'list/b/1', 'list/b/2', 'list/bb', 'list/c']);
      expect(all.map((o) => o.size)).toEqual([3, 5, 2, 4, 1]);
      expect((await collect(store.list('list/b'))).map((o) => o.key)).toEqual(['list/b/1', 'list/b/2', 'list/bb']);
      expect((await collect(store.list('list/b/'))).map((o) => o.key)).toEqual(['list/b/1', 'list/b/2']);
      expect((await collect(store.list('list'))).map((o) => o.key)).toContain('listing/x');
      expect(await collect(store.list('list/zzz'))).toEqual([]);
    });

    if (options.exactKeyOrder) {
      it('lists in byte order across directory boundaries', async () => {
        const keys = ['order/a0', 'order/a/b', 'order/a-c', 'order/b.x', 'order/b/y', 'order/é', 'order/z'];
        await Promise.all(keys.map((k) => store.put(k, Buffer.from(k))));
        const listed = (await collect(store.list('order/'))).map((o) => o.key);
        expect(listed).toEqual([...keys].sort(compareKeys));
        expect(listed).toEqual(['order/a-c', 'order/a/b', 'order/a0', 'order/b.x', 'order/b/y', 'order/z', 'order/é']);
      });
    }

    it(`lists and deletes more than 1000 keys`, async () => {
      const n = options.manyKeys ?? 1100;
      const keys = Array.from({ length: n }, (_, i) => `many/${(i * 7919 % n).toString(16).padStart(4, '0')}`);
      await parallel(keys, 32, (k) => store.put(k, Buffer.from(k)));
      const listed = await collect(store.list('many/'));
      expect(listed.length).toBe(n);
      const names = listed.map((o) => o.key);
      expect(names).toEqual([...keys].sort(compareKeys));
      expect(new Set(names).size).toBe(n);
      expect(listed.every((o) => o.size === o.key.length)).toBe(true);
      // A listing that stops early must not break later ones.
      for await (const o of store.list('many/')) {
        expect(o.key).toBe(names[0]);
        break;
      }
      await store.delete([...keys, 'many/not-there']);
      expect(await collect(store.list('many/'))).toEqual([]);
    });

    it('deletes: missing keys and an empty list are fine; others stay', async () => {
      await store.put('del/keep', Buffer.from('k'));
      await store.put('del/drop', Buffer.from('d'));
      await store.delete([]);
      await store.delete(['del/drop', 'del/never-existed']);
      await expectStorageError(store.stat('del/drop'), 'not-found');
      expect((await store.stat('del/keep')).size).toBe(1);
      await store.delete(['del/drop']);
    });

    it('accepts the same object twice (idempotent puts)', async () => {
      const bytes = randomBytes(1000);
      await store.put('twice/obj', bytes);
      await store.put('twice/obj', streamBody(bytes));
      expectBytes(await readAll(await store.get('twice/obj')), bytes);
    });

    if (options.noOverwrite) {
      it('never replaces an object: a second writer\'s put of other bytes succeeds and leaves the first', async () => {
        const first = randomBytes(1000);
        const second = randomBytes(2000);
        await store.put('keep/buffer', first, { sha256: sha256(first) });
        await store.put('keep/buffer', second, { sha256: sha256(second) });
        await store.put('keep/stream', streamBody(first));
        await store.put('keep/stream', streamBody(second));
        for (const key of ['keep/buffer', 'keep/stream']) {
          expectBytes(await readAll(await store.get(key)), first, key);
          expect((await store.stat(key)).size).toBe(first.length);
        }
      });
    }

    it('refuses a stream body whose length differs from its size', async () => {
      const bytes = randomBytes(50_000);
      const short = { size: 60_000, open: () => Readable.from([bytes], { objectMode: false }) };
      const long = { size: 40_000, open: () => Readable.from([bytes.subarray(0, 40_000), bytes.subarray(40_000)], { objectMode: false }) };
      await expectStorageError(store.put('length/short', short), 'permanent', /bytes/);
      await expectStorageError(store.put('length/long', long), 'permanent', /bytes/);
      if (options.atomicPuts !== false) {
        await expectStorageError(store.stat('length/short'), 'not-found');
        await expectStorageError(store.stat('length/long'), 'not-found');
      }
    });

    if (options.verifiesChecksum) {
      it('refuses bytes that do not match the given SHA-256, naming the object, and stores nothing', async () => {
        // One byte differs from what the caller hashed: a buffer, a stream, and (when the store
        // has multipart settings) a multipart upload of each.
        const sizes = [1000, ...(options.multipart ? [options.multipart.threshold + options.multipart.partSize + 1] : [])];
        for (const size of sizes) {
          const bytes = randomBytes(size);
          const changed = Buffer.from(bytes);
          changed[size - 1]! ^= 1;
          for (const [name, body] of [
            [`checksum/bad-buffer-${size}`, changed],
            [`checksum/bad-stream-${size}`, streamBody(changed)],
          ] as const) {
            await expectStorageError(store.put(name, body, { sha256: sha256(bytes) }), 'permanent', new RegExp(name));
            await expectStorageError(store.stat(name), 'not-found');
          }
        }
      });
    }

    it('refuses invalid keys without touching the store', async () => {
      for (const key of ['', '/abs', 'a//b', '../escape', 'a/./b', 'a/../b', 'trailing/']) {
        await expectStorageError(store.put(key, Buffer.from('x')), 'permanent', /invalid object key/);
        await expectStorageError(store.get(key), 'permanent', /invalid object key/);
      }
    });

    it('stops a put whose signal is aborted', async () => {
      const controller = new AbortController();
      controller.abort();
      await expect(store.put('abort/obj', Buffer.from('x'), { signal: controller.signal })).rejects.toThrow();
      await expectStorageError(store.stat('abort/obj'), 'not-found');
    });

    const mp = options.multipart;
    if (mp) {
      it('uploads objects around and above the multipart threshold, in parts of several sizes', async () => {
        const sizes = [mp.threshold, mp.threshold + 1, mp.partSize * 3, mp.partSize * 2 + 12_345, mp.partSize * 5 + 1];
        await Promise.all(
          sizes.map(async (size, i) => {
            const bytes = randomBytes(size);
            // Alternate buffers and streams, odd chunk sizes to cross part boundaries mid-chunk.
            const body = i % 2 === 0 ? bytes : streamBody(bytes, 100_003);
            await store.put(`multipart/${size}`, body, i < 3 ? { sha256: sha256(bytes) } : undefined);
            const got = await readAll(await store.get(`multipart/${size}`));
            expect(got.length).toBe(size);
            expect(got.equals(bytes)).toBe(true);
            // A range across the first part boundary.
            const r = { offset: mp.partSize - 10, length: 20 };
            expect((await readAll(await store.get(`multipart/${size}`, r))).equals(bytes.subarray(r.offset, r.offset + r.length))).toBe(true);
            expect((await store.stat(`multipart/${size}`)).size).toBe(size);
          }),
        );
      });
    }
  });
}
