/**
 * Reused shared memory for the restore pipeline: ciphertext of fetched ranges and decoded
 * chunks live in SharedArrayBuffers that the decode workers read and fill in place (no copy, no
 * transfer) and that are handed out again once their range or batch is done.
 *
 * Why: allocating a fresh buffer per range, per batch and per result made V8 run about 170 full
 * garbage collections (external memory pressure) and the kernel fault in fresh pages for every
 * one of them; together about 1.4 s of main-thread time in a 2 GB restore.
 *
 * Memory: buffers in use are bounded by the caller (the engine's byte budget); free buffers are
 * kept up to `keepBytes` in total, larger leftovers are dropped (a few huge chunks do not pin
 * their buffers). A buffer is never handed out twice at once.
 */

/**
 * Sizes are rounded up to a power of two (at least 1 MiB), so one buffer serves every request
 * of its class: ranges and batches vary in size, and chunks of large files (2.5-40 MB with the
 * default chunk_size) would otherwise rarely fit a free buffer. Pages of a buffer that are never
 * touched take no memory.
 */
function sizeClass(n: number): number {
  let size = 1024 * 1024;
  while (size < n) size *= 2;
  return size;
}

export class SharedBuffers {
  private readonly free: SharedArrayBuffer[] = [];
  private freeBytes = 0;

  constructor(private readonly keepBytes: number) {}

  /** A view of `n` bytes of a free (or new) shared buffer; contents are undefined. */
  take(n: number): Buffer {
    let best = -1;
    for (let i = 0; i < this.free.length; i++) {
      const size = this.free[i]!.byteLength;
      if (size >= n && (best < 0 || size < this.free[best]!.byteLength)) best = i;
    }
    let sab: SharedArrayBuffer;
    if (best >= 0) {
      sab = this.free[best]!;
      this.free.splice(best, 1);
      this.freeBytes -= sab.byteLength;
    } else {
      sab = new SharedArrayBuffer(sizeClass(n));
    }
    return Buffer.from(sab, 0, n);
  }

  /** Returns a buffer from `take`; no view of it may be used afterwards. */
  give(view: Buffer): void {
    const sab = view.buffer as SharedArrayBuffer;
    this.free.push(sab);
    this.freeBytes += sab.byteLength;
    // Over the limit: drop the largest free buffers first.
    while (this.freeBytes > this.keepBytes && this.free.length > 0) {
      let largest = 0;
      for (let i = 1; i < this.free.length; i++) if (this.free[i]!.byteLength > this.free[largest]!.byteLength) largest = i;
      this.freeBytes -= this.free[largest]!.byteLength;
      this.free.splice(largest, 1);
    }
  }
}
