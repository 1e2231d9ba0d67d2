/**
 * Put/get throughput of the S3 store against s3rver, for a 256 MiB object as one PutObject and as
 * a multipart upload. Not a timed test: run it by hand and read the numbers.
 *
 *   npx vitest bench --run test/storage/throughput.bench.ts
 *
 * s3rver writes every object to disk, hashes it with MD5 and serves it through Koa, so these
 * numbers measure s3rver and the SDK together; a real S3 or MinIO is usually faster.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, bench, describe } from 'vitest';
import { S3Storage } from '../../src/storage/s3.js';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.js';

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;
let s3: S3rverHandle;
let data: Buffer;
let digest: Buffer;

beforeAll(async () => {
  s3 = await startS3rver();
  data = randomBytes(SIZE);
  digest = createHash('sha256').update(data).digest();
});
afterAll(async () => {
  await s3?.stop();
});

/** The body as a re-openable stream of 1 MiB chunks (how the blob writer hands bodies over). */
const body = { size: SIZE, open: () => Readable.from((function* () { for (let i = 0; i < SIZE; i += MiB) yield data.subarray(i, i + MiB); })(), { objectMode: false }) };

function report(label: string, ms: number): void {
  process.stdout.write(`${label}: ${(SIZE / MiB / (ms / 1000)).toFixed(1)} MiB/s (${(ms / 1000).toFixed(2)} s for 256 MiB)\n`);
}

async function run(kind: 'single' | 'multipart'): Promise<void> {
  const store = new S3Storage(
    s3.spec('bench/', kind === 'single' ? { multipartThreshold: 1024 * MiB } : { multipartThreshold: 16 * MiB, partSize: 16 * MiB, concurrency: 4 }),
  );
  let start = Date.now();
  await store.put(`obj-${kind}`, body, { sha256: digest });
  report(`put ${kind}`, Date.now() - start);
  start = Date.now();
  const hash = createHash('sha256');
  let n = 0;
  for await (const chunk of await store.get(`obj-${kind}`)) {
    hash.update(chunk as Buffer);
    n += (chunk as Buffer).length;
  }
  report(`get ${kind}`, Date.now() - start);
  if (n !== SIZE || !hash.digest().equals(digest)) throw new Error('downloaded bytes differ');
  await store.delete([`obj-${kind}`]);
  await store.close();
}

const once = { iterations: 1, warmupIterations: 0, time: 0, warmupTime: 0 };
describe('s3rver throughput, 256 MiB', () => {
  bench('single PutObject, then GetObject', () => run('single'), once);
  bench('multipart (16 MiB parts, 4 in flight), then GetObject', () => run('multipart'), once);
});
