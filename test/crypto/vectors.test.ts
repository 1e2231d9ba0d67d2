/**
 * The CCTV age test vectors (test/fixtures/age-vectors, see its README): every binary X25519
 * vector, decrypted whole, streamed in odd-sized pieces, byte by byte (small ones) and through
 * random access. Success vectors must give the expected plaintext hash; failure vectors must
 * fail with the expected class, and a stream must release exactly the expected prefix. The
 * restore's decode worker decrypts each one in place with the same STREAM code.
 */
import { afterAll, describe, it, expect } from 'vitest';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { inflateSync } from 'node:zlib';
import {
  AgeDecryptor,
  AgeError,
  AgeRandomAccess,
  bufferReader,
  decrypt,
  decryptSegments,
  openAgeFile,
  parseIdentity,
  type AgeErrorKind,
  type AgeFileInfo,
  type Identity,
} from '../../src/crypto/index.js';
import { DecodePool } from '../../src/restore/decodePool.js';

const DIR = new URL('../fixtures/age-vectors/', import.meta.url);

interface Vector {
  name: string;
  expect: string;
  payload?: string;
  identities: Identity[];
  file: Buffer;
}

function loadVector(name: string): Vector | null {
  const raw = readFileSync(new URL(name, DIR));
  const split = raw.indexOf('\n\n');
  const fields = raw.toString('utf8', 0, split).split('\n').map((l) => {
    const i = l.indexOf(': ');
    return [l.slice(0, i), l.slice(i + 2)] as const;
  });
  const get = (k: string): string[] => fields.filter(([key]) => key === k).map(([, v]) => v);
  // Armored and post-quantum vectors are not for an X25519-only binary decryptor; passphrase
  // ones only when an X25519 identity is also given (scrypt_and_x25519). `empty` has no key.
  if (get('armored').length > 0) return null;
  const ids = get('identity');
  if (ids.some((s) => s.startsWith('AGE-SECRET-KEY-PQ-'))) return null;
  if (ids.length === 0 && get('passphrase').length > 0) return null;
  let file = raw.subarray(split + 2);
  if (get('compressed')[0] === 'zlib') file = inflateSync(file);
  return { name, expect: get('expect')[0]!, payload: get('payload')[0], identities: ids.map(parseIdentity), file };
}

const vectors = readdirSync(DIR)
  .filter((n) => n !== 'README.md')
  .sort()
  .map(loadVector)
  .filter((v): v is Vector => v !== null);

const KIND: Record<string, AgeErrorKind> = {
  'header failure': 'header',
  'HMAC failure': 'hmac',
  'payload failure': 'payload',
  'no match': 'no-match',
};

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Streams `file` in pieces of `piece` bytes; returns what was released and the error, if any. */
function stream(v: Vector, piece: number): { released: Buffer; error: unknown } {
  const d = new AgeDecryptor(v.identities);
  const out: Buffer[] = [];
  let error: unknown = null;
  try {
    for (let i = 0; i < v.file.length; i += piece) d.update(v.file.subarray(i, i + piece), out);
    d.final(out);
  } catch (err) {
    error = err;
  }
  return { released: Buffer.concat(out), error };
}

function kindOf(err: unknown): string {
  return err instanceof AgeError ? err.kind : `not an AgeError: ${String(err)}`;
}

describe('age test vectors', () => {
  it('includes every binary X25519 vector of the suite', () => {
    expect(vectors.length).toBe(68);
    for (const v of vectors) expect(['success', ...Object.keys(KIND)]).toContain(v.expect);
  });

  for (const v of vectors) {
    it(`${v.name}: ${v.expect}`, async () => {
      const pieces = v.file.length < 1 << 20 ? [1, 7, 4096, 65553] : [65536 + 17];
      if (v.expect === 'success') {
        expect(sha256(decrypt(v.file, v.identities))).toBe(v.payload);
        for (const p of pieces) {
          const r = stream(v, p);
          expect(r.error).toBeNull();
          expect(sha256(r.released)).toBe(v.payload);
        }
        const ra = await AgeRandomAccess.open(bufferReader(v.file), v.file.length, v.identities);
        expect(sha256(await ra.read(0, ra.plaintextSize))).toBe(v.payload);
        return;
      }
      const kind = KIND[v.expect]!;
      let thrown: unknown = null;
      try {
        decrypt(v.file, v.identities);
      } catch (err) {
        thrown = err;
      }
      expect(kindOf(thrown)).toBe(kind);
      for (const p of pieces) {
        const r = stream(v, p);
        expect(kindOf(r.error)).toBe(kind);
        // The reference says what a streaming API releases before failing.
        if (v.payload !== undefined) expect(sha256(r.released)).toBe(v.payload);
        else expect(r.released.length).toBe(0);
      }
      // Random access must refuse too: at open, or when reading the whole plaintext.
      let raError: unknown = null;
      try {
        const ra = await AgeRandomAccess.open(bufferReader(v.file), v.file.length, v.identities);
        await ra.read(0, ra.plaintextSize);
      } catch (err) {
        raError = err;
      }
      expect(kindOf(raError)).toBe(kind);
    });
  }
});

describe('age test vectors in the restore decode worker', () => {
  const pool = new DecodePool(1);
  afterAll(() => pool.close());

  it('decrypts each payload in place exactly as decryptSegments does on this thread', async () => {
    let decrypted = 0;
    let refused = 0;
    for (const v of vectors) {
      let file: AgeFileInfo;
      try {
        file = await openAgeFile(bufferReader(v.file), v.file.length, v.identities);
      } catch {
        continue; // refused before any segment is read
      }
      const payload = v.file.subarray(file.payloadStart);
      let here: Buffer | undefined;
      try {
        here = decryptSegments(file.payloadKey, 0, payload, file.segmentCount - 1);
      } catch {
        here = undefined;
      }
      const data = Buffer.from(new SharedArrayBuffer(payload.length));
      payload.copy(data);
      const bad = await pool.decrypt({ data, key: file.payloadKey, firstSegment: 0, finalSegment: file.segmentCount - 1 });
      if (here) {
        expect(bad, v.name).toEqual(new Map());
        expect(data.subarray(0, here.length).equals(here), v.name).toBe(true);
        if (v.expect === 'success') expect(sha256(here)).toBe(v.payload);
        decrypted++;
      } else {
        expect(bad.size, v.name).toBeGreaterThan(0);
        refused++;
      }
    }
    expect(decrypted).toBeGreaterThan(10);
    expect(refused).toBeGreaterThan(0);
  });
});
