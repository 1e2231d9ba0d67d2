import { WaitQueue } from '../util/concurrency.js';

/**
 * A bounded FIFO queue between async producers and one consumer. push() waits while the queue is
 * full, take() while it is empty; both give up with the signal's reason once it is aborted.
 * After close(), take() drains what is left and then returns undefined.
 */
export class AsyncQueue<T> {
  private readonly items: T[] = [];
  private head = 0;
  private closed = false;
  private readonly takers = new WaitQueue();
  private readonly pushers = new WaitQueue();

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

  /**
   * Appends an item, waiting for room.
   * @throws Error after close(); the signal's reason once aborted.
   */
  async push(item: T): Promise<void> {
    while (this.length >= this.capacity && !this.closed) await this.pushers.wait(undefined, this.signal);
    if (this.closed) throw new Error('push on a closed queue');
    this.items.push(item);
    this.takers.wake();
  }

  /**
   * The next item, waiting for one; undefined once the queue is closed and empty.
   * @throws the signal's reason once aborted.
   */
  async take(): Promise<T | undefined> {
    while (this.length === 0) {
      if (this.closed) return undefined;
      await this.takers.wait(undefined, this.signal);
    }
    const item = this.items[this.head]!;
    this.items[this.head] = undefined as T;
    this.head++;
    // Compact now and then so the array does not grow without bound.
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    this.pushers.wake();
    return item;
  }

  /** No more pushes; wakes everyone waiting. */
  close(): void {
    this.closed = true;
    this.takers.wakeAll();
    this.pushers.wakeAll();
  }
}
