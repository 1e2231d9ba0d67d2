/** Thin wrappers over node:crypto for the primitives age v1 uses. */
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, hkdfSync, KeyObject } from 'node:crypto';

export const TAG_SIZE = 16;
export const KEY_SIZE = 32;

/** HKDF-SHA256 with a 32-byte output. */
export function hkdf(ikm: Uint8Array, salt: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', ikm, salt, info, KEY_SIZE));
}

export function hmacSha256(key: Uint8Array, data: Uint8Array): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/**
 * A key for many seal/open calls. Node 24 turns a raw key into a key object on every
 * createCipheriv (~13 µs, a third of a 64 KiB STREAM segment's cost there); one made once costs
 * nothing per call. On Node 22 the two differ within noise (bench/README.md).
 */
export function cipherKey(key: Uint8Array | KeyObject): KeyObject {
  return key instanceof KeyObject ? key : createSecretKey(key);
}

/** ChaCha20-Poly1305 seal; returns ciphertext and tag as two buffers (no copy to join them). */
export function seal(key: Uint8Array | KeyObject, nonce: Uint8Array, plaintext: Uint8Array): [Buffer, Buffer] {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_SIZE });
  const ct = c.update(plaintext);
  c.final();
  return [ct, c.getAuthTag()];
}

/**
 * ChaCha20-Poly1305 open of `sealed` (ciphertext followed by its 16-byte tag).
 * @returns the plaintext, or null when the input is shorter than a tag or fails authentication.
 */
export function open(key: Uint8Array | KeyObject, nonce: Uint8Array, sealed: Uint8Array): Buffer | null {
  if (sealed.length < TAG_SIZE) return null;
  const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_SIZE });
  d.setAuthTag(sealed.subarray(sealed.length - TAG_SIZE));
  const pt = d.update(sealed.subarray(0, sealed.length - TAG_SIZE));
  try {
    d.final();
  } catch {
    return null;
  }
  return pt;
}
