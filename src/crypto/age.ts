/** Whole-buffer and node:stream forms of age encryption and decryption. */
import { Transform, type TransformCallback } from 'node:stream';
import { AgeDecryptor, AgeEncryptor } from './stream.js';
import type { Identity, Recipient } from './keys.js';

/**
 * Encrypts `plain` to `recipients` as one age v1 file.
 * @throws AgeError 'key' when `recipients` is empty.
 */
export function encrypt(plain: Buffer, recipients: readonly Recipient[]): Buffer {
  const e = new AgeEncryptor(recipients);
  const parts = e.update(plain);
  parts.push(e.final());
  return Buffer.concat(parts);
}

/**
 * Decrypts a whole age v1 file.
 * @throws AgeError 'header' | 'no-match' | 'hmac' | 'payload'; no plaintext is returned then.
 */
export function decrypt(cipher: Buffer, identities: readonly Identity[]): Buffer {
  const d = new AgeDecryptor(identities);
  const out: Buffer[] = [];
  d.update(cipher, out);
  d.final(out);
  return Buffer.concat(out);
}

/**
 * A Transform from plaintext to an age v1 file; constant memory.
 * @throws AgeError 'key' (synchronously) when `recipients` is empty.
 */
export function createEncryptStream(recipients: readonly Recipient[]): Transform {
  const e = new AgeEncryptor(recipients);
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
      try {
        for (const b of e.update(chunk)) this.push(b);
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
    flush(cb: TransformCallback): void {
      try {
        this.push(e.final());
        cb();
      } catch (err) {
        cb(err as Error);
      }
    },
  });
}

/**
 * A Transform from an age v1 file to its plaintext; constant memory. Emits only authenticated
 * segments; on any failure the stream errors with an AgeError, and the output so far must be
 * treated as incomplete.
 */
export function createDecryptStream(identities: readonly Identity[]): Transform {
  const d = new AgeDecryptor(identities);
  const run = (self: Transform, step: (out: Buffer[]) => void, cb: TransformCallback): void => {
    const out: Buffer[] = [];
    let error: Error | null = null;
    try {
      step(out);
    } catch (err) {
      error = err as Error;
    }
    for (const b of out) self.push(b);
    cb(error);
  };
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
      run(this, (out) => d.update(chunk, out), cb);
    },
    flush(cb: TransformCallback): void {
      run(this, (out) => d.final(out), cb);
    },
  });
}
