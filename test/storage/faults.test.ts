/**
 * The S3 store under faults, through the fault proxy in front of s3rver: retries that succeed,
 * puts that land whole or not at all, permanent errors that fail fast with a message users can act
 * on, outages longer than the retry budget, and the exact requests and headers sent.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { openStorage } from '../../src/storage/open.js';
import type { RetryOptions } from '../../src/storage/retry.js';
import { S3Storage, type S3StorageOptions } from '../../src/storage/s3.js';
import type { S3StorageSpec, Storage } from '../../src/storage/types.js';
import { INTEGRITY_CHECKS, startFaultProxy, WRITE_OPERATIONS, type FaultProxy, type ProxiedRequest } from '../helpers/faultProxy.js';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.js';
import { expectBytes, expectStorageError, readAll, sha256, streamBody } from './conformance.js';

const KiB = 1024;
const PART = 100 * KiB;
const THRESHOLD = 256 * KiB;
const s3Options: S3StorageOptions = { minPartSize: 1, socketTimeoutMs: 1000, connectionTimeoutMs: 1000, partRetry: { baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 4 } };
const fastRetry: RetryOptions = { baseDelayMs: 10, maxDelayMs: 100, maxAttempts: 6, maxElapsedMs: 10_000 };

let s3: S3rverHandle;
let proxy: FaultProxy;
const stores: Storage[] = [];

beforeAll(async () => {
  s3 = await startS3rver();
  // Checks Content-MD5 and the SHA-256 headers of every upload as S3 does (s3rver checks none).
  proxy = await startFaultProxy(s3.endpoint, { verify: INTEGRITY_CHECKS });
});
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await proxy?.close();
  await s3?.stop();
});
beforeEach(() => {
  proxy.clearFaults();
  proxy.resetStats();
  proxy.writeOnly = false;
});

function spec(prefix: string, extra: Partial<S3StorageSpec> = {}): S3StorageSpec {
  return { ...s3.spec(prefix, { multipartThreshold: THRESHOLD, partSize: PART, ...extra }), endpoint: proxy.endpoint, ...(extra.endpoint ? { endpoint: extra.endpoint } : {}) };
}

/** A store through the proxy with the retry and limit wrappers, as the commands use it. */
function open(prefix: string, extra: Partial<S3StorageSpec> = {}, retry: RetryOptions = fastRetry): Storage {
  const store = openStorage(spec(prefix, extra), { s3: s3Options, retry });
  stores.push(store);
  return store;
}

/** The raw backend against s3rver directly, to check what landed without the proxy. */
function direct(prefix: string): Storage {
  const store = new S3Storage(s3.spec(prefix), s3Options);
  stores.push(store);
  return store;
}

const ops = (filter?: (r: ProxiedRequest) => boolean): string[] => proxy.requests.filter(filter ?? (() => true)).map((r) => r.op);

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; result: T | undefined; error: unknown }> {
  const start = Date.now();
  try {
    const result = await fn();
    return { ms: Date.now() - start, result, error: undefined };
  } catch (error) {
    return { ms: Date.now() - start, result: undefined, error };
  }
}

describe('transient faults are retried until the operation succeeds', () => {
  it('500 InternalError and 503 SlowDown on every verb', async () => {
    const store = open('t1/');
    proxy.addFault({ fault: { kind: 'error', status: 503, code: 'SlowDown' }, every: 2 });
    proxy.addFault({ fault: { kind: 'error', status: 500, code: 'InternalError' }, every: 3 });
    const bytes = randomBytes(50_000);
    await store.put('a/obj', bytes);
    expectBytes(await readAll(await store.get('a/obj')), bytes);
    expectBytes(await readAll(await store.get('a/obj', { offset: 10, length: 1000 })), bytes.subarray(10, 1010));
    expect((await store.stat('a/obj')).size).toBe(bytes.length);
    const keys: string[] = [];
    for await (const o of store.list('a/')) keys.push(o.key);
    expect(keys).toEqual(['a/obj']);
    await store.delete(['a/obj']);
    await expectStorageError(store.stat('a/obj'), 'not-found');
    expect(proxy.requests.filter((r) => r.fault === 'error').length).toBeGreaterThan(5);
  });

  it('409 ConditionalRequestConflict (a concurrent conditional write) is retried', async () => {
    const store = open('t9/');
    const conflict = { kind: 'error', status: 409, code: 'ConditionalRequestConflict' } as const;
    proxy.addFault({ match: 'PutObject', fault: conflict, times: 1 });
    proxy.addFault({ match: 'CompleteMultipartUpload', fault: conflict, times: 1 });
    const bytes = randomBytes(THRESHOLD + 1);
    await store.put('small', Buffer.from('s'));
    await store.put('big', bytes);
    expect(proxy.requests.filter((r) => r.status === 409).map((r) => r.op)).toEqual(['PutObject', 'CompleteMultipartUpload']);
    expectBytes(await readAll(await direct('t9/').get('big')), bytes);
  });

  it('a connection reset mid request body: the put is retried with the body reopened and lands whole', async () => {
    const store = open('t2/');
    proxy.addFault({ match: 'PutObject', fault: { kind: 'reset-request' }, times: 2 });
    const bytes = randomBytes(200_000);
    const body = streamBody(bytes);
    await store.put('obj', body, { sha256: sha256(bytes) });
    expect(body.opened).toBe(3);
    expect(ops((r) => r.op === 'PutObject')).toHaveLength(3);
    expectBytes(await readAll(await direct('t2/').get('obj')), bytes);
  });

  it('a reset after the object landed (response lost): the retried put is harmless', async () => {
    const store = open('t3/');
    proxy.addFault({ match: 'PutObject', fault: { kind: 'reset-response', afterBytes: 0 }, times: 1 });
    const bytes = randomBytes(10_000);
    await store.put('obj', bytes);
    expect(ops((r) => r.op === 'PutObject')).toHaveLength(2);
    expectBytes(await readAll(await store.get('obj')), bytes);
  });

  it('a connection reset mid response body: the download resumes from where it stopped', async () => {
    const bytes = randomBytes(300_000);
    await direct('t4/').put('obj', bytes);
    const store = open('t4/');
    proxy.addFault({ match: 'GetObject', fault: { kind: 'reset-response', afterBytes: 120_000 }, times: 2 });
    // Ranged: the remaining range is requested.
    expectBytes(await readAll(await store.get('obj', { offset: 1000, length: 250_000 })), bytes.subarray(1000, 251_000));
    const gets = proxy.requests.filter((r) => r.op === 'GetObject');
    expect(gets.map((r) => r.range)).toEqual(['bytes=1000-250999', 'bytes=121000-250999', 'bytes=241000-250999']);
    // Whole object: its size is learnt with one HeadObject, then the rest is requested.
    proxy.resetStats();
    proxy.addFault({ match: 'GetObject', fault: { kind: 'reset-response', afterBytes: 100_000 }, times: 1 });
    expectBytes(await readAll(await store.get('obj')), bytes);
    expect(ops()).toEqual(['GetObject', 'HeadObject', 'GetObject']);
    expect(proxy.requests[2]?.range).toBe('bytes=100000-299999');
    // Nothing was downloaded twice.
    expect(proxy.bytesDownloaded).toBe(bytes.length);
  });

  it('slow responses: a stalled one times out and is retried, a trickling one is waited for', async () => {
    const bytes = randomBytes(100_000);
    await direct('t5/').put('obj', bytes);
    const store = open('t5/');
    proxy.addFault({ match: 'GetObject', fault: { kind: 'delay', ms: 1500 }, times: 1 });
    expectBytes(await readAll(await store.get('obj')), bytes);
    expect(ops()).toEqual(['GetObject', 'GetObject']);
    proxy.resetStats();
    proxy.addFault({ match: 'GetObject', fault: { kind: 'slow-response', chunkBytes: 16 * KiB, chunkDelayMs: 50 }, times: 1 });
    expectBytes(await readAll(await store.get('obj')), bytes);
    expect(ops()).toEqual(['GetObject']);
    proxy.resetStats();
    proxy.addFault({ match: 'PutObject', fault: { kind: 'hang' }, times: 1 });
    await store.put('hung', bytes);
    expect(ops()).toEqual(['PutObject', 'PutObject']);
  });

  it('a failed multipart part is re-sent alone; the upload is not restarted', async () => {
    const store = open('t6/');
    proxy.addFault({ match: (r) => r.op === 'UploadPart' && r.path.includes('partNumber=3'), fault: { kind: 'error', status: 503, code: 'SlowDown' }, times: 2 });
    proxy.addFault({ match: (r) => r.op === 'UploadPart' && r.path.includes('partNumber=5'), fault: { kind: 'reset-request' }, times: 1 });
    const bytes = randomBytes(5 * PART + 1234);
    await store.put('big', streamBody(bytes, 33_333), { sha256: sha256(bytes) });
    const counts = proxy.counts();
    expect(counts).toEqual({ CreateMultipartUpload: 1, UploadPart: 6 + 3, CompleteMultipartUpload: 1 });
    expectBytes(await readAll(await direct('t6/').get('big')), bytes);
  });
});

describe('a put lands whole or not at all', () => {
  it('when every attempt is cut, the put fails after its budget and nothing is stored', async () => {
    const store = open('w1/', {}, { ...fastRetry, maxAttempts: 3 });
    proxy.addFault({ match: 'PutObject', fault: { kind: 'reset-request' } });
    const bytes = randomBytes(100_000);
    const err = await expectStorageError(store.put('obj', bytes), 'transient', /gave up after 3 attempts/);
    expect(err.message).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+ \(writing s3:\/\/vaultik-test\/w1\/obj\)/);
    await expectStorageError(direct('w1/').stat('obj'), 'not-found');
    expect(existsSync(join(s3.directory, s3.bucket, 'w1', 'obj._S3rver_object'))).toBe(false);
    proxy.clearFaults();
    await store.put('obj', bytes);
    expectBytes(await readAll(await direct('w1/').get('obj')), bytes);
  });

  it('a multipart upload that fails for good is aborted and never completed', async () => {
    const store = open('w2/');
    proxy.addFault({ match: (r) => r.op === 'UploadPart' && r.path.includes('partNumber=2'), fault: { kind: 'error', status: 403, code: 'AccessDenied' } });
    const bytes = randomBytes(4 * PART);
    const before = s3.incompleteUploads().length;
    const { ms, error } = await timed(() => store.put('big', bytes));
    await expectStorageError(Promise.reject(error), 'permission', /access denied writing s3:\/\/vaultik-test\/w2\/big: check the credential's s3:PutObject permission/);
    expect(ms).toBeLessThan(2000);
    const counts = proxy.counts();
    expect(counts.CreateMultipartUpload).toBe(1);
    expect(counts.AbortMultipartUpload).toBe(1);
    expect(counts.CompleteMultipartUpload).toBeUndefined();
    // s3rver answers AbortMultipartUpload with 405 and keeps the parts; real S3 drops them.
    expect(s3.incompleteUploads().length).toBe(before + 1);
    await expectStorageError(direct('w2/').stat('big'), 'not-found');
  });

  it('an aborted multipart put (caller signal) aborts the upload', async () => {
    const store = open('w3/');
    const controller = new AbortController();
    let sent = 0;
    const stalling = {
      size: 10 * PART,
      open: () =>
        new Readable({
          read() {
            // Three parts, then the source stalls (a slow disk, say) until the caller gives up.
            if (sent < 3 * PART) {
              sent += PART;
              this.push(randomBytes(PART));
            }
          },
        }),
    };
    setTimeout(() => controller.abort(), 300);
    await expect(store.put('big', stalling, { signal: controller.signal })).rejects.toThrow(/abort/i);
    expect(proxy.counts().AbortMultipartUpload).toBe(1);
    expect(proxy.counts().CompleteMultipartUpload).toBeUndefined();
  });
});

describe('permanent errors fail fast with a message users can act on', () => {
  it('write-only credentials: puts work, reads are refused at once', async () => {
    proxy.writeOnly = true;
    const store = open('p1/');
    await store.put('small', randomBytes(1000));
    await store.put('big', streamBody(randomBytes(3 * PART + 5)));
    expect(new Set(ops()).size).toBeGreaterThan(1);
    expect(ops().every((op) => WRITE_OPERATIONS.has(op as never))).toBe(true);
    proxy.resetStats();
    const { ms, error } = await timed(() => store.get('small'));
    await expectStorageError(Promise.reject(error), 'permission', /^access denied reading s3:\/\/vaultik-test\/p1\/small: check the credential's s3:GetObject permission$/);
    expect(ms).toBeLessThan(500);
    expect(ops()).toEqual(['GetObject']);
    await expectStorageError(store.stat('small'), 'permission', /s3:GetObject/);
    await expectStorageError(
      (async () => {
        for await (const _ of store.list('')) void _;
      })(),
      'permission',
      /access denied listing s3:\/\/vaultik-test\/p1\/: check the credential's s3:ListBucket permission/,
    );
    await expectStorageError(store.delete(['small']), 'permission', /s3:DeleteObject/);
    expect(ops()).toEqual(['GetObject', 'HeadObject', 'ListObjectsV2', 'DeleteObjects']);
  });

  it('an unknown access key is refused at once', async () => {
    const store = open('p2/', { accessKeyId: 'NOT-S3RVER' });
    const { ms, error } = await timed(() => store.put('obj', Buffer.from('x')));
    await expectStorageError(Promise.reject(error), 'permission', /the access key id is not known to http:\/\/127\.0\.0\.1:\d+ \(writing s3:\/\/vaultik-test\/p2\/obj\): check AWS_ACCESS_KEY_ID/);
    expect(ms).toBeLessThan(500);
    expect(ops()).toEqual(['PutObject']);
  });

  it('a missing bucket is reported as such, for every verb', async () => {
    const store = open('p3/', { bucket: 'no-such-bucket' });
    const message = /^bucket 'no-such-bucket' does not exist at http:\/\/127\.0\.0\.1:\d+: create it, or check the bucket name and the endpoint$/;
    const { ms, error } = await timed(() => store.put('obj', Buffer.from('x')));
    await expectStorageError(Promise.reject(error), 'permanent', message);
    expect(ms).toBeLessThan(500);
    await expectStorageError(store.get('obj'), 'permanent', message);
    await expectStorageError(store.stat('obj'), 'permanent', message);
    await expectStorageError(
      (async () => {
        for await (const _ of store.list('')) void _;
      })(),
      'permanent',
      message,
    );
    await expectStorageError(store.put('big', randomBytes(3 * PART)), 'permanent', message);
    // One request per call (the stat also asked HeadBucket): no retries.
    expect(ops()).toEqual(['PutObject', 'GetObject', 'HeadObject', 'HeadBucket', 'ListObjectsV2', 'CreateMultipartUpload']);
  });

  it('an unreachable endpoint fails after the retry budget with the reason', async () => {
    const store = open('p4/', { endpoint: 'http://127.0.0.1:1' }, { ...fastRetry, maxElapsedMs: 500 });
    const { ms, error } = await timed(() => store.get('obj'));
    await expectStorageError(Promise.reject(error), 'transient', /^cannot reach http:\/\/127\.0\.0\.1:1 \(reading s3:\/\/vaultik-test\/p4\/obj\): connect ECONNREFUSED 127\.0\.0\.1:1 \(gave up after \d+ attempts in 0\.\d s\)$/);
    expect(ms).toBeLessThan(1500);
  });
});

describe('outages', () => {
  it('an outage longer than the retry budget fails clearly', async () => {
    const store = open('o1/', {}, { baseDelayMs: 50, maxDelayMs: 200, maxAttempts: 100, maxElapsedMs: 1000 });
    proxy.outage(5000);
    const { ms, error } = await timed(() => store.put('obj', randomBytes(1000)));
    await expectStorageError(Promise.reject(error), 'transient', /cannot reach http:\/\/127\.0\.0\.1:\d+ \(writing s3:\/\/vaultik-test\/o1\/obj\): .*\(gave up after \d+ attempts in \d\.\d s\)/);
    expect(ms).toBeGreaterThan(700);
    expect(ms).toBeLessThan(2500);
    expect(proxy.count('PutObject')).toBeGreaterThan(3);
  });

  it('an outage shorter than the budget is ridden out', async () => {
    const store = open('o2/', {}, { baseDelayMs: 50, maxDelayMs: 200, maxAttempts: 100, maxElapsedMs: 5000 });
    proxy.outage(600, '503');
    const bytes = randomBytes(1000);
    await store.put('obj', bytes);
    expectBytes(await readAll(await store.get('obj')), bytes);
    expect(proxy.requests.some((r) => r.fault === 'outage')).toBe(true);
  });
});

describe('requests and headers on the wire', () => {
  it('single puts send Content-Length and a checksum; never aws-chunked', async () => {
    const store = open('h1/');
    const bytes = randomBytes(2000);
    await store.put('with-sha', bytes, { sha256: sha256(bytes) });
    await store.put('without-sha', bytes);
    const body = streamBody(bytes);
    await store.put('stream-without-sha', body);
    expect(body.opened).toBe(2); // once to hash (Content-MD5), once to send
    const [a, b, c] = proxy.requests;
    expect(a?.headers['x-amz-checksum-sha256']).toBe(sha256(bytes).toString('base64'));
    // The signer is given the known hash instead of hashing the body again.
    expect(a?.headers['x-amz-content-sha256']).toBe(sha256(bytes).toString('hex'));
    expect(c?.headers['x-amz-content-sha256']).toBe('UNSIGNED-PAYLOAD');
    expect(a?.headers['content-md5']).toBeUndefined();
    for (const r of [b, c]) {
      expect(r?.headers['content-md5']).toBe(createHash('md5').update(bytes).digest('base64'));
      expect(r?.headers['x-amz-checksum-sha256']).toBeUndefined();
    }
    for (const r of [a, b, c]) {
      expect(r?.op).toBe('PutObject');
      expect(r?.headers['content-length']).toBe('2000');
      expect(r?.headers['content-encoding']).toBeUndefined();
      expect(r?.headers['x-amz-trailer']).toBeUndefined();
      expect(r?.headers['x-amz-checksum-crc32']).toBeUndefined();
    }
  });

  it('multipart parts carry Content-MD5; Object Lock headers go on PutObject and CreateMultipartUpload', async () => {
    const store = open('h2/', { objectLock: { mode: 'governance', days: 30 } });
    await store.put('small', Buffer.from('locked'), { sha256: sha256(Buffer.from('locked')) });
    await store.put('big', randomBytes(3 * PART));
    const now = Date.now();
    for (const r of proxy.requests.filter((x) => x.op === 'PutObject' || x.op === 'CreateMultipartUpload')) {
      expect(r.headers['x-amz-object-lock-mode']).toBe('GOVERNANCE');
      const until = Date.parse(String(r.headers['x-amz-object-lock-retain-until-date']));
      expect(Math.abs(until - (now + 30 * 86_400_000))).toBeLessThan(60_000);
    }
    expect(proxy.requests.find((x) => x.op === 'PutObject')?.headers['x-amz-checksum-sha256']).toBeDefined();
    const parts = proxy.requests.filter((x) => x.op === 'UploadPart');
    expect(parts).toHaveLength(3);
    for (const p of parts) {
      expect(p.headers['content-md5']).toMatch(/^[A-Za-z0-9+/]{22}==$/);
      expect(p.headers['x-amz-content-sha256']).toBe('UNSIGNED-PAYLOAD');
    }
  });

  it('PutObject and CompleteMultipartUpload carry If-None-Match: *, unless conditional_writes is false', async () => {
    await open('h6/').put('small', randomBytes(100));
    await open('h6/').put('big', randomBytes(THRESHOLD + 1));
    await open('h6/', { conditionalWrites: false }).put('off', randomBytes(100));
    const conditional = proxy.requests.filter((r) => r.headers['if-none-match'] === '*').map((r) => `${r.op} ${r.key}`);
    expect(conditional).toEqual(['PutObject h6/small', 'CompleteMultipartUpload h6/big']);
  });

  it('a server answering 501 to If-None-Match: auto warns once and puts without it; true fails naming the key', async () => {
    const warnings: string[] = [];
    const refuse = (): (() => void) =>
      proxy.addFault({ match: (r) => r.headers['if-none-match'] !== undefined, fault: { kind: 'error', status: 501, code: 'NotImplemented' } });
    const removeRefusal = refuse();
    const auto = new S3Storage(spec('h7/'), { ...s3Options, warn: (m) => warnings.push(m) });
    stores.push(auto);
    await auto.put('a', Buffer.from('a'));
    await auto.put('b', randomBytes(THRESHOLD + 1));
    await auto.put('c', Buffer.from('c'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/does not support conditional writes.*conditional_writes/);
    expect(proxy.requests.filter((r) => r.status === 501).map((r) => r.op)).toEqual(['PutObject']);
    expect((await readAll(await direct('h7/').get('a'))).toString()).toBe('a');
    const strict = open('h7/', { conditionalWrites: true });
    await expectStorageError(strict.put('d', Buffer.from('d')), 'permanent', /conditional_writes: true.*set conditional_writes: auto or false/);
    removeRefusal();
  });

  it('412 to CompleteMultipartUpload: the object exists, the put succeeds and aborts its upload', async () => {
    const store = open('h8/');
    proxy.addFault({ match: 'CompleteMultipartUpload', fault: { kind: 'error', status: 412, code: 'PreconditionFailed' }, times: 1 });
    await store.put('big', randomBytes(THRESHOLD + 1));
    expect(ops((r) => r.op !== 'UploadPart')).toEqual(['CreateMultipartUpload', 'CompleteMultipartUpload', 'AbortMultipartUpload']);
  });

  it('DeleteObjects sends Content-MD5 instead of CRC32, in batches of at most 1000', async () => {
    const store = open('h3/');
    const keys = Array.from({ length: 2001 }, (_, i) => `k${i}`);
    await store.delete(keys);
    const deletes = proxy.requests.filter((r) => r.op === 'DeleteObjects');
    expect(deletes).toHaveLength(3);
    for (const d of deletes) {
      expect(d.headers['content-md5']).toBeDefined();
      expect(d.headers['x-amz-checksum-crc32']).toBeUndefined();
      expect(d.headers['x-amz-sdk-checksum-algorithm']).toBeUndefined();
    }
  });

  it('ranged gets always send an explicit first-last range', async () => {
    const store = open('h4/');
    const bytes = randomBytes(5000);
    await store.put('obj', bytes);
    await readAll(await store.get('obj', { offset: 4000, length: 1000 }));
    await readAll(await store.get('obj', { offset: 0, length: 1 }));
    expect(proxy.requests.filter((r) => r.op === 'GetObject').map((r) => r.range)).toEqual(['bytes=4000-4999', 'bytes=0-0']);
  });

  it('the backup path (put) issues only write operations, even through faults', async () => {
    const store = open('h5/');
    proxy.addFault({ fault: { kind: 'error', status: 503, code: 'SlowDown' }, every: 3 });
    await store.put('a', randomBytes(1000));
    await store.put('b', streamBody(randomBytes(2 * PART + 7)));
    await store.put('c', randomBytes(THRESHOLD + 1), { sha256: sha256(randomBytes(1)) }).catch(() => undefined);
    const seen = new Set(ops());
    for (const op of seen) expect(WRITE_OPERATIONS.has(op as never), op).toBe(true);
  });
});
