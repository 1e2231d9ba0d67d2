/**
 * The two text encodings of age: unpadded standard base64 (header) and bech32 (keys).
 * Both decoders are strict: age rejects non-canonical encodings to avoid malleability.
 */

const BASE64_CHARS = /^[A-Za-z0-9+/]*$/;

/** Unpadded standard base64, as in age headers. */
export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, '');
}

/**
 * Decodes unpadded, canonical standard base64 (Go's RawStdEncoding.Strict).
 * @returns null when `s` has padding, foreign characters, an impossible length, or non-zero
 *   trailing bits.
 */
export function decodeBase64Strict(s: string): Buffer | null {
  if (s.length % 4 === 1 || !BASE64_CHARS.test(s)) return null;
  const bytes = Buffer.from(s, 'base64');
  // Re-encoding catches non-zero padding bits, which Buffer.from silently drops.
  if (encodeBase64(bytes) !== s) return null;
  return bytes;
}

const BECH32_CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function polymod(values: number[]): number {
  let chk = 1;
  for (const v of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ v;
    for (let i = 0; i < 5; i++) {
      if ((top >>> i) & 1) chk ^= GENERATOR[i]!;
    }
  }
  return chk >>> 0;
}

function hrpExpand(hrp: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) >>> 5);
  out.push(0);
  for (let i = 0; i < hrp.length; i++) out.push(hrp.charCodeAt(i) & 31);
  return out;
}

function convertBits(data: ArrayLike<number>, from: number, to: number, pad: boolean): number[] | null {
  let acc = 0;
  let bits = 0;
  const out: number[] = [];
  const maxv = (1 << to) - 1;
  for (let i = 0; i < data.length; i++) {
    acc = (acc << from) | data[i]!;
    bits += from;
    while (bits >= to) {
      bits -= to;
      out.push((acc >>> bits) & maxv);
    }
    acc &= (1 << bits) - 1;
  }
  if (pad) {
    if (bits > 0) out.push((acc << (to - bits)) & maxv);
  } else if (bits >= from || acc !== 0) {
    return null;
  }
  return out;
}

/**
 * BIP-173 bech32 (not bech32m), without the 90-character limit, as age uses it. The output is
 * upper case when `hrp` is, lower case otherwise.
 */
export function encodeBech32(hrp: string, data: Uint8Array): string {
  const lower = hrp.toLowerCase();
  const values = convertBits(data, 8, 5, true)!;
  const mod = polymod([...hrpExpand(lower), ...values, 0, 0, 0, 0, 0, 0]) ^ 1;
  let s = lower + '1';
  for (const v of values) s += BECH32_CHARSET[v];
  for (let i = 0; i < 6; i++) s += BECH32_CHARSET[(mod >>> (5 * (5 - i))) & 31];
  return hrp === lower ? s : s.toUpperCase();
}

/**
 * Decodes bech32. The human-readable part is returned in the case it was written in (age
 * distinguishes `age` from `AGE-SECRET-KEY-`); the checksum is over its lower-case form.
 * @throws Error with a reason when the string is mixed case, misplaces the separator, has a
 *   foreign character, a bad checksum or non-zero padding.
 */
export function decodeBech32(s: string): { hrp: string; data: Buffer } {
  if (s.toLowerCase() !== s && s.toUpperCase() !== s) throw new Error('mixed case');
  const pos = s.lastIndexOf('1');
  if (pos < 1 || pos + 7 > s.length) throw new Error('separator "1" at an invalid position');
  const hrp = s.slice(0, pos);
  for (let i = 0; i < hrp.length; i++) {
    const c = hrp.charCodeAt(i);
    if (c < 33 || c > 126) throw new Error('invalid character in the human-readable part');
  }
  const lower = s.toLowerCase();
  const values: number[] = [];
  for (let i = pos + 1; i < lower.length; i++) {
    const d = BECH32_CHARSET.indexOf(lower[i]!);
    if (d === -1) throw new Error('invalid character in the data part');
    values.push(d);
  }
  if (polymod([...hrpExpand(hrp.toLowerCase()), ...values]) !== 1) throw new Error('invalid checksum');
  const bytes = convertBits(values.slice(0, -6), 5, 8, false);
  if (bytes === null) throw new Error('invalid padding');
  return { hrp, data: Buffer.from(bytes) };
}
