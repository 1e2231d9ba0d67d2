/**
 * What the chunk pool and its worker may hand to each other with postMessage's transfer list.
 * Imported by both sides, so it stays free of either's code.
 */
import { isMarkedAsUntransferable } from 'node:worker_threads';

/**
 * The bytes of `view` in an ArrayBuffer of exactly their size that may be transferred: the
 * view's own when it is all of it, else a copy. Never a view into a larger buffer (other bytes,
 * other chunks) nor Node's shared pool slab, which Node marks untransferable (Node 22 serves
 * Buffers up to 4 KiB from it, Node 24 up to 32 KiB).
 */
export function ownArrayBuffer(view: Uint8Array): ArrayBuffer {
  const ab = view.buffer;
  if (ab instanceof ArrayBuffer && view.byteOffset === 0 && view.byteLength === ab.byteLength && !isMarkedAsUntransferable(ab)) return ab;
  return copyToArrayBuffer(view);
}

/** A copy of `view` in its own ArrayBuffer of exactly its size. */
export function copyToArrayBuffer(view: Uint8Array): ArrayBuffer {
  // allocUnsafeSlow: its own ArrayBuffer (never the pool slab), no zero-fill before the copy.
  const copy = Buffer.allocUnsafeSlow(view.byteLength);
  copy.set(view);
  return copy.buffer as ArrayBuffer;
}
