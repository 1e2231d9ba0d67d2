/**
 * The concurrency primitives the engines share: a FIFO of parked callers (WaitQueue), a counting
 * semaphore, a byte budget, and a bounded window of running tasks.
 *
 * Every wait is served in FIFO order (ByteBudget says where it deviates) and gives up with the
 * signal's reason once the signal is aborted: the caller is removed first, so nothing is ever
 * granted to a caller that has left.
 */

/** Callers parked until someone wakes them, each with the value it waits with, in arrival order. */
export class WaitQueue<T = void> {
  private readonly parked: { value: T; wake: () => void }[] = [];

  get length(): number {
    return this.parked.length;
  }

  /** The value the caller at `index` waits with (0: the longest waiting). */
  at(index: number): T | undefined {
    return this.parked[index]?.value;
  }

  findIndex(predicate: (value: T) => boolean): number {
    return this.parked.findIndex((p) => predicate(p.value));
  }

  /**
   * Parks the caller until it is woken.
   * @param onLeave runs after an aborted caller was removed (its place may have held others back).
   * @throws the signal's reason once aborted (also when it already is).
   */
  wait(value: T, signal?: AbortSignal, onLeave?: () => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = (): void => {
        const i = this.parked.indexOf(entry);
        if (i >= 0) this.parked.splice(i, 1);
        reject(signal!.reason);
        onLeave?.();
      };
      const entry = {
        value,
        wake: (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.parked.push(entry);
    });
  }

  /** Wakes the caller at `index` (default: the longest waiting). @returns its value; undefined when there is none. */
  wake(index = 0): T | undefined {
    const [entry] = this.parked.splice(index, 1);
    entry?.wake();
    return entry?.value;
  }

  wakeAll(): void {
    for (const entry of this.parked.splice(0)) entry.wake();
  }
}

/** A counting semaphore: at most `limit` holders; the others wait their turn. */
export class Semaphore {
  private active = 0;
  private readonly waiting = new WaitQueue();

  /** @throws RangeError for a limit that is not a positive integer. */
  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`concurrency limit must be a positive integer, got ${limit}`);
  }

  /** Slots held now. */
  get inUse(): number {
    return this.active;
  }

  /**
   * Waits for a slot; returns its release function (idempotent).
   * @throws the signal's reason once aborted.
   */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.active < this.limit) this.active++;
    else await this.waiting.wait(undefined, signal);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      // The slot passes straight to the next waiter: `active` is unchanged.
      if (this.waiting.length > 0) this.waiting.wake();
      else this.active--;
    };
  }

  /** Runs `fn` in a slot. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/**
 * A byte budget: bounds the bytes held between acquire() and release(), whatever the number or
 * size of the requests. Bytes may be released in other amounts than they were acquired.
 *
 * A request is granted when it fits under the limit, or when nothing else is held (so one request
 * larger than the limit still passes, alone, instead of deadlocking). Waiters are served in FIFO
 * order, with one exception: `ownHeld` lets a caller count bytes it already holds and only it can
 * free (a chunk still being assembled) as its own; it is granted as soon as nobody else holds
 * bytes, ahead of earlier waiters, which may be waiting for exactly those bytes.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiting = new WaitQueue<{ bytes: number; ownHeld: number }>();

  /** @throws RangeError for a limit below 1. */
  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError(`byte budget must be positive, got ${limit}`);
  }

  /** Bytes held now. */
  get held(): number {
    return this.used;
  }

  /** Whether a caller holding `ownHeld` bytes is the only holder (and must go on to free them). */
  private soleHolder(ownHeld: number): boolean {
    return ownHeld > 0 && this.used - ownHeld <= 0;
  }

  private fits(bytes: number, ownHeld: number): boolean {
    return this.used + bytes <= this.limit || this.used - ownHeld <= 0;
  }

  /**
   * Waits until `bytes` fit, then holds them.
   * @throws the signal's reason once aborted.
   */
  async acquire(bytes: number, ownHeld = 0, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if ((this.waiting.length === 0 && this.fits(bytes, ownHeld)) || this.soleHolder(ownHeld)) {
      this.used += bytes;
      return;
    }
    await this.waiting.wait({ bytes, ownHeld }, signal, () => this.grant());
  }

  /** Gives bytes back and wakes the waiters that now fit. */
  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
    this.grant();
  }

  private grant(): void {
    while (this.waiting.length > 0) {
      const head = this.waiting.at(0)!;
      const i = this.fits(head.bytes, head.ownHeld) ? 0 : this.waiting.findIndex((w) => this.soleHolder(w.ownHeld));
      if (i < 0) return;
      this.used += this.waiting.wake(i)!.bytes;
    }
  }
}

/**
 * A bounded window of running tasks, filled by one producer: room() waits until fewer than
 * `limit` run, start() adds one. The first task to fail is remembered: `onFailure` hears of it
 * at once, and room(), drain() and throwIfFailed() throw it from then on. Every task's rejection
 * is handled here, so a failed task that nobody awaits is never an unhandled rejection.
 */
export class TaskWindow {
  private readonly running = new Set<Promise<void>>();
  private readonly settled = new WaitQueue();
  private failure: { err: unknown } | undefined;

  /**
   * @param onFailure told of the first failure, synchronously; must not throw.
   * @throws RangeError for a limit that is not a positive integer.
   */
  constructor(
    readonly limit: number,
    private readonly onFailure?: (err: unknown) => void,
  ) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`task window must be a positive integer, got ${limit}`);
  }

  /** Tasks running now. */
  get size(): number {
    return this.running.size;
  }

  /** @throws the first failure of a task, if any. */
  throwIfFailed(): void {
    if (this.failure) throw this.failure.err;
  }

  /**
   * Waits until fewer than `limit` tasks run.
   * @throws the first failure; the signal's reason once aborted.
   */
  async room(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    this.throwIfFailed();
    while (this.running.size >= this.limit) {
      await this.settled.wait(undefined, signal);
      this.throwIfFailed();
    }
  }

  /**
   * Counts a started task in the window.
   * @throws RangeError when the window is full: wait for room() first.
   */
  start(task: Promise<unknown>): void {
    if (this.running.size >= this.limit) throw new RangeError(`task window full (${this.limit} running): wait for room() first`);
    const done: Promise<void> = task
      .then(
        () => undefined,
        (err: unknown) => {
          if (this.failure) return;
          this.failure = { err };
          this.onFailure?.(err);
        },
      )
      .then(() => {
        this.running.delete(done);
        this.settled.wakeAll();
      });
    this.running.add(done);
  }

  /** room(), then start(task()). */
  async add(task: () => Promise<unknown>, signal?: AbortSignal): Promise<void> {
    await this.room(signal);
    this.start(task());
  }

  /** Waits until every task has settled. Never throws. */
  async settle(): Promise<void> {
    while (this.running.size > 0) await this.settled.wait();
  }

  /**
   * Waits until every task has settled.
   * @throws the first failure.
   */
  async drain(): Promise<void> {
    await this.settle();
    this.throwIfFailed();
  }
}
