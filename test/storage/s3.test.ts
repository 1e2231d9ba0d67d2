import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Storage } from '../../src/storage/s3.js';
import { openStorage } from '../../src/storage/open.js';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.js';
import { INTEGRITY_CHECKS, startFaultProxy, type FaultProxy } from '../helpers/faultProxy.js';
import { radosgwTarget } from '../helpers/radosgw.js';
import { storageConformance } from './conformance.js';

const KiB = 1024;
const multipart = { threshold: 256 * KiB, partSize: 100 * KiB };
const s3Options = { minPartSize: 1, socketTimeoutMs: 5_000, connectionTimeoutMs: 2_000 };

let s3: S3rverHandle;
let proxy: FaultProxy;
const ready = (async () => {
  s3 = await startS3rver();
  // The proxy checks Content-MD5 and the SHA-256 headers as S3 does (s3rver checks none).
  proxy = await startFaultProxy(s3.endpoint, { verify: INTEGRITY_CHECKS });
})();
afterAll(async () => {
  await proxy?.close();
  await s3?.stop();
});
beforeAll(() => ready);

storageConformance(
  's3 via s3rver',
  async () => {
    await ready;
    return { storage: new S3Storage(s3.spec('direct/', { multipartThreshold: multipart.threshold, partSize: multipart.partSize }), s3Options) };
  },
  { multipart, atomicPuts: false },
);

storageConformance(
  's3 via fault proxy, retry and limit (openStorage)',
  async () => {
    await ready;
    // Every 7th request fails with 503 SlowDown, every 11th has its response cut: the suite must
    // not notice.
    proxy.addFault({ match: (r) => r.op !== 'Other', fault: { kind: 'error', status: 503, code: 'SlowDown' }, skip: 3, every: 7 });
    proxy.addFault({ match: ['GetObject', 'PutObject', 'UploadPart', 'ListObjectsV2'], fault: { kind: 'reset-response' }, skip: 5, every: 11 });
    const spec = { ...s3.spec('proxied/', { multipartThreshold: multipart.threshold, partSize: multipart.partSize }), endpoint: proxy.endpoint };
    return {
      storage: openStorage(spec, { s3: s3Options, retry: { baseDelayMs: 5, maxDelayMs: 50, maxAttempts: 10 }, concurrency: 16 }),
      cleanup: async () => proxy.clearFaults(),
    };
  },
  { multipart, verifiesChecksum: true },
);

const rgw = radosgwTarget();
describe.skipIf(rgw.missing)(`on radosgw${rgw.label}`, () => {
  let rgwProxy: FaultProxy | undefined;
  afterAll(async () => rgwProxy?.close());
  const server = async (prefix: string, endpoint?: (real: string) => Promise<string>): Promise<S3Storage> => {
    const rgwServer = await rgw.ready();
    const bucket = await rgwServer.createBucket();
    const spec = rgwServer.spec(bucket, prefix, { multipartThreshold: multipart.threshold, partSize: multipart.partSize });
    return new S3Storage(endpoint ? { ...spec, endpoint: await endpoint(spec.endpoint!) } : spec, s3Options);
  };
  // radosgw verifies Content-MD5 and the signed payload hash (x-amz-content-sha256, the caller's
  // SHA-256 on a PutObject), not x-amz-checksum-sha256; a multipart upload's SHA-256 is checked
  // by the store itself.
  storageConformance('s3 via radosgw', async () => ({ storage: await server('direct/') }), { multipart, exactKeyOrder: true, noOverwrite: true, verifiesChecksum: true });
  storageConformance(
    's3 via radosgw behind the fault proxy, retry and limit',
    async () => {
      const raw = await server('proxied/', async (real) => (rgwProxy = await startFaultProxy(real)).endpoint);
      rgwProxy!.addFault({ match: (r) => r.op !== 'Other', fault: { kind: 'error', status: 503, code: 'SlowDown' }, skip: 3, every: 7 });
      rgwProxy!.addFault({ match: ['GetObject', 'PutObject', 'UploadPart', 'ListObjectsV2'], fault: { kind: 'reset-response' }, skip: 5, every: 11 });
      const { RetryStorage } = await import('../../src/storage/retry.js');
      return { storage: new RetryStorage(raw, { baseDelayMs: 5, maxDelayMs: 50, maxAttempts: 10 }) };
    },
    { multipart, exactKeyOrder: true, noOverwrite: true, verifiesChecksum: true },
  );
});

describe('s3 smoke', () => {
  it('s3rver starts', () => {
    expect(s3.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });
});
