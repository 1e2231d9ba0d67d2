/**
 * Random access into an age v1 file: read the header once (unwrap the file key, verify the MAC),
 * then map any plaintext range to the few STREAM segments that hold it, fetch just those bytes
 * and decrypt them, verifying every tag and the final flag on the final segment.
 *
 * The pieces are separate so that a caller fetching many ranges of one file (restore) can open
 * the header once (openAgeFile), plan ranges (segmentRange), merge and fetch them its own way, and
 * decrypt what it fetched (decryptRange / decryptSegments).
 */
import { AgeError } from './errors.js';
import { findHeaderEnd, parseHeader, unwrapFileKey, MAX_HEADER_SIZE } from './header.js';
import type { Identity } from './keys.js';
import {
  decryptSegments,
  payloadKey,
  plaintextSize,
  segmentCount,
  PAYLOAD_NONCE_SIZE,
  SEGMENT_CIPHER_SIZE,
  SEGMENT_SIZE,
} from './stream.js';

/**
 * Reads bytes [start, end) of the age file. Must resolve to exactly end - start bytes (a shorter
 * answer is reported as corrupt data).
 */
export type ReadRange = (start: number, end: number) => Promise<Buffer>;

/** What random access needs to know about one age file, once its header is open. */
export interface AgeFileInfo {
  /** Header bytes through the MAC line's newline. */
  readonly headerLength: number;
  /** Offset of segment 0: headerLength + 16 (the payload nonce). */
  readonly payloadStart: number;
  readonly ciphertextSize: number;
  readonly plaintextSize: number;
  readonly segmentCount: number;
  /** The STREAM key. Secret: never log or store it. */
  readonly payloadKey: Buffer;
}

/** The ciphertext that covers a plaintext range. */
export interface SegmentPlan {
  /** First and last (inclusive) segment to decrypt; lastSegment < firstSegment for an empty range. */
  firstSegment: number;
  lastSegment: number;
  /** Index of the file's final segment (decrypted with the final flag when included). */
  finalSegment: number;
  /** Byte range [cipherStart, cipherEnd) of the age file to fetch. */
  cipherStart: number;
  cipherEnd: number;
  /** Offset of the wanted range in the decrypted segments' plaintext, and its length. */
  skip: number;
  length: number;
}

const INITIAL_HEADER_READ = 4096;

/**
 * Plans the fetch of plaintext [plainOffset, plainOffset + plainLength) from an age file of
 * `cipherSize` bytes with a `headerLength`-byte header. Pure arithmetic, no I/O:
 * first = ⌊offset / 65536⌋, last = ⌊(offset + length − 1) / 65536⌋,
 * cipherStart = headerLength + 16 + first·65552, cipherEnd = min(headerLength + 16 + (last+1)·65552, size).
 * @throws AgeError 'payload' when the range is beyond the plaintext or the size is no valid
 *   STREAM length; RangeError for negative or non-integer arguments.
 */
export function segmentRange(headerLength: number, cipherSize: number, plainOffset: number, plainLength: number): SegmentPlan {
  if (!Number.isSafeInteger(plainOffset) || !Number.isSafeInteger(plainLength) || plainOffset < 0 || plainLength < 0) {
    throw new RangeError(`invalid plaintext range ${plainOffset}+${plainLength}`);
  }
  const plainSize = plaintextSize(cipherSize, headerLength);
  if (plainOffset + plainLength > plainSize) {
    throw new AgeError('payload', `range ${plainOffset}+${plainLength} lies beyond the ${plainSize}-byte plaintext (truncated file?)`);
  }
  const payloadStart = headerLength + PAYLOAD_NONCE_SIZE;
  const finalSegment = segmentCount(plainSize) - 1;
  const firstSegment = Math.floor(plainOffset / SEGMENT_SIZE);
  if (plainLength === 0) {
    const at = payloadStart + firstSegment * SEGMENT_CIPHER_SIZE;
    return { firstSegment, lastSegment: firstSegment - 1, finalSegment, cipherStart: at, cipherEnd: at, skip: 0, length: 0 };
  }
  const lastSegment = Math.floor((plainOffset + plainLength - 1) / SEGMENT_SIZE);
  return {
    firstSegment,
    lastSegment,
    finalSegment,
    cipherStart: payloadStart + firstSegment * SEGMENT_CIPHER_SIZE,
    cipherEnd: Math.min(payloadStart + (lastSegment + 1) * SEGMENT_CIPHER_SIZE, cipherSize),
    skip: plainOffset - firstSegment * SEGMENT_SIZE,
    length: plainLength,
  };
}

async function readExact(readRange: ReadRange, start: number, end: number, kind: 'header' | 'payload'): Promise<Buffer> {
  const b = await readRange(start, end);
  if (b.length !== end - start) {
    throw new AgeError(kind, `short read of age file bytes ${start}-${end}: got ${b.length} bytes`);
  }
  return b;
}

/**
 * Opens an age file for random access: reads the header (4 KiB first, more only if the header
 * is longer), unwraps the file key, verifies the header MAC and reads the payload nonce.
 * @throws AgeError 'header' | 'no-match' | 'hmac'; 'payload' when `cipherSize` is no valid
 *   STREAM length. Errors of `readRange` propagate.
 */
export async function openAgeFile(readRange: ReadRange, cipherSize: number, identities: readonly Identity[]): Promise<AgeFileInfo> {
  let buf = await readExact(readRange, 0, Math.min(INITIAL_HEADER_READ, cipherSize), 'header');
  let headerLength = findHeaderEnd(buf);
  while (headerLength === -1) {
    if (buf.length >= cipherSize) throw new AgeError('header', 'truncated age header');
    const next = Math.min(buf.length * 4, cipherSize, MAX_HEADER_SIZE);
    buf = Buffer.concat([buf, await readExact(readRange, buf.length, next, 'header')]);
    headerLength = findHeaderEnd(buf);
  }
  const header = parseHeader(buf);
  const fileKey = unwrapFileKey(header, identities);
  const payloadStart = headerLength + PAYLOAD_NONCE_SIZE;
  if (cipherSize < payloadStart) throw new AgeError('header', 'age payload nonce is missing or truncated');
  const nonce = buf.length >= payloadStart ? buf.subarray(headerLength, payloadStart) : await readExact(readRange, headerLength, payloadStart, 'header');
  const plainSize = plaintextSize(cipherSize, headerLength);
  return {
    headerLength,
    payloadStart,
    ciphertextSize: cipherSize,
    plaintextSize: plainSize,
    segmentCount: segmentCount(plainSize),
    payloadKey: payloadKey(fileKey, nonce),
  };
}

/**
 * Decrypts plaintext [plainOffset, plainOffset + plainLength) from ciphertext the caller fetched:
 * `fetched` holds file bytes starting at `fetchedStart` and must cover the plan's
 * [cipherStart, cipherEnd) (it may be a larger, merged range).
 * @throws AgeError 'payload' when a covered segment fails authentication or the range is out of
 *   bounds; RangeError when `fetched` does not cover the needed bytes.
 */
export function decryptRange(file: AgeFileInfo, fetchedStart: number, fetched: Buffer, plainOffset: number, plainLength: number): Buffer {
  const plan = segmentRange(file.headerLength, file.ciphertextSize, plainOffset, plainLength);
  if (plan.length === 0) return Buffer.alloc(0);
  if (plan.cipherStart < fetchedStart || plan.cipherEnd > fetchedStart + fetched.length) {
    throw new RangeError(`fetched bytes ${fetchedStart}+${fetched.length} do not cover ${plan.cipherStart}-${plan.cipherEnd}`);
  }
  const bytes = fetched.subarray(plan.cipherStart - fetchedStart, plan.cipherEnd - fetchedStart);
  const plain = decryptSegments(file.payloadKey, plan.firstSegment, bytes, plan.finalSegment);
  return plain.subarray(plan.skip, plan.skip + plan.length);
}

/** A ReadRange over bytes in memory. */
export function bufferReader(bytes: Buffer): ReadRange {
  return (start, end) => Promise.resolve(bytes.subarray(start, end));
}

/** Reads plaintext ranges of one age file, fetching only the segments that hold them. */
export class AgeRandomAccess {
  private constructor(
    private readonly readRange: ReadRange,
    /** The opened header: reuse it with decryptRange for ranges fetched elsewhere. */
    readonly file: AgeFileInfo,
  ) {}

  /**
   * Opens the header (see openAgeFile).
   * @throws AgeError 'header' | 'no-match' | 'hmac' | 'payload'.
   */
  static async open(readRange: ReadRange, cipherSize: number, identities: readonly Identity[]): Promise<AgeRandomAccess> {
    return new AgeRandomAccess(readRange, await openAgeFile(readRange, cipherSize, identities));
  }

  /** Random access over a file whose header was already opened. */
  static fromFile(readRange: ReadRange, file: AgeFileInfo): AgeRandomAccess {
    return new AgeRandomAccess(readRange, file);
  }

  get plaintextSize(): number {
    return this.file.plaintextSize;
  }

  /** The ciphertext range read() would fetch for this plaintext range. */
  plan(offset: number, length: number): SegmentPlan {
    return segmentRange(this.file.headerLength, this.file.ciphertextSize, offset, length);
  }

  /**
   * Plaintext [offset, offset + length), with one readRange call over the covering segments.
   * @throws AgeError 'payload' on a range beyond the plaintext or a segment that fails
   *   authentication (never returns unauthenticated bytes). Errors of readRange propagate.
   */
  async read(offset: number, length: number): Promise<Buffer> {
    const plan = this.plan(offset, length);
    if (plan.length === 0) return Buffer.alloc(0);
    const bytes = await readExact(this.readRange, plan.cipherStart, plan.cipherEnd, 'payload');
    return decryptRange(this.file, plan.cipherStart, bytes, offset, length);
  }
}
