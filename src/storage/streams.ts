/**
 * Stream plumbing shared by the backends: opening a PutBody, checking that a body has exactly the
 * announced length, and turning a raw download into a stream that fails loudly (with a classified
 * StorageError) instead of ending short.
 */
import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { isStorageError, type PutBody, type Storage } from './types.js';

/** Byte length of a put body. */
export function bodySize(body: PutBody): number {
  return Buffer.isBuffer(body) ? body.length : body.size;
}

/** A stream of the body's bytes; a stream body is opened afresh on every call (one per attempt). */
export function openBody(body: PutBody): Readable {
  return Buffer.isBuffer(body) ? Readable.from([body], { objectMode: false }) : body.open();
}

/** A stream that ends at once, for empty objects and zero-length ranges. */
export function emptyStream(): Readable {
  return Readable.from([], { objectMode: false });
}

/**
 * Thrown (through the stream) when a put body yields more or fewer bytes than its declared size:
 * a caller bug or a source file that changed, never worth retrying.
 */
export class BodyLengthError extends Error {
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`upload body has ${actual > expected ? 'more than ' : ''}${actual} bytes, expected ${expected}`);
    this.name = 'BodyLengthError';
  }
}

/**
 * A pass-through that fails with BodyLengthError as soon as more than `expected` bytes went
 * through, or at the end when fewer did, and lets `observe` see every chunk (hashing).
 *
 * It holds back the latest chunk until the next one (or the end) arrives: when the source turns
 * out too long, the receiver has then not yet got all `expected` bytes, so the request is
 * incomplete and the server discards it, instead of storing the first `expected` bytes.
 */
export function lengthChecker(expected: number, observe?: (chunk: Buffer) => void): Transform {
  let seen = 0;
  let held: Buffer | undefined;
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      seen += chunk.length;
      if (seen > expected) {
        done(new BodyLengthError(expected, seen));
        return;
      }
      observe?.(chunk);
      const previous = held;
      held = chunk;
      done(null, previous);
    },
    flush(done: TransformCallback) {
      if (seen !== expected) {
        done(new BodyLengthError(expected, seen));
        return;
      }
      done(null, held);
    },
  });
}

/**
 * Wraps a download so that the consumer sees exactly `expected` bytes or an error: source errors
 * go through `mapError` (network resets become transient StorageErrors), and a body that ends
 * short is an error too, because a proxy or server that closes the connection cleanly mid-body
 * would otherwise hand the caller a silently truncated object. With `dropExcess`, bytes past
 * `expected` are dropped instead of failing (a server that answers a range with a longer one).
 * Destroying the returned stream destroys the source (releasing its connection).
 */
export function guardDownload(
  source: Readable,
  expected: number | undefined,
  mapError: (err: unknown) => Error,
  options: { dropExcess?: boolean } = {},
): Readable {
  let seen = 0;
  const out = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      if (expected !== undefined && seen + chunk.length > expected) {
        if (!options.dropExcess) {
          done(mapError(new Error(`response body longer than the announced ${expected} bytes`)));
          return;
        }
        // The server sent more than we asked for: keep what was asked, end, hang up.
        const wanted = chunk.subarray(0, expected - seen);
        seen = expected;
        this.push(wanted);
        this.end();
        source.unpipe(this);
        source.destroy();
        done();
        return;
      }
      seen += chunk.length;
      done(null, chunk);
    },
    flush(done: TransformCallback) {
      if (expected !== undefined && seen !== expected) {
        done(mapError(Object.assign(new Error(`response body ended after ${seen} of ${expected} bytes`), { code: 'ECONNRESET' })));
        return;
      }
      done();
    },
  });
  source.on('error', (err) => out.destroy(mapError(err)));
  out.on('close', () => {
    if (!source.destroyed) source.destroy();
  });
  source.pipe(out);
  return out;
}

/**
 * SHA-256 and size of an object, streamed.
 * Keyless: what verify checks, and what tells a damaged or replaced object from one encrypted
 * to another key (snapshot/open.ts).
 * @returns undefined when the object no longer exists.
 */
export async function hashObject(storage: Storage, key: string, signal?: AbortSignal): Promise<{ hash: string; size: number } | undefined> {
  let body;
  try {
    body = await storage.get(key, undefined, signal ? { signal } : undefined);
  } catch (err) {
    if (isStorageError(err, 'not-found')) return undefined;
    throw err;
  }
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of body) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { hash: h.digest('hex'), size };
}
