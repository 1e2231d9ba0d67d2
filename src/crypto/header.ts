/**
 * The age v1 header: parsing (strictly, as the Go reference does), encoding, the header MAC and
 * unwrapping the file key with a list of identities.
 *
 *     age-encryption.org/v1\n
 *     -> X25519 <base64 share>\n          one stanza per recipient: argument line,
 *     <base64 body, 64-column lines>\n    then body lines; the last one is shorter than 64
 *     --- <base64 HMAC-SHA256>\n          MAC over everything up to and including "---"
 */
import { timingSafeEqual } from 'node:crypto';
import { AgeError } from './errors.js';
import { decodeBase64Strict, encodeBase64 } from './encoding.js';
import { hkdf, hmacSha256 } from './primitives.js';
import type { Identity } from './keys.js';

export interface Stanza {
  /** The argument line's words after "->"; the first is the stanza type. */
  args: string[];
  body: Buffer;
}

export interface ParsedHeader {
  stanzas: Stanza[];
  mac: Buffer;
  /** The bytes the MAC covers (up to and including "---"). */
  macInput: Buffer;
  /** Header length in bytes, including the MAC line's newline; the payload nonce follows. */
  length: number;
}

const INTRO = Buffer.from('age-encryption.org/v1\n', 'latin1');
const FOOTER = Buffer.from('---', 'latin1');
const BODY_COLUMNS = 64;
const BODY_BYTES_PER_LINE = 48;
/** Far above any real header (an X25519 stanza is ~100 bytes); bounds what a reader buffers. */
export const MAX_HEADER_SIZE = 1 << 20;

/**
 * Finds the end of the header in a prefix of an age file.
 * @returns the header length (just past the MAC line), or -1 when `buf` ends before it.
 * @throws AgeError 'header' when the prefix cannot start an age v1 file or the header would be
 *   longer than MAX_HEADER_SIZE.
 */
export function findHeaderEnd(buf: Buffer): number {
  const introBytes = Math.min(buf.length, INTRO.length);
  if (!buf.subarray(0, introBytes).equals(INTRO.subarray(0, introBytes))) {
    throw new AgeError('header', 'not an age v1 file (bad version line)');
  }
  let lineStart = 0;
  for (;;) {
    const nl = buf.indexOf(0x0a, lineStart);
    if (nl === -1) break;
    if (lineStart > 0 && buf.subarray(lineStart, lineStart + 3).equals(FOOTER)) return nl + 1;
    lineStart = nl + 1;
  }
  if (buf.length >= MAX_HEADER_SIZE) throw new AgeError('header', `age header longer than ${MAX_HEADER_SIZE} bytes`);
  return -1;
}

function isValidArg(a: string): boolean {
  if (a.length === 0) return false;
  for (let i = 0; i < a.length; i++) {
    const c = a.charCodeAt(i);
    if (c < 33 || c > 126) return false;
  }
  return true;
}

/**
 * Parses a complete header (`buf` may continue past it).
 * @throws AgeError 'header' on any deviation from the canonical format: wrong version line,
 *   CR characters, empty or non-printable arguments, non-canonical base64, body lines over 64
 *   columns or a stanza without its final short line, a MAC that is not 32 bytes; and, like
 *   age, an `scrypt` stanza next to other stanzas.
 */
export function parseHeader(buf: Buffer): ParsedHeader {
  const length = findHeaderEnd(buf);
  if (length === -1) throw new AgeError('header', 'truncated age header');
  // latin1 keeps one character per byte, so string offsets are byte offsets.
  const lines = buf.toString('latin1', 0, length - 1).split('\n');
  const bad = (why: string): AgeError => new AgeError('header', `malformed age header: ${why}`);
  if (lines[0] !== 'age-encryption.org/v1') throw bad('bad version line');
  const stanzas: Stanza[] = [];
  let i = 1;
  for (;;) {
    const line = lines[i];
    if (line === undefined) throw bad('missing MAC line');
    if (line.startsWith('---')) {
      const parts = line.split(' ');
      if (parts[0] !== '---' || parts.length !== 2) throw bad('malformed MAC line');
      const mac = decodeBase64Strict(parts[1]!);
      if (mac === null || mac.length !== 32) throw bad('malformed MAC');
      if (i !== lines.length - 1) throw bad('data after the MAC line');
      const macInput = buf.subarray(0, length - line.length - 1 + 3);
      if (stanzas.some((s) => s.args[0] === 'scrypt') && stanzas.length !== 1) {
        throw bad('an scrypt stanza must be alone in the header');
      }
      return { stanzas, mac, macInput, length };
    }
    const parts = line.split(' ');
    if (parts[0] !== '->') throw bad('expected a stanza ("-> ...") or the MAC line ("--- ...")');
    const args = parts.slice(1);
    if (args.length === 0 || !args.every(isValidArg)) throw bad('invalid stanza arguments');
    const body: Buffer[] = [];
    for (;;) {
      i++;
      const bodyLine = lines[i];
      if (bodyLine === undefined) throw bad('stanza without a final short body line');
      const bytes = bodyLine.length <= BODY_COLUMNS ? decodeBase64Strict(bodyLine) : null;
      if (bytes === null) throw bad('invalid stanza body line');
      body.push(bytes);
      if (bytes.length < BODY_BYTES_PER_LINE) break;
    }
    stanzas.push({ args, body: Buffer.concat(body) });
    i++;
  }
}

function headerMac(fileKey: Uint8Array, macInput: Uint8Array): Buffer {
  return hmacSha256(hkdf(fileKey, Buffer.alloc(0), 'header'), macInput);
}

/** Encodes a header for `stanzas`, MAC'd with `fileKey`. */
export function encodeHeader(stanzas: readonly Stanza[], fileKey: Uint8Array): Buffer {
  let text = 'age-encryption.org/v1\n';
  for (const s of stanzas) {
    text += `-> ${s.args.join(' ')}\n`;
    const b64 = encodeBase64(s.body);
    for (let i = 0; i < b64.length; i += BODY_COLUMNS) text += b64.slice(i, i + BODY_COLUMNS) + '\n';
    // Every stanza ends with a short line, empty when the body fills its last line.
    if (b64.length % BODY_COLUMNS === 0) text += '\n';
  }
  text += '---';
  const macInput = Buffer.from(text, 'latin1');
  return Buffer.concat([macInput, Buffer.from(` ${encodeBase64(headerMac(fileKey, macInput))}\n`, 'latin1')]);
}

/**
 * Unwraps the file key with the first identity that matches a stanza, then verifies the MAC.
 * @throws AgeError 'no-match' when no identity matches; 'header' on a malformed stanza for a
 *   type we handle; 'hmac' when the MAC does not verify with the unwrapped key.
 */
export function unwrapFileKey(header: ParsedHeader, identities: readonly Identity[]): Buffer {
  if (identities.length === 0) throw new AgeError('no-match', 'no identity given to decrypt with');
  let fileKey: Buffer | null = null;
  for (const id of identities) {
    fileKey = id.unwrapFileKey(header.stanzas);
    if (fileKey !== null) break;
  }
  if (fileKey === null) {
    const types = [...new Set(header.stanzas.map((s) => s.args[0]))].join(', ');
    throw new AgeError('no-match', `no identity matches this file's recipients (stanza types: ${types || 'none'}): wrong private key?`);
  }
  if (!timingSafeEqual(headerMac(fileKey, header.macInput), header.mac)) {
    throw new AgeError('hmac', 'age header MAC mismatch: the header was tampered with or corrupted');
  }
  return fileKey;
}
