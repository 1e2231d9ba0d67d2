/**
 * A bounded FIFO queue between async producers and one consumer. push() waits while the queue is
 * full, take() while it is empty; both give up with the signal's reason once it is aborted.
 * After close(), take() drains what is left and then returns undefined.
 */
export class AsyncQueue<T> {
  private readonly items: T[] = [];
  private head = 0;
  private closed = false;
  private readonly takers: (() => void)[] = [];
  private readonly pushers: (() => void)[] = [];

  /** @param capacity items held before push() waits (at least 1). */
  constructor(
    private readonly capacity: number,
    private readonly signal?: AbortSignal,
  ) {
    if (!(capacity >= 1)) throw new RangeError(`queue capacity must be >= 1, got ${capacity}`);
  }

  get length(): number {
    return this.items.length - this.head;
  }

  private wait(list: (() => void)[]): Promise<void> {
    const signal = this.signal;
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        const i = list.indexOf(wake);
        if (i >= 0) list.splice(i, 1);
        reject(signal!.reason);
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      list.push(wake);
    });
  }

  /**
   * Appends an item, waiting for room.
   * @throws Error after close(); the signal's reason once aborted.
   */
  async push(item: T): Promise<void> {
    while (this.length >= this.capacity && !this.closed) await this.wait(this.pushers);
    if (this.closed) throw new Error('push on a closed queue');
    this.items.push(item);
    this.takers.shift()?.();
  }

  /**
   * The next item, waiting for one; undefined once the queue is closed and empty.
   * @throws the signal's reason once aborted.
   */
  async take(): Promise<T | undefined> {
    while (this.length === 0) {
      if (this.closed) return undefined;
      await this.wait(this.takers);
    }
    const item = this.items[this.head]!;
    this.items[this.head] = undefined as T;
    this.head++;
    // Compact now and then so the array does not grow without bound.
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    this.pushers.shift()?.();
    return item;
  }

  /** No more pushes; wakes everyone waiting. */
  close(): void {
    this.closed = true;
    for (const w of this.takers.splice(0)) w();
    for (const w of this.pushers.splice(0)) w();
  }
}

/** A counting semaphore whose waits give up when the signal is aborted. */
export class Slots {
  private free: number;
  private readonly waiters: (() => void)[] = [];

  constructor(count: number) {
    this.free = count;
  }

  /** @throws the signal's reason once aborted. */
  async acquire(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.free > 0 && this.waiters.length === 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        const i = this.waiters.indexOf(grant);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal!.reason);
      };
      const grant = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(grant);
    });
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.free++;
  }
}
