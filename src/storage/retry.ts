/**
 * Retry wrapper: any Storage, retried on 'transient' StorageErrors only, with exponential backoff
 * and full jitter (delay = random(0, min(maxDelay, base·2^(attempt-1)))), bounded both by a number
 * of attempts and by elapsed time, so an outage fails clearly instead of hanging a cron job.
 *
 * Contract:
 * - Only errors of kind 'transient' are retried. 'permission', 'permanent', 'not-found', aborts
 *   and non-storage errors (a put body that cannot be read) go straight to the caller.
 * - put: each attempt calls the inner put again, which reopens a stream body (PutBody.open), so a
 *   retry never resumes a half-consumed stream. Safe because objects are immutable: re-putting
 *   the same key with the same bytes is idempotent. When the first attempt landed but its answer
 *   was lost, the retry finds the object there (S3: 412 to If-None-Match), which the backends
 *   report as success, not as an error to classify here.
 * - get: the returned stream survives transient failures mid-body: it re-requests the remaining
 *   byte range and continues where it stopped (objects are immutable, so the bytes match). For a
 *   whole-object get the size is learnt with one stat on the first such failure.
 * - list: a failed page restarts the listing and skips keys already yielded (listing order is
 *   fixed), so callers see every key exactly once.
 * - When the budget runs out, the last error is rethrown with "(gave up after N attempts in T s)"
 *   appended; its kind stays 'transient'.
 *
 * The S3 backend disables the AWS SDK's own retries (maxAttempts 1) so that this wrapper's policy
 * is the only one in force and attempts do not multiply.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Readable } from 'node:stream';
import { compareKeys } from './keys.js';
import {
  StorageError,
  isStorageError,
  type ByteRange,
  type ObjectInfo,
  type PutBody,
  type PutOptions,
  type Storage,
} from './types.js';

export interface RetryOptions {
  /** Attempts per operation, the first included (default 8). */
  maxAttempts?: number;
  /** Ceiling of the first backoff delay (default 250 ms); it doubles per attempt. */
  baseDelayMs?: number;
  /** Largest backoff delay (default 20 s). */
  maxDelayMs?: number;
  /** No new attempt starts later than this after the operation began (default 120 s). */
  maxElapsedMs?: number;
  /** Called before each backoff sleep: progress reporting and logs. */
  onRetry?: (event: RetryEvent) => void;
  /** Random source in [0, 1) (tests make jitter deterministic). */
  random?: () => number;
}

export interface RetryEvent {
  op: 'put' | 'get' | 'stat' | 'list' | 'delete' | 'part';
  key?: string;
  /** The attempt that just failed, from 1. */
  attempt: number;
  delayMs: number;
  error: StorageError;
}

export const DEFAULT_RETRY: Required<Omit<RetryOptions, 'onRetry' | 'random'>> = {
  maxAttempts: 8,
  baseDelayMs: 250,
  maxDelayMs: 20_000,
  maxElapsedMs: 120_000,
};

/** Full-jitter backoff before attempt `failed + 1`. */
export function backoffDelay(failed: number, options: RetryOptions = {}): number {
  const base = options.baseDelayMs ?? DEFAULT_RETRY.baseDelayMs;
  const cap = options.maxDelayMs ?? DEFAULT_RETRY.maxDelayMs;
  const ceiling = Math.min(cap, base * 2 ** Math.min(failed - 1, 30));
  return Math.floor((options.random ?? Math.random)() * ceiling);
}

/**
 * Tracks one operation's retry budget. `next(err)` either returns the delay to sleep before the
 * next attempt or throws the final error.
 */
class Budget {
  private failed = 0;
  private started = Date.now();

  constructor(
    private readonly options: RetryOptions,
    private readonly op: RetryEvent['op'],
    private readonly key: string | undefined,
  ) {}

  /** Progress was made (a stream delivered bytes): the budget starts over. */
  reset(): void {
    this.failed = 0;
    this.started = Date.now();
  }

  /** @throws the final error when `err` is not retryable or the budget is spent. */
  next(err: unknown): number {
    if (!isStorageError(err, 'transient')) throw err;
    this.failed++;
    const maxAttempts = this.options.maxAttempts ?? DEFAULT_RETRY.maxAttempts;
    const maxElapsed = this.options.maxElapsedMs ?? DEFAULT_RETRY.maxElapsedMs;
    const delay = backoffDelay(this.failed, this.options);
    const elapsed = Date.now() - this.started;
    if (this.failed >= maxAttempts || elapsed + delay > maxElapsed) {
      const seconds = (elapsed / 1000).toFixed(1);
      throw new StorageError(
        `${err.message} (gave up after ${this.failed} attempt${this.failed === 1 ? '' : 's'} in ${seconds} s)`,
        err.kind,
        err.key,
        { cause: err },
      );
    }
    this.options.onRetry?.({ op: this.op, key: this.key, attempt: this.failed, delayMs: delay, error: err });
    return delay;
  }
}

/**
 * Runs `fn` until it succeeds, fails with a non-transient error, or the budget is spent.
 * @throws the first non-transient error, or the last transient one once the budget is spent;
 *   the abort reason when `signal` fires during a backoff.
 */
export async function withRetry<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions,
  context: { op: RetryEvent['op']; key?: string; signal?: AbortSignal },
): Promise<T> {
  const budget = new Budget(options, context.op, context.key);
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const delay = budget.next(err);
      await sleep(delay, undefined, { signal: context.signal });
    }
  }
}

/** A Storage whose transient failures are retried; see the file comment for the contract. */
export class RetryStorage implements Storage {
  readonly description: string;

  constructor(
    private readonly inner: Storage,
    private readonly options: RetryOptions = {},
  ) {
    this.description = inner.description;
  }

  put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    return withRetry(() => this.inner.put(key, body, options), this.options, { op: 'put', key, signal: options?.signal });
  }

  async get(key: string, range?: ByteRange, options?: { signal?: AbortSignal }): Promise<Readable> {
    const first = await withRetry(() => this.inner.get(key, range, options), this.options, {
      op: 'get',
      key,
      signal: options?.signal,
    });
    if (range?.length === 0) return first;
    return new ResumingReader(first, {
      budget: new Budget(this.options, 'get', key),
      start: range?.offset ?? 0,
      length: range?.length,
      size: () => withRetry(() => this.inner.stat(key), this.options, { op: 'stat', key, signal: options?.signal }).then((i) => i.size),
      open: (r) => this.inner.get(key, r, options),
      signal: options?.signal,
    });
  }

  stat(key: string): Promise<ObjectInfo> {
    return withRetry(() => this.inner.stat(key), this.options, { op: 'stat', key });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const budget = new Budget(this.options, 'list', prefix);
    let last: string | undefined;
    for (;;) {
      try {
        for await (const info of this.inner.list(prefix)) {
          if (last !== undefined && compareKeys(info.key, last) <= 0) continue;
          last = info.key;
          budget.reset();
          yield info;
        }
        return;
      } catch (err) {
        await sleep(budget.next(err));
      }
    }
  }

  delete(keys: string[]): Promise<void> {
    return withRetry(() => this.inner.delete(keys), this.options, { op: 'delete', key: keys[0] });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

interface ResumeContext {
  budget: Budget;
  /** Offset of the first byte of the stream in the object. */
  start: number;
  /** Bytes the stream must deliver; undefined for a whole-object get (learnt via size()). */
  length: number | undefined;
  size: () => Promise<number>;
  open: (range: ByteRange) => Promise<Readable>;
  signal: AbortSignal | undefined;
}

/**
 * A download that reconnects: when the current source fails with a transient error, it requests
 * the rest of the range and carries on. Backpressure is passed through (the source is paused
 * while the consumer is full).
 */
class ResumingReader extends Readable {
  private source: Readable | undefined;
  private received = 0;
  /** Cancels a backoff sleep when the consumer destroys the stream (so no timer outlives it). */
  private readonly stop = new AbortController();

  constructor(
    first: Readable,
    private readonly ctx: ResumeContext,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.attach(first);
  }

  private attach(source: Readable): void {
    this.source = source;
    source.on('data', (chunk: Buffer) => {
      if (this.source !== source) return;
      this.received += chunk.length;
      this.ctx.budget.reset();
      if (!this.push(chunk)) source.pause();
    });
    source.on('end', () => {
      if (this.source === source) this.push(null);
    });
    source.on('error', (err) => {
      if (this.source === source) void this.recover(err);
    });
  }

  override _read(): void {
    this.source?.resume();
  }

  override _destroy(err: Error | null, done: (error?: Error | null) => void): void {
    const source = this.source;
    this.source = undefined;
    source?.destroy();
    this.stop.abort();
    done(err);
  }

  private async recover(err: Error): Promise<void> {
    const failed = this.source;
    this.source = undefined;
    failed?.destroy();
    let error: unknown = err;
    for (;;) {
      let delay: number;
      try {
        delay = this.ctx.budget.next(error);
      } catch (final) {
        if (!this.destroyed) this.destroy(final instanceof Error ? final : new Error(String(final)));
        return;
      }
      try {
        await sleep(delay, undefined, { signal: this.ctx.signal ? anySignal(this.ctx.signal, this.stop.signal) : this.stop.signal });
        if (this.destroyed) return;
        this.ctx.length ??= (await this.ctx.size()) - this.ctx.start;
        const remaining = this.ctx.length - this.received;
        if (remaining <= 0) {
          this.push(null);
          return;
        }
        const next = await this.ctx.open({ offset: this.ctx.start + this.received, length: remaining });
        if (this.destroyed) {
          next.destroy();
          return;
        }
        this.attach(next);
        return;
      } catch (e) {
        if (this.destroyed) return;
        // A failed reopen goes through the same budget: transient ones are retried.
        error = e;
      }
    }
  }
}

/** A signal that fires when either of two does (AbortSignal.any needs Node 20.3). */
function anySignal(a: AbortSignal, b: AbortSignal): AbortSignal {
  if (a.aborted) return a;
  if (b.aborted) return b;
  const controller = new AbortController();
  const onA = (): void => controller.abort(a.reason);
  const onB = (): void => controller.abort(b.reason);
  a.addEventListener('abort', onA, { once: true });
  b.addEventListener('abort', onB, { once: true });
  controller.signal.addEventListener('abort', () => {
    a.removeEventListener('abort', onA);
    b.removeEventListener('abort', onB);
  });
  return controller.signal;
}
