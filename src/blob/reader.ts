/**
 * Reading chunks back from a blob: decrypt just the STREAM segments that hold a chunk's frame,
 * decompress the frame and verify the chunk against its id (SHA-256 of its plaintext).
 */
import { createHash } from 'node:crypto';
import { decompressFrame, decompressFrameInto } from '../compress/zstd.js';
import { decryptRange, type AgeFileInfo, type AgeRandomAccess, type ReadRange } from '../crypto/index.js';
import { VaultikError, ExitCode } from '../errors.js';
import type { Storage } from '../storage/types.js';

/** A chunk's frame in a blob's plaintext (the blob-relative part of a ChunkLocation). */
export interface FrameRef {
  /** Offset of the frame in the blob plaintext. */
  offset: number;
  /** Length of the compressed frame. */
  length: number;
  /** Length of the chunk plaintext. */
  plainLength: number;
}

/**
 * Decompresses one frame and checks it.
 * @throws VaultikError (DATA) when the frame is corrupt, decompresses to other than
 *   `ref.plainLength` bytes, or its SHA-256 differs from `expectedId`.
 */
export function decodeChunk(frame: Buffer, ref: FrameRef, expectedId?: Buffer): Buffer {
  const chunk = decompressFrame(frame, ref.plainLength);
  if (expectedId !== undefined) checkId(chunk, expectedId, `chunk at blob offset ${ref.offset}`);
  return chunk;
}

/**
 * decodeChunk() into `out`, exactly the chunk's plain length (the restore's decode workers fill
 * shared memory this way); always checked against `expectedId`.
 * @throws VaultikError (DATA) as decodeChunk.
 */
export function decodeChunkInto(frame: Uint8Array, out: Uint8Array, expectedId: Uint8Array): void {
  decompressFrameInto(frame, out);
  checkId(out, expectedId, 'chunk');
}

function checkId(chunk: Uint8Array, expectedId: Uint8Array, what: string): void {
  const id = createHash('sha256').update(chunk).digest();
  if (!id.equals(expectedId)) {
    throw new VaultikError(`${what} has SHA-256 ${id.toString('hex')}, expected ${Buffer.from(expectedId).toString('hex')}`, ExitCode.DATA);
  }
}

/**
 * Reads one chunk by random access (only the segments holding its frame are fetched).
 * @throws AgeError 'payload' (DATA) when a segment fails authentication; VaultikError (DATA) as
 *   decodeChunk. Errors of the reader's ReadRange propagate.
 */
export async function readChunk(ra: AgeRandomAccess, ref: FrameRef, expectedId?: Buffer): Promise<Buffer> {
  return decodeChunk(await ra.read(ref.offset, ref.length), ref, expectedId);
}

/**
 * Decodes one chunk from ciphertext the caller already fetched (a merged range starting at
 * `fetchedStart` that covers the chunk's segments; see segmentRange).
 * @throws as readChunk; RangeError when `fetched` does not cover the chunk's segments.
 */
export function chunkFromFetched(file: AgeFileInfo, fetchedStart: number, fetched: Buffer, ref: FrameRef, expectedId?: Buffer): Buffer {
  return decodeChunk(decryptRange(file, fetchedStart, fetched, ref.offset, ref.length), ref, expectedId);
}

/** A ReadRange over one object of a Storage (one ranged GET per call). */
export function storageReadRange(storage: Storage, key: string, signal?: AbortSignal): ReadRange {
  return async (start, end) => {
    if (end <= start) return Buffer.alloc(0);
    const stream = await storage.get(key, { offset: start, length: end - start }, signal ? { signal } : undefined);
    const parts: Buffer[] = [];
    for await (const c of stream) parts.push(c as Buffer);
    return Buffer.concat(parts);
  };
}
