/**
 * Concurrency limit wrapper: at most N operations of the wrapped Storage run at once; the rest
 * wait their turn in FIFO order.
 *
 * Contract:
 * - put, stat and delete hold a slot for the duration of the call.
 * - get holds its slot until the returned stream closes (ends, errors or is destroyed), because
 *   the connection is busy until then. A caller that opens more streams than the limit before
 *   consuming any of them deadlocks: consume or destroy each stream.
 * - list holds a slot only while it fetches the next entry (one page on S3), so a caller may run
 *   other operations while it iterates.
 * - A multipart put counts as one operation here; its parallel parts are bounded by the S3
 *   backend's own part concurrency.
 * Wrap retry around this one (openStorage does): a slot is then free while a retry sleeps.
 */
import type { Readable } from 'node:stream';
import { Semaphore } from '../util/concurrency.js';
import type { ByteRange, ObjectInfo, PutBody, PutOptions, Storage } from './types.js';

export class LimitStorage implements Storage {
  readonly description: string;
  readonly semaphore: Semaphore;

  /** @throws RangeError for a limit below 1. */
  constructor(
    private readonly inner: Storage,
    limit: number,
  ) {
    this.description = inner.description;
    this.semaphore = new Semaphore(limit);
  }

  put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    return this.semaphore.run(() => this.inner.put(key, body, options), options?.signal);
  }

  async get(key: string, range?: ByteRange, options?: { signal?: AbortSignal }): Promise<Readable> {
    const release = await this.semaphore.acquire(options?.signal);
    try {
      const stream = await this.inner.get(key, range, options);
      if (stream.closed || stream.destroyed) release();
      stream.once('close', release);
      return stream;
    } catch (err) {
      release();
      throw err;
    }
  }

  stat(key: string): Promise<ObjectInfo> {
    return this.semaphore.run(() => this.inner.stat(key));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const it = this.inner.list(prefix)[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        const result = await this.semaphore.run(() => it.next());
        if (result.done) {
          finished = true;
          return;
        }
        yield result.value;
      }
    } finally {
      // The caller stopped early (break, error): let the inner listing clean up.
      if (!finished) await it.return?.();
    }
  }

  delete(keys: string[]): Promise<void> {
    return this.semaphore.run(() => this.inner.delete(keys));
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
