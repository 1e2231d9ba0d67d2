/**
 * Reading chunks back from a blob: decrypt just the STREAM segments that hold a chunk's frame,
 * decompress the frame and verify the chunk against its id (SHA-256 of its plaintext).
 */
import { createHash } from 'node:crypto';
import { FrameStream, decompressFrame, decompressFrameInto } from '../compress/zstd.js';
import { AgeError, SEGMENT_CIPHER_SIZE, SEGMENT_SIZE, decryptRange, openSegments, type AgeFileInfo, type AgeRandomAccess, type ReadRange } from '../crypto/index.js';
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

function checkId(chunk: Uint8Array, expectedId: Uint8Array, what: string, hashed = false): void {
  const id = hashed ? Buffer.from(chunk) : createHash('sha256').update(chunk).digest();
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

/** Segments of ciphertext streamChunk decrypts at a time (1 MiB). */
const STREAM_SEGMENTS = 16;

export interface StreamChunkOptions {
  /**
   * Called with each piece of the chunk, in order, at `pos` in the chunk: a view valid only
   * until the returned promise settles. Resolves false when the rest is not wanted (nothing is
   * checked then).
   */
  onPiece(piece: Buffer, pos: number): Promise<boolean>;
  /** Called once, before anything is decompressed, with the zstd window the frame asks for. */
  onWindow?(bytes: number): Promise<void>;
}

/**
 * Decodes one chunk without holding it: `cipher` yields the stored bytes of the segments
 * holding its frame (from segment floor(ref.offset / 64 KiB) on); they are decrypted 1 MiB at a
 * time, the frame decompressed in 1 MiB steps (FrameStream: the frame must declare
 * `ref.plainLength`, and more content is refused at once) and each piece handed to `onPiece`
 * and hashed. Memory: about 3 MiB and the frame's zstd window, whatever the chunk's size.
 * @returns false when `onPiece` declined the rest, true when the whole chunk checked out.
 * @throws AgeError 'payload' when a segment fails authentication or is truncated; VaultikError
 *   (DATA) as decodeChunk; errors of `cipher` and the callbacks propagate.
 */
export async function streamChunk(file: AgeFileInfo, cipher: AsyncIterable<Buffer>, ref: FrameRef, expectedId: Uint8Array, options: StreamChunkOptions): Promise<boolean> {
  const frame = new FrameStream(ref.plainLength);
  try {
    const hash = createHash('sha256');
    const frameEnd = ref.offset + ref.length;
    let segment = Math.floor(ref.offset / SEGMENT_SIZE);
    let plainAt = segment * SEGMENT_SIZE; // blob plaintext offset of the next decrypted byte
    let pos = 0;
    let wanted = true;
    const consume = async (pieces: Generator<Buffer>): Promise<void> => {
      for (const piece of pieces) {
        if (piece.length === 0) {
          // The header is checked, nothing decompressed yet.
          await options.onWindow?.(Math.min(frame.windowSize!, ref.plainLength));
          continue;
        }
        hash.update(piece);
        if (!(await options.onPiece(piece, pos))) {
          wanted = false;
          return;
        }
        pos += piece.length;
      }
    };
    const plains: Buffer[] = [];
    const feed = async (bytes: Buffer): Promise<void> => {
      // Segment by segment, no concatenation: less garbage.
      openSegments(file.payloadKey, segment, bytes, file.segmentCount - 1, (_k, plain) => plains.push(plain), (_i, why) => {
        throw new AgeError('payload', why);
      });
      segment += Math.ceil(bytes.length / SEGMENT_CIPHER_SIZE);
      for (const plain of plains) {
        const from = Math.max(ref.offset - plainAt, 0);
        const to = Math.min(frameEnd - plainAt, plain.length);
        plainAt += plain.length;
        if (to > from && wanted) await consume(frame.push(plain.subarray(from, to)));
      }
      plains.length = 0;
    };
    const buf = Buffer.allocUnsafe(STREAM_SEGMENTS * SEGMENT_CIPHER_SIZE);
    let fill = 0;
    for await (const piece of cipher) {
      if (!wanted) return false;
      for (let at = 0; at < piece.length; ) {
        const n = piece.copy(buf, fill, at);
        fill += n;
        at += n;
        if (fill === buf.length) {
          await feed(buf);
          fill = 0;
        }
      }
    }
    if (fill > 0) await feed(buf.subarray(0, fill));
    if (!wanted) return false;
    await consume(frame.end());
    if (!wanted) return false;
    checkId(hash.digest(), expectedId, `chunk at blob offset ${ref.offset}`, true);
    return true;
  } finally {
    frame.close();
  }
}
