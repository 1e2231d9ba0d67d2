/**
 * The PEM-like armor OpenSSH puts around binary objects (private keys, SSH signatures):
 * `-----BEGIN <LABEL>-----`, padded base64 in lines of 70 columns, `-----END <LABEL>-----`.
 */
import { decodeBase64Padded } from './wire.js';

const LINE = 70;

/** The armored text, exactly as OpenSSH writes it (trailing newline included). */
export function armor(label: string, bytes: Uint8Array): string {
  const b64 = Buffer.from(bytes).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += LINE) lines.push(b64.slice(i, i + LINE));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * Decodes armored text. Line breaks (LF or CRLF) and white space around the markers are
 * accepted, as OpenSSH's base64 decoder skips them; anything else outside base64 is not.
 * @returns the bytes, or a reason that quotes no data (it may be a private key).
 */
export function dearmor(text: string, label: string): Buffer | { reason: string } {
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  const trimmed = text.trim();
  if (!trimmed.startsWith(begin)) return { reason: `does not start with ${begin}` };
  const endAt = trimmed.indexOf(end, begin.length);
  if (endAt === -1) return { reason: `has no ${end} line (truncated?)` };
  if (endAt + end.length !== trimmed.length) return { reason: `has text after ${end}` };
  const body = trimmed.slice(begin.length, endAt).replace(/[ \t\r\n]+/g, '');
  const bytes = decodeBase64Padded(body);
  if (bytes === null) return { reason: 'holds invalid base64' };
  return bytes;
}
