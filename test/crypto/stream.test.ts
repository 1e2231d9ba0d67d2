/** node:stream forms: round trips, and what a failing decryption stream releases. */
import { describe, it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  AgeError,
  createDecryptStream,
  createEncryptStream,
  encrypt,
  generateKeyPair,
  parseIdentity,
  parseRecipient,
  SEGMENT_CIPHER_SIZE,
  SEGMENT_SIZE,
} from '../../src/crypto/index.js';

const kp = generateKeyPair();
const ids = [parseIdentity(kp.identity)];
const rcpt = [parseRecipient(kp.recipient)];

/** Pipes `input` (in `piece`-byte chunks) through `t`; returns the output and the error. */
async function run(t: NodeJS.ReadWriteStream, input: Buffer, piece: number): Promise<{ out: Buffer; error: unknown }> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < input.length; i += piece) chunks.push(input.subarray(i, i + piece));
  const out: Buffer[] = [];
  let error: unknown = null;
  try {
    await pipeline(Readable.from(chunks), t, async (src: AsyncIterable<string | Buffer>) => {
      for await (const c of src) out.push(Buffer.from(c));
    });
  } catch (err) {
    error = err;
  }
  return { out: Buffer.concat(out), error };
}

describe('age streams', () => {
  it('round-trips through both streams', async () => {
    const plain = randomBytes(3 * SEGMENT_SIZE + 999);
    const enc = await run(createEncryptStream(rcpt), plain, 10_000);
    expect(enc.error).toBeNull();
    const dec = await run(createDecryptStream(ids), enc.out, 65_536);
    expect(dec.error).toBeNull();
    expect(dec.out.equals(plain)).toBe(true);
  });

  it('stops before a corrupted segment and never emits it', async () => {
    const plain = randomBytes(5 * SEGMENT_SIZE);
    const file = encrypt(plain, rcpt);
    const headerAndNonce = file.length - 5 * SEGMENT_CIPHER_SIZE;
    const bad = Buffer.from(file);
    bad[headerAndNonce + 3 * SEGMENT_CIPHER_SIZE + 7]! ^= 0x40;
    for (const piece of [1000, 65_536, 1 << 20]) {
      const r = await run(createDecryptStream(ids), bad, piece);
      expect(r.error).toBeInstanceOf(AgeError);
      expect((r.error as AgeError).kind).toBe('payload');
      expect(r.out.length).toBeLessThanOrEqual(3 * SEGMENT_SIZE);
      expect(r.out.equals(plain.subarray(0, r.out.length))).toBe(true);
    }
  });

  it('emits nothing for the wrong key', async () => {
    const file = encrypt(randomBytes(100_000), rcpt);
    const r = await run(createDecryptStream([parseIdentity(generateKeyPair().identity)]), file, 4096);
    expect((r.error as AgeError).kind).toBe('no-match');
    expect((r.error as AgeError).exitCode).toBe(4);
    expect(r.out.length).toBe(0);
  });

  it('a stanza that unwraps with a header MAC that fails is corruption (hmac, exit 5), not a wrong key', async () => {
    const file = encrypt(randomBytes(1000), rcpt);
    // Every byte of the MAC's base64 (the line after "---"), each flipped to another letter.
    const macStart = file.indexOf('\n--- ') + 5;
    const macEnd = file.indexOf(0x0a, macStart);
    for (let i = macStart; i < macEnd - 1; i++) {
      const bad = Buffer.from(file);
      bad[i] = bad[i] === 0x41 ? 0x42 : 0x41;
      const r = await run(createDecryptStream(ids), bad, 4096);
      expect((r.error as AgeError).kind, `MAC byte ${i - macStart}`).toBe('hmac');
      expect((r.error as AgeError).exitCode).toBe(5);
      expect(r.out.length).toBe(0);
    }
  });

  it('rejects a truncated file', async () => {
    const plain = randomBytes(2 * SEGMENT_SIZE + 5);
    const file = encrypt(plain, rcpt);
    const r = await run(createDecryptStream(ids), file.subarray(0, file.length - 21), 8192);
    expect((r.error as AgeError).kind).toBe('payload');
    expect(r.out.equals(plain.subarray(0, r.out.length))).toBe(true);
  });
});
