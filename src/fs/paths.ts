/**
 * Byte-path helpers shared by the source walker and the restore writer.
 *
 * Snapshot paths are Buffers (see src/snapshot/types.ts): file names need not be UTF-8, so
 * nothing here decodes a path except `displayPath`, which is for humans only.
 */
import { ExitCode, VaultikError } from '../errors.js';

const SLASH = 0x2f;
const DOT = 0x2e;

/**
 * A snapshot entry path that could escape the restore target or is malformed. Its exit code is
 * DATA: a well-formed snapshot never contains one, so the snapshot is corrupt or crafted.
 */
export class UnsafePathError extends VaultikError {
  constructor(
    readonly path: Buffer,
    readonly reason: string,
  ) {
    super(`unsafe path in snapshot ${displayPath(path)}: ${reason}`, ExitCode.DATA);
    this.name = 'UnsafePathError';
  }
}

/**
 * A printable, unambiguous rendering of a byte path for messages: valid UTF-8 is shown as text,
 * control characters, backslashes and bytes that are not valid UTF-8 as `\xNN`, and the whole
 * is quoted. Never parse it back: it exists so that a name with a newline or invalid bytes cannot
 * forge or garble a log line.
 */
export function displayPath(path: Buffer | string): string {
  const buf = typeof path === 'string' ? Buffer.from(path, 'utf8') : path;
  const text = buf.toString('utf8');
  let out = '';
  if (Buffer.from(text, 'utf8').equals(buf)) {
    for (const ch of text) {
      const code = ch.codePointAt(0)!;
      out += code < 0x20 || code === 0x7f || ch === '\\' || ch === "'" ? hexEscape(code) : ch;
    }
  } else {
    // Invalid UTF-8 somewhere: escape every non-printable-ASCII byte rather than guess.
    for (const byte of buf) {
      out += byte >= 0x20 && byte < 0x7f && byte !== 0x5c && byte !== 0x27 ? String.fromCharCode(byte) : hexEscape(byte);
    }
  }
  return `'${out}'`;
}

function hexEscape(byte: number): string {
  return `\\x${byte.toString(16).padStart(2, '0')}`;
}

/**
 * Splits a snapshot entry path into its components after checking that it cannot name anything
 * outside the directory it is resolved against.
 *
 * Rejected: an empty path, an absolute path (leading '/'), a NUL byte anywhere (the OS would
 * silently truncate the name), empty components ('a//b', trailing '/'), and '.' or '..'
 * components. The snapshot reader validates too; the restore writer checks again because it is
 * the last line of defence before a byte hits the disk.
 * @throws UnsafePathError naming the path and the rule it breaks.
 */
export function splitEntryPath(path: Buffer): Buffer[] {
  if (path.length === 0) throw new UnsafePathError(path, 'empty path');
  if (path[0] === SLASH) throw new UnsafePathError(path, 'absolute path');
  if (path.includes(0)) throw new UnsafePathError(path, 'NUL byte in path');
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i < path.length && path[i] !== SLASH) continue;
    const part = path.subarray(start, i);
    if (part.length === 0) throw new UnsafePathError(path, 'empty path component');
    if (part[0] === DOT && (part.length === 1 || (part.length === 2 && part[1] === DOT))) {
      throw new UnsafePathError(path, `'${part.toString('latin1')}' path component`);
    }
    parts.push(part);
    start = i + 1;
  }
  return parts;
}

/** `dir + '/' + name` on byte paths; an empty `dir` yields `name` (the snapshot root). */
export function joinEntryPath(dir: Buffer, name: Buffer): Buffer {
  if (dir.length === 0) return name;
  return Buffer.concat([dir, SLASH_BUF, name]);
}

/** `dir + '/' + name` on absolute byte paths, without doubling the '/' of the root directory. */
export function joinAbsPath(dir: Buffer, name: Buffer): Buffer {
  if (dir.length > 0 && dir[dir.length - 1] === SLASH) return Buffer.concat([dir, name]);
  return Buffer.concat([dir, SLASH_BUF, name]);
}

const SLASH_BUF = Buffer.from('/');
