import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { LimitStorage } from '../../src/storage/limit.js';
import { RetryStorage, backoffDelay, withRetry, type RetryEvent } from '../../src/storage/retry.js';
import { StorageError, type ByteRange, type PutBody, type PutOptions } from '../../src/storage/types.js';
import { MemoryStorage } from '../helpers/memoryStorage.js';
import { expectBytes, expectStorageError, readAll, streamBody } from './conformance.js';

const transient = (what = 'flaky'): StorageError => new StorageError(`${what}: connection reset`, 'transient');
const fast = { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 5 };

/** A memory store whose operations fail on demand, after doing their work halfway. */
class Flaky extends MemoryStorage {
  putFailures = 0;
  listFailAfter: number | undefined;
  getCuts: number[] = [];
  getRanges: (ByteRange | undefined)[] = [];

  override async put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    if (this.putFailures > 0) {
      this.putFailures--;
      // Consume part of the body as a real upload would, then fail.
      if (!Buffer.isBuffer(body)) body.open().destroy();
      throw transient('put');
    }
    return super.put(key, body, options);
  }

  override async *list(prefix: string): AsyncIterable<import('../../src/storage/types.js').ObjectInfo> {
    let n = 0;
    for await (const o of super.list(prefix)) {
      if (this.listFailAfter !== undefined && n === this.listFailAfter) {
        this.listFailAfter = undefined;
        throw transient('list');
      }
      n++;
      yield o;
    }
  }

  override async get(key: string, range?: ByteRange): Promise<Readable> {
    this.getRanges.push(range);
    const full = await readAll(await super.get(key, range));
    const cut = this.getCuts.shift();
    if (cut === undefined) return Readable.from([full], { objectMode: false });
    // Deliver `cut` bytes, then fail like a reset connection.
    let sent = false;
    return new Readable({
      read() {
        if (sent) return;
        sent = true;
        if (cut > 0) this.push(full.subarray(0, cut));
        setImmediate(() => this.destroy(transient('get')));
      },
    });
  }
}

describe('backoff', () => {
  it('is full jitter under an exponential ceiling, capped', () => {
    const opts = { baseDelayMs: 100, maxDelayMs: 1000 };
    expect(backoffDelay(1, { ...opts, random: () => 0.999 })).toBe(99);
    expect(backoffDelay(3, { ...opts, random: () => 0.999 })).toBe(399);
    expect(backoffDelay(30, { ...opts, random: () => 0.999 })).toBe(999);
    expect(backoffDelay(5, { ...opts, random: () => 0 })).toBe(0);
  });
});

describe('withRetry', () => {
  it('retries transient errors only, and reports each retry', async () => {
    const events: RetryEvent[] = [];
    let calls = 0;
    const value = await withRetry(
      async () => {
        if (++calls < 3) throw transient();
        return 'ok';
      },
      { ...fast, onRetry: (e) => events.push(e) },
      { op: 'get', key: 'k' },
    );
    expect(value).toBe('ok');
    expect(events.map((e) => [e.op, e.key, e.attempt])).toEqual([
      ['get', 'k', 1],
      ['get', 'k', 2],
    ]);
    calls = 0;
    await expectStorageError(
      withRetry(
        async () => {
          calls++;
          throw new StorageError('access denied', 'permission');
        },
        fast,
        { op: 'get' },
      ),
      'permission',
      /^access denied$/,
    );
    expect(calls).toBe(1);
    const plain = new Error('a bug');
    await expect(withRetry(() => Promise.reject(plain), fast, { op: 'get' })).rejects.toBe(plain);
  });

  it('gives up after maxAttempts or maxElapsedMs, saying so', async () => {
    let calls = 0;
    await expectStorageError(
      withRetry(
        async () => {
          calls++;
          throw transient();
        },
        fast,
        { op: 'put' },
      ),
      'transient',
      /flaky: connection reset \(gave up after 5 attempts in 0\.\d s\)/,
    );
    expect(calls).toBe(5);
    const start = Date.now();
    await expectStorageError(
      withRetry(() => Promise.reject(transient()), { baseDelayMs: 20, maxDelayMs: 20, maxAttempts: 1000, maxElapsedMs: 200, random: () => 1 }, { op: 'put' }),
      'transient',
      /gave up after \d+ attempts/,
    );
    expect(Date.now() - start).toBeLessThan(400);
  });

  it('stops sleeping when the signal aborts', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    const start = Date.now();
    await expect(withRetry(() => Promise.reject(transient()), { baseDelayMs: 5000, maxDelayMs: 5000, random: () => 1 }, { op: 'put', signal: controller.signal })).rejects.toThrow(/abort/i);
    expect(Date.now() - start).toBeLessThan(1000);
  });
});

describe('RetryStorage', () => {
  it('reopens a stream body on every attempt', async () => {
    const inner = new Flaky();
    inner.putFailures = 2;
    const store = new RetryStorage(inner, fast);
    const bytes = Buffer.from('stream body');
    const body = streamBody(bytes);
    await store.put('k', body);
    expect(body.opened).toBe(3);
    expectBytes(await readAll(await store.get('k')), bytes);
  });

  it('resumes a listing after a failure without repeating keys', async () => {
    const inner = new Flaky();
    for (let i = 0; i < 10; i++) await inner.put(`l/${i}`, Buffer.from([i]));
    inner.listFailAfter = 4;
    const keys: string[] = [];
    for await (const o of new RetryStorage(inner, fast).list('l/')) keys.push(o.key);
    expect(keys).toEqual(Array.from({ length: 10 }, (_, i) => `l/${i}`));
  });

  it('resumes a download mid-body with the remaining range', async () => {
    const inner = new Flaky();
    const bytes = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
    await inner.put('obj', bytes);
    inner.getCuts = [300, 200];
    const store = new RetryStorage(inner, fast);
    expectBytes(await readAll(await store.get('obj', { offset: 100, length: 800 })), bytes.subarray(100, 900));
    expect(inner.getRanges).toEqual([
      { offset: 100, length: 800 },
      { offset: 400, length: 500 },
      { offset: 600, length: 300 },
    ]);
    // Whole object: one stat for the size, then the rest.
    inner.getRanges = [];
    inner.calls.length = 0;
    inner.getCuts = [999];
    expectBytes(await readAll(await store.get('obj')), bytes);
    expect(inner.getRanges).toEqual([undefined, { offset: 999, length: 1 }]);
    expect(inner.calls.filter((c) => c.op === 'stat')).toHaveLength(1);
  });

  it('a download that keeps failing without progress ends with an error', async () => {
    const inner = new Flaky();
    await inner.put('obj', Buffer.alloc(100, 1));
    inner.getCuts = [10, 0, 0, 0, 0, 0, 0, 0];
    const stream = await new RetryStorage(inner, { ...fast, maxAttempts: 3 }).get('obj', { offset: 0, length: 100 });
    await expectStorageError(readAll(stream), 'transient', /gave up after 3 attempts/);
  });
});

describe('LimitStorage', () => {
  it('never runs more than the limit at once, and serves waiters in order', async () => {
    let running = 0;
    let peak = 0;
    const order: string[] = [];
    class Slow extends MemoryStorage {
      override async put(key: string, body: PutBody): Promise<void> {
        running++;
        peak = Math.max(peak, running);
        await new Promise((r) => setTimeout(r, 5));
        order.push(key);
        running--;
        return super.put(key, body);
      }
    }
    const store = new LimitStorage(new Slow(), 3);
    await Promise.all(Array.from({ length: 12 }, (_, i) => store.put(`k${String(i).padStart(2, '0')}`, Buffer.from('x'))));
    expect(peak).toBe(3);
    expect(order.slice(3)).toEqual(order.slice(3).sort());
    expect(store.semaphore.inUse).toBe(0);
  });

  it('a get holds its slot until its stream closes', async () => {
    const inner = new MemoryStorage();
    await inner.put('a', Buffer.from('aaa'));
    const store = new LimitStorage(inner, 1);
    const stream = await store.get('a');
    let statDone = false;
    const stat = store.stat('a').then(() => (statDone = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(statDone).toBe(false);
    expect((await readAll(stream)).toString()).toBe('aaa');
    await stat;
    expect(statDone).toBe(true);
    const destroyed = await store.get('a');
    destroyed.destroy();
    await store.stat('a');
  });
});
