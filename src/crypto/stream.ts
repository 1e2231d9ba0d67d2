/**
 * The age v1 payload: a 16-byte nonce, then the STREAM construction over 64 KiB segments.
 *
 * payload key = HKDF-SHA256(ikm = file key, salt = nonce, info = "payload")
 * segment i   = ChaCha20-Poly1305(payload key, nonce = i as 11 bytes big-endian ‖ final flag,
 *               plaintext[i·65536 .. (i+1)·65536)) = ciphertext ‖ 16-byte tag
 *
 * Every segment but the last holds exactly 64 KiB; the last holds 1..64 KiB (0 only when the whole
 * plaintext is empty) and has the final flag 0x01. So positions are pure arithmetic: segment i
 * starts at headerLength + 16 + i·65552 in the file.
 */
import { randomBytes, type KeyObject } from 'node:crypto';
import { AgeError } from './errors.js';
import { encodeHeader, findHeaderEnd, parseHeader, unwrapFileKey, MAX_HEADER_SIZE } from './header.js';
import { FILE_KEY_SIZE, type Identity, type Recipient } from './keys.js';
import { cipherKey, hkdf, open, seal, TAG_SIZE } from './primitives.js';

/** Plaintext bytes per STREAM segment. */
export const SEGMENT_SIZE = 64 * 1024;
/** Stored bytes per full segment (plaintext + tag). */
export const SEGMENT_CIPHER_SIZE = SEGMENT_SIZE + TAG_SIZE;
/** Bytes of the payload nonce between the header and the first segment. */
export const PAYLOAD_NONCE_SIZE = 16;

/** Derives the STREAM key from the file key and the payload nonce. */
export function payloadKey(fileKey: Uint8Array, nonce: Uint8Array): Buffer {
  return hkdf(fileKey, nonce, 'payload');
}

/** Writes the STREAM nonce of segment `index` into the reusable 12-byte `nonce`. */
function setNonce(nonce: Buffer, index: number, final: boolean): void {
  // 11-byte big-endian counter: the top 5 bytes stay zero below 2^48 segments (16 EiB).
  nonce.fill(0, 0, 5);
  nonce.writeUIntBE(index, 5, 6);
  nonce[11] = final ? 1 : 0;
}

/** Number of segments for a plaintext of `size` bytes (at least one, even when empty). */
export function segmentCount(plaintextSize: number): number {
  return Math.max(1, Math.ceil(plaintextSize / SEGMENT_SIZE));
}

/**
 * Size of the age file for a plaintext of `plaintextSize` bytes and a header of `headerLength`
 * bytes (up to and including the MAC line).
 */
export function ciphertextSize(plaintextSize: number, headerLength: number): number {
  return headerLength + PAYLOAD_NONCE_SIZE + plaintextSize + TAG_SIZE * segmentCount(plaintextSize);
}

/**
 * Plaintext size of an age file of `cipherSize` bytes whose header is `headerLength` bytes.
 * @throws AgeError 'payload' when no valid STREAM has that size (truncated or extended file).
 */
export function plaintextSize(cipherSize: number, headerLength: number): number {
  const payload = cipherSize - headerLength - PAYLOAD_NONCE_SIZE;
  if (payload < TAG_SIZE) throw new AgeError('payload', 'age payload is truncated (no complete segment)');
  const segments = Math.ceil(payload / SEGMENT_CIPHER_SIZE);
  const last = payload - (segments - 1) * SEGMENT_CIPHER_SIZE;
  if (last < TAG_SIZE || (last === TAG_SIZE && segments > 1)) {
    throw new AgeError('payload', `age payload of ${payload} bytes is not a valid STREAM length (truncated?)`);
  }
  return payload - segments * TAG_SIZE;
}

/**
 * Streaming age encryption with constant memory: holds at most one 64 KiB segment of plaintext
 * (a segment is sealed as soon as more input proves it is not the last one).
 */
export class AgeEncryptor {
  /** Header length (through the MAC line), as used by ciphertextSize/plaintextSize. */
  readonly headerLength: number;
  private prefix: Buffer | null;
  private readonly key: KeyObject;
  private readonly nonce = Buffer.alloc(12);
  private readonly pending = Buffer.allocUnsafe(SEGMENT_SIZE);
  private pendingLength = 0;
  private index = 0;
  private consumed = 0;
  private finished = false;

  /** @throws AgeError 'key' when there is no recipient. */
  constructor(recipients: readonly Recipient[]) {
    if (recipients.length === 0) throw new AgeError('key', 'at least one age recipient is required');
    const fileKey = randomBytes(FILE_KEY_SIZE);
    const header = encodeHeader(
      recipients.map((r) => r.wrapFileKey(fileKey)),
      fileKey,
    );
    const nonce = randomBytes(PAYLOAD_NONCE_SIZE);
    this.headerLength = header.length;
    this.prefix = Buffer.concat([header, nonce]);
    this.key = cipherKey(payloadKey(fileKey, nonce));
  }

  /** Plaintext bytes accepted so far. */
  get plaintextSize(): number {
    return this.consumed;
  }

  /** Size of the whole age file if final() were called now. */
  get ciphertextSize(): number {
    return ciphertextSize(this.consumed, this.headerLength);
  }

  private sealSegment(out: Buffer[], plain: Buffer, final: boolean): void {
    setNonce(this.nonce, this.index++, final);
    const [ct, tag] = seal(this.key, this.nonce, plain);
    out.push(ct, tag);
  }

  /**
   * Encrypts more plaintext. The returned buffers are new (never aliases of `plain`) and are the
   * ciphertext ready so far, in order; the first call's output starts with the header.
   * @throws Error after final().
   */
  update(plain: Buffer): Buffer[] {
    if (this.finished) throw new Error('AgeEncryptor.update after final');
    const out: Buffer[] = [];
    if (this.prefix) {
      out.push(this.prefix);
      this.prefix = null;
    }
    this.consumed += plain.length;
    let pos = 0;
    while (pos < plain.length) {
      if (this.pendingLength === SEGMENT_SIZE) {
        // More input follows, so the held segment is not the last.
        this.sealSegment(out, this.pending, false);
        this.pendingLength = 0;
      }
      if (this.pendingLength === 0 && plain.length - pos > SEGMENT_SIZE) {
        // Fast path: a whole segment of input with more behind it, sealed without copying.
        this.sealSegment(out, plain.subarray(pos, pos + SEGMENT_SIZE), false);
        pos += SEGMENT_SIZE;
        continue;
      }
      const n = plain.copy(this.pending, this.pendingLength, pos, Math.min(plain.length, pos + SEGMENT_SIZE - this.pendingLength));
      this.pendingLength += n;
      pos += n;
    }
    return out;
  }

  /** Seals the final segment; returns the rest of the file. @throws Error when called twice. */
  final(): Buffer {
    if (this.finished) throw new Error('AgeEncryptor.final called twice');
    this.finished = true;
    const out: Buffer[] = [];
    if (this.prefix) out.push(this.prefix);
    this.prefix = null;
    this.sealSegment(out, this.pending.subarray(0, this.pendingLength), true);
    return Buffer.concat(out);
  }
}

/**
 * The STREAM decryptor of whole segments. `bytes` starts at segment `firstSegment` and holds
 * consecutive segments, each 65552 bytes except the file's final segment (index `finalSegment`),
 * which may be shorter and is opened with the final flag. In order, each segment's plaintext goes
 * to `onPlain` (k counts segments from 0), or why it cannot be used to `onBad`: truncated, past
 * the final segment, an empty final segment, or failed authentication. A callback that throws
 * stops the walk.
 */
export function openSegments(
  key: Uint8Array | KeyObject,
  firstSegment: number,
  bytes: Uint8Array,
  finalSegment: number,
  onPlain: (k: number, plain: Buffer) => void,
  onBad: (index: number, why: string) => void,
): void {
  const nonce = Buffer.alloc(12);
  const segmentKey = cipherKey(key);
  for (let k = 0, pos = 0; pos < bytes.length; pos += SEGMENT_CIPHER_SIZE, k++) {
    const index = firstSegment + k;
    const end = Math.min(bytes.length, pos + SEGMENT_CIPHER_SIZE);
    const final = index === finalSegment;
    if (index > finalSegment || (!final && end - pos !== SEGMENT_CIPHER_SIZE)) {
      onBad(index, `age segment ${index} is truncated or lies past the final segment`);
      continue;
    }
    if (final && end - pos === TAG_SIZE && index > 0) {
      onBad(index, 'age final segment is empty');
      continue;
    }
    setNonce(nonce, index, final);
    const plain = open(segmentKey, nonce, bytes.subarray(pos, end));
    if (plain === null) onBad(index, `age segment ${index} failed authentication (corrupted data)`);
    else onPlain(k, plain);
  }
}

/**
 * The plaintext of whole segments (see openSegments).
 * @throws AgeError 'payload' when a segment fails authentication or `bytes` does not end on a
 *   segment boundary or at the end of the final segment.
 */
export function decryptSegments(key: Buffer, firstSegment: number, bytes: Buffer, finalSegment: number): Buffer {
  const parts: Buffer[] = [];
  openSegments(
    key,
    firstSegment,
    bytes,
    finalSegment,
    (_k, plain) => parts.push(plain),
    (_index, why) => {
      throw new AgeError('payload', why);
    },
  );
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

/**
 * Streaming age decryption with constant memory (one segment buffered). Plaintext is released
 * one authenticated segment at a time; a segment that fails authentication is never released.
 *
 * As in the reference implementation, a stream that is bad only at its end (no final segment,
 * data after the final segment) releases the authenticated segments before the error, so a
 * caller must treat any error as "output incomplete".
 */
export class AgeDecryptor {
  private state: 'header' | 'nonce' | 'payload' | 'done' = 'header';
  private headerBuf: Buffer = Buffer.alloc(0);
  private fileKey: Buffer | null = null;
  private key: KeyObject | null = null;
  private readonly nonce = Buffer.alloc(12);
  private readonly pending = Buffer.allocUnsafe(SEGMENT_CIPHER_SIZE);
  private pendingLength = 0;
  private index = 0;
  private failure: AgeError | null = null;

  constructor(private readonly identities: readonly Identity[]) {}

  /**
   * Feeds ciphertext; pushes released plaintext onto `out`.
   * @throws AgeError ('header', 'no-match', 'hmac', 'payload'); whatever was pushed onto `out`
   *   before the throw is authenticated plaintext.
   */
  update(cipher: Buffer, out: Buffer[]): void {
    this.guard(() => this.feed(cipher, out));
  }

  /**
   * Signals the end of the ciphertext; pushes the last plaintext onto `out`.
   * @throws AgeError as update(), notably 'payload' for a missing or empty final segment.
   */
  final(out: Buffer[]): void {
    this.guard(() => this.finish(out));
  }

  private guard(fn: () => void): void {
    if (this.failure) throw this.failure;
    try {
      fn();
    } catch (err) {
      if (err instanceof AgeError) this.failure = err;
      throw err;
    }
  }

  private feed(cipher: Buffer, out: Buffer[]): void {
    if (this.state === 'done') throw new Error('AgeDecryptor.update after final');
    let input = cipher;
    if (this.state === 'header') {
      const buf = this.headerBuf.length === 0 ? input : Buffer.concat([this.headerBuf, input]);
      const end = findHeaderEnd(buf.subarray(0, MAX_HEADER_SIZE));
      if (end === -1) {
        // Keep a copy: the caller may reuse its buffer once update() returns.
        this.headerBuf = buf === input ? Buffer.from(input) : buf;
        return;
      }
      const header = parseHeader(buf);
      this.fileKey = unwrapFileKey(header, this.identities);
      input = buf.subarray(end);
      this.headerBuf = Buffer.alloc(0);
      this.state = 'nonce';
    }
    if (this.state === 'nonce') {
      const n = input.copy(this.pending, this.pendingLength, 0, PAYLOAD_NONCE_SIZE - this.pendingLength);
      this.pendingLength += n;
      input = input.subarray(n);
      if (this.pendingLength < PAYLOAD_NONCE_SIZE) return;
      this.key = cipherKey(payloadKey(this.fileKey!, this.pending.subarray(0, PAYLOAD_NONCE_SIZE)));
      this.pendingLength = 0;
      this.state = 'payload';
    }
    let pos = 0;
    while (pos < input.length) {
      if (this.pendingLength === SEGMENT_CIPHER_SIZE) {
        this.openFollowed(this.pending, out);
        this.pendingLength = 0;
      }
      if (this.pendingLength === 0 && input.length - pos > SEGMENT_CIPHER_SIZE) {
        this.openFollowed(input.subarray(pos, pos + SEGMENT_CIPHER_SIZE), out);
        pos += SEGMENT_CIPHER_SIZE;
        continue;
      }
      const n = input.copy(this.pending, this.pendingLength, pos, Math.min(input.length, pos + SEGMENT_CIPHER_SIZE - this.pendingLength));
      this.pendingLength += n;
      pos += n;
    }
  }

  private tryOpen(segment: Buffer, final: boolean): Buffer | null {
    setNonce(this.nonce, this.index, final);
    return open(this.key!, this.nonce, segment);
  }

  /** A full segment with more data behind it: normally not final. */
  private openFollowed(segment: Buffer, out: Buffer[]): void {
    const plain = this.tryOpen(segment, false);
    if (plain !== null) {
      out.push(plain);
      this.index++;
      return;
    }
    const last = this.tryOpen(segment, true);
    if (last !== null) {
      out.push(last);
      throw new AgeError('payload', 'trailing data after the final age segment');
    }
    throw new AgeError('payload', `age segment ${this.index} failed authentication (corrupted data)`);
  }

  private finish(out: Buffer[]): void {
    if (this.state === 'done') throw new Error('AgeDecryptor.final called twice');
    if (this.state === 'header') {
      if (this.headerBuf.length === 0) throw new AgeError('header', 'empty input: not an age file');
      throw new AgeError('header', 'truncated age header');
    }
    if (this.state === 'nonce') throw new AgeError('header', 'age payload nonce is missing or truncated');
    const len = this.pendingLength;
    if (len === 0) throw new AgeError('payload', 'age payload has no segments');
    if (len < TAG_SIZE) throw new AgeError('payload', 'age final segment is truncated');
    if (len === TAG_SIZE && this.index > 0) throw new AgeError('payload', 'age final segment is empty');
    const segment = this.pending.subarray(0, len);
    const plain = this.tryOpen(segment, true);
    if (plain !== null) {
      out.push(plain);
      this.state = 'done';
      return;
    }
    if (len === SEGMENT_CIPHER_SIZE) {
      const notFinal = this.tryOpen(segment, false);
      if (notFinal !== null) {
        out.push(notFinal);
        throw new AgeError('payload', 'age file is truncated: no final segment');
      }
    }
    throw new AgeError('payload', `age segment ${this.index} failed authentication (corrupted or truncated data)`);
  }
}
