/**
 * Conditional writes on a server that enforces If-None-Match (radosgw; s3rver ignores it), seen
 * on the wire through the fault proxy:
 * - a second writer's put of other bytes at an existing key is refused (412) and the put counts
 *   as done: the first bytes stay; with conditional_writes: false the same put replaces them;
 * - a put whose answer is lost is retried, gets 412 for its own object, and succeeds.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetryStorage } from '../../src/storage/retry.js';
import { S3Storage } from '../../src/storage/s3.js';
import type { S3StorageSpec } from '../../src/storage/types.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy.js';
import { radosgwTarget } from '../helpers/radosgw.js';
import { expectBytes, readAll, sha256 } from './conformance.js';

const rgw = radosgwTarget();

describe.skipIf(rgw.missing)(`conditional writes on radosgw${rgw.label}`, () => {
  let proxy: FaultProxy;
  let spec: (prefix: string, extra?: Partial<S3StorageSpec>) => S3StorageSpec;
  const stores: S3Storage[] = [];
  beforeAll(async () => {
    const server = await rgw.ready();
    const bucket = await server.createBucket();
    proxy = await startFaultProxy(server.endpoint);
    spec = (prefix, extra) => ({ ...server.spec(bucket, prefix, extra), endpoint: proxy.endpoint });
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await proxy?.close();
  });
  const store = (prefix: string, extra?: Partial<S3StorageSpec>): S3Storage => {
    const s = new S3Storage(spec(prefix, extra), { socketTimeoutMs: 5000 });
    stores.push(s);
    return s;
  };

  it("a second writer's other bytes are refused with 412 and the first bytes stay; without the header they would be replaced", async () => {
    const first = randomBytes(3000);
    const second = randomBytes(3000);
    await store('a/').put('obj', first, { sha256: sha256(first) });
    proxy.resetStats();
    await store('a/').put('obj', second, { sha256: sha256(second) });
    expect(proxy.requests.map((r) => `${r.op} ${r.status}`)).toEqual(['PutObject 412']);
    expectBytes(await readAll(await store('a/').get('obj')), first);

    await store('b/').put('obj', first);
    await store('b/', { conditionalWrites: false }).put('obj', second);
    expectBytes(await readAll(await store('b/').get('obj')), second);
  });

  it('a put whose answer was lost is retried, meets its own object (412) and succeeds', async () => {
    const bytes = randomBytes(5000);
    proxy.resetStats();
    proxy.addFault({ match: 'PutObject', fault: { kind: 'reset-response', afterBytes: 0 }, times: 1 });
    const retrying = new RetryStorage(store('c/'), { baseDelayMs: 5, maxDelayMs: 20 });
    await retrying.put('obj', bytes, { sha256: sha256(bytes) });
    // The first answer never reached the client; the object had landed.
    expect(proxy.requests.map((r) => `${r.op} ${r.fault ?? r.status}`)).toEqual(['PutObject reset-response', 'PutObject 412']);
    expectBytes(await readAll(await store('c/').get('obj')), bytes);
  });
});
