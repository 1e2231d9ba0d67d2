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
      out += isControl(code) || ch === '\\' || ch === "'" ? hexEscape(code) : ch;
    }
  } else {
    // Invalid UTF-8 somewhere: escape every non-printable-ASCII byte rather than guess.
    for (const byte of buf) {
      out += byte >= 0x20 && byte < 0x7f && byte !== 0x5c && byte !== 0x27 ? String.fromCharCode(byte) : hexEscape(byte);
    }
  }
  return `'${out}'`;
}

/** C0 (with ESC, CR, LF), DEL and C1: the code points a terminal may act on. */
function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

/** Length of the valid UTF-8 sequence at `buf[i]`, or 0 when there is none. */
function utf8Length(buf: Buffer, i: number): number {
  const b = buf[i]!;
  const n = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
  if (n <= 1 || i + n > buf.length) return n === 1 ? 1 : 0;
  const seq = buf.subarray(i, i + n);
  // Round-tripping rejects bad continuations, overlong forms and surrogates.
  return Buffer.from(seq.toString('utf8'), 'utf8').equals(seq) ? n : 0;
}

/**
 * A name for a terminal, as bytes (`ls`): control characters (C0 with ESC, CR, LF; DEL; C1,
 * whether UTF-8 encoded or raw bytes) as `\xNN` per byte and a backslash doubled, so a name can
 * neither drive the terminal nor fake a line, and stays unambiguous. Every other byte, valid UTF-8
 * or not, is kept as it is.
 */
export function escapeControls(name: Buffer): Buffer {
  let plain = true;
  for (const b of name) if (b < 0x20 || (b >= 0x7f && b <= 0x9f) || b === 0x5c) plain = false;
  if (plain) return name; // the common case: no copy
  const out: Buffer[] = [];
  let start = 0;
  const escape = (from: number, to: number): void => {
    out.push(name.subarray(start, from), Buffer.from([...name.subarray(from, to)].map(hexEscape).join(''), 'latin1'));
    start = to;
  };
  for (let i = 0; i < name.length; ) {
    const b = name[i]!;
    const n = utf8Length(name, i);
    if (b === 0x5c) {
      out.push(name.subarray(start, i), Buffer.from('\\\\', 'latin1'));
      start = i + 1;
    } else if (n === 1 ? isControl(b) : n === 2 ? b === 0xc2 && name[i + 1]! <= 0x9f : n === 0 && b >= 0x80 && b <= 0x9f) {
      escape(i, i + Math.max(n, 1));
    }
    i += Math.max(n, 1);
  }
  out.push(name.subarray(start));
  return Buffer.concat(out);
}

/**
 * A message for a terminal (text that may quote names or OS errors holding them): C0 and DEL as
 * `\xNN`, C1 as `\u00NN`.
 */
export function escapeControlText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, (ch) => {
    const code = ch.charCodeAt(0);
    return code >= 0x80 ? `\\u${code.toString(16).padStart(4, '0')}` : hexEscape(code);
  });
}

/**
 * A path for machine-readable output (--json): the raw path as text when it is valid UTF-8,
 * plus its bytes in hex when it is not. Never quoted or escaped: that is displayPath's job, for
 * humans only.
 */
export function jsonPath(path: Buffer): { path: string; pathHex?: string } {
  const text = path.toString('utf8');
  return Buffer.from(text, 'utf8').equals(path) ? { path: text } : { path: text, pathHex: path.toString('hex') };
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
