/**
 * Upload integrity on the wire, on both servers: S3 refuses an upload whose bytes do not match
 * its Content-MD5, x-amz-checksum-sha256 or signed payload hash (x-amz-content-sha256), and the
 * store checks a multipart upload's bytes against the caller's SHA-256 before completing it.
 * s3rver checks none of these headers, so it sits behind the fault proxy checking them as S3
 * does (proxy.verify); radosgw checks Content-MD5 and the payload hash itself, so its proxy only
 * corrupts. Every refusal must be a 'permanent' StorageError naming the object, not retried, and
 * leave nothing under the key.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openStorage } from '../../src/storage/open.js';
import type { S3StorageOptions } from '../../src/storage/s3.js';
import type { PutBody, Storage } from '../../src/storage/types.js';
import { INTEGRITY_CHECKS, startFaultProxy, type FaultProxy, type IntegrityCheck } from '../helpers/faultProxy.js';
import { s3Servers, type S3Server } from '../helpers/s3servers.js';
import { expectBytes, expectStorageError, readAll, sha256, streamBody } from './conformance.js';

const KiB = 1024;
const PART = 100 * KiB;
const THRESHOLD = 256 * KiB;
const s3Options: S3StorageOptions = { minPartSize: 1, socketTimeoutMs: 5000, connectionTimeoutMs: 2000, partRetry: { baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 4 } };
const retry = { baseDelayMs: 5, maxDelayMs: 50, maxAttempts: 4 };

/** `bytes` with its last byte changed: what the caller hashed is not what is sent. */
function changedCopy(bytes: Buffer, at = bytes.length - 1): Buffer {
  const copy = Buffer.from(bytes);
  copy[at]! ^= 1;
  return copy;
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

for (const kind of s3Servers()) {
  const verifying = kind.name === 's3rver';
  describe.skipIf(kind.missing)(`upload integrity on ${kind.name}${verifying ? ' behind a proxy checking what S3 checks' : ''}${kind.label}`, () => {
    let server: S3Server;
    let proxy: FaultProxy;
    const stores: Storage[] = [];
    beforeAll(async () => {
      server = await kind.start();
      proxy = await startFaultProxy(server.endpoint, { verify: verifying ? INTEGRITY_CHECKS : [] });
    });
    afterAll(async () => {
      await Promise.all(stores.map((s) => s.close()));
      await proxy?.close();
      await server?.stop();
    });
    beforeEach(() => {
      proxy.clearFaults();
      proxy.resetStats();
      proxy.verify = verifying ? INTEGRITY_CHECKS : [];
    });

    /** A store through the proxy with the retry wrapper, as the commands use it. */
    const open = (prefix: string): Storage => {
      const spec = { ...server.spec(prefix, { multipartThreshold: THRESHOLD, partSize: PART }), endpoint: proxy.endpoint };
      const store = openStorage(spec, { s3: s3Options, retry });
      stores.push(store);
      return store;
    };
    const where = (prefix: string, key: string): string => escape(`s3://${server.bucket}/${prefix}${key}`);
    /** What the store says when the server (or the proxy standing in for S3) refused the bytes. */
    const refused = (prefix: string, key: string, detail = ''): RegExp =>
      new RegExp(`rejected ${where(prefix, key)}: the bytes sent do not match their checksum \\(${detail}`);

    it("a multipart upload whose bytes differ from the caller's SHA-256 is never completed: aborted, permanent, nothing stored", async () => {
      const store = open('m1/');
      const bytes = randomBytes(3 * PART + 5);
      const message = (key: string): RegExp =>
        new RegExp(`^refusing to complete the upload of ${where('m1/', key)}: its bytes do not match the SHA-256 given by the caller`);
      // A buffer and a stream that are not what the caller hashed.
      for (const [key, body] of [
        ['buffer', changedCopy(bytes)],
        ['stream', streamBody(changedCopy(bytes, PART + 3), 33_333)],
      ] as const) {
        proxy.resetStats();
        await expectStorageError(store.put(key, body, { sha256: sha256(bytes) }), 'permanent', message(key));
        // Every part went up (each is fine by itself), then the upload was aborted, not completed.
        expect(proxy.counts()).toEqual({ CreateMultipartUpload: 1, UploadPart: 4, AbortMultipartUpload: 1 });
        await expectStorageError(store.stat(key), 'not-found');
      }
      // The key is free for the right bytes.
      await store.put('buffer', bytes, { sha256: sha256(bytes) });
      expectBytes(await readAll(await store.get('buffer')), bytes);
    });

    it('a file that changed between two attempts of a multipart put: the retry is refused, nothing stored', async () => {
      const store = open('m2/');
      const bytes = randomBytes(3 * PART + 5);
      const first = streamBody(bytes);
      const later = streamBody(changedCopy(bytes, 7));
      let opened = 0;
      const body: PutBody = { size: bytes.length, open: () => (opened++ === 0 ? first : later).open() };
      // The first attempt sends the hashed bytes but fails transiently at the end; the retry
      // reads the file again and gets other bytes.
      proxy.addFault({ match: 'CompleteMultipartUpload', fault: { kind: 'error', status: 503, code: 'SlowDown' }, times: 1 });
      await expectStorageError(
        store.put('big', body, { sha256: sha256(bytes) }),
        'permanent',
        new RegExp(`^refusing to complete the upload of ${where('m2/', 'big')}: its bytes do not match the SHA-256 given by the caller`),
      );
      expect(opened).toBe(2);
      expect(proxy.counts()).toEqual({ CreateMultipartUpload: 2, UploadPart: 8, CompleteMultipartUpload: 1, AbortMultipartUpload: 2 });
      await expectStorageError(store.stat('big'), 'not-found');
    });

    it('a part corrupted in transit is refused by its Content-MD5: not completed, permanent, nothing stored', async () => {
      const store = open('m3/');
      const bytes = randomBytes(3 * PART + 77);
      // Intact parts pass the server's Content-MD5 check.
      await store.put('clean', bytes, { sha256: sha256(bytes) });
      await store.put('clean-unhashed', streamBody(bytes));
      expectBytes(await readAll(await store.get('clean')), bytes);
      expectBytes(await readAll(await store.get('clean-unhashed')), bytes);
      for (const [key, options] of [
        ['big', { sha256: sha256(bytes) }],
        ['big-unhashed', undefined],
      ] as const) {
        proxy.resetStats();
        proxy.addFault({ match: (r) => r.op === 'UploadPart' && /[?&]partNumber=2(&|$)/.test(r.path), fault: { kind: 'corrupt-request' }, times: 1 });
        await expectStorageError(store.put(key, bytes, options), 'permanent', refused('m3/', key, verifying ? 'The Content-MD5 you specified did not match what we received' : ''));
        const part2 = proxy.requests.filter((r) => r.op === 'UploadPart' && /[?&]partNumber=2(&|$)/.test(r.path));
        expect(part2.map((r) => r.status)).toEqual([400]);
        expect(proxy.count('CompleteMultipartUpload')).toBe(0);
        expect(proxy.count('AbortMultipartUpload')).toBe(1);
        await expectStorageError(store.stat(key), 'not-found');
      }
    });

    it('a PutObject corrupted in transit is refused by its checksum: permanent, nothing stored', async () => {
      const store = open('s1/');
      const bytes = randomBytes(20_000);
      const cases: [string, PutBody, Buffer | undefined, string][] = [
        ['buffer-sha', bytes, sha256(bytes), 'The SHA256 you specified did not match the calculated checksum'],
        ['stream-sha', streamBody(bytes), sha256(bytes), 'The SHA256 you specified did not match the calculated checksum'],
        ['buffer-md5', bytes, undefined, 'The Content-MD5 you specified did not match what we received'],
        ['stream-md5', streamBody(bytes), undefined, 'The Content-MD5 you specified did not match what we received'],
      ];
      for (const [key, body, hash, detail] of cases) {
        proxy.resetStats();
        proxy.addFault({ match: 'PutObject', fault: { kind: 'corrupt-request' }, times: 1 });
        await expectStorageError(store.put(key, body, hash ? { sha256: hash } : undefined), 'permanent', refused('s1/', key, verifying ? detail : ''));
        expect(proxy.requests.map((r) => `${r.op} ${r.status}`)).toEqual(['PutObject 400']);
        await expectStorageError(store.stat(key), 'not-found');
      }
    });

    // S3 checks both SHA-256 headers of a PutObject: each alone must make it refuse bytes other
    // than those the caller hashed. radosgw checks only the payload hash.
    const alone: [IntegrityCheck, string][] = verifying
      ? [
          ['checksum-sha256', 'The SHA256 you specified did not match the calculated checksum'],
          ['payload-sha256', "The provided 'x-amz-content-sha256' header does not match what was computed"],
        ]
      : [['payload-sha256', '']];
    for (const [check, detail] of alone) {
      it(`a PutObject of bytes other than the caller hashed is refused by ${check === 'checksum-sha256' ? 'x-amz-checksum-sha256' : 'the signed payload hash'} alone`, async () => {
        const store = open(`s2-${check}/`);
        if (verifying) proxy.verify = [check];
        const bytes = randomBytes(20_000);
        for (const [key, body] of [
          ['buffer', changedCopy(bytes)],
          ['stream', streamBody(changedCopy(bytes, 0))],
        ] as const) {
          await expectStorageError(store.put(key, body, { sha256: sha256(bytes) }), 'permanent', refused(`s2-${check}/`, key, detail));
          await expectStorageError(store.stat(key), 'not-found');
        }
        // Not retried: one PutObject per put.
        expect(proxy.requests.filter((r) => r.op === 'PutObject').map((r) => r.status)).toEqual([400, 400]);
      });
    }
  });
}
