/**
 * A byte budget: bounds the chunk bytes a backup holds between reading and packing, whatever the
 * number or size of files. Readers acquire bytes before (or right after) each read; the packer
 * releases a chunk's bytes once the chunk has been deduplicated or packed.
 *
 * Waiters are served in FIFO order. A request is granted when it fits under the limit, or when
 * nothing else is outstanding (so one chunk larger than the limit still passes instead of
 * deadlocking). `ownHeld` lets a reader that holds bytes of a chunk still being assembled (which
 * only it can turn into releasable work) count them as its own: it is granted as soon as nobody
 * else holds bytes, so it can always finish its chunk — ahead of earlier waiters, which may be
 * waiting for exactly those bytes.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiters: { bytes: number; ownHeld: number; resolve: () => void }[] = [];

  /** @throws RangeError for a limit below 1. */
  constructor(readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError(`byte budget must be positive, got ${limit}`);
  }

  /** Bytes currently held. */
  get held(): number {
    return this.used;
  }

  /** Whether a waiter holding `ownHeld` bytes is the only holder (and must go on to free them). */
  private soleHolder(ownHeld: number): boolean {
    return ownHeld > 0 && this.used - ownHeld <= 0;
  }

  private fits(bytes: number, ownHeld: number): boolean {
    return this.used + bytes <= this.limit || this.used - ownHeld <= 0;
  }

  /**
   * Waits until `bytes` fit, then holds them.
   * @throws the signal's reason when aborted while waiting.
   */
  async acquire(bytes: number, ownHeld = 0, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if ((this.waiters.length === 0 && this.fits(bytes, ownHeld)) || this.soleHolder(ownHeld)) {
      this.used += bytes;
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const waiter = { bytes, ownHeld, resolve };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal!.reason);
        this.wake();
      };
      waiter.resolve = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Gives bytes back and wakes waiters that now fit. */
  release(bytes: number): void {
    this.used -= bytes;
    if (this.used < 0) this.used = 0;
    this.wake();
  }

  private wake(): void {
    while (this.waiters.length > 0) {
      let i = 0;
      if (!this.fits(this.waiters[0]!.bytes, this.waiters[0]!.ownHeld)) {
        i = this.waiters.findIndex((w) => this.soleHolder(w.ownHeld));
        if (i < 0) return;
      }
      const [w] = this.waiters.splice(i, 1);
      this.used += w!.bytes;
      w!.resolve();
    }
  }
}
