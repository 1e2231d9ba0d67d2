/**
 * Ceph radosgw as a second real S3 server for tests: a one-machine cluster (one mon, one OSD on
 * memstore, rgw with the beast frontend on 127.0.0.1), its own fsid and temp directory, started
 * ONCE per vitest run by the global setup (test/helpers/radosgw-setup.ts) in the background, so
 * its ~12 s start overlaps the first test files. Unlike s3rver it enforces SigV4, If-None-Match
 * (412), Content-MD5 (BadDigest), the signed payload hash (x-amz-content-sha256), versioning and
 * Object Lock. Quirks: x-amz-checksum-* is not validated; CompleteMultipartUpload answers an
 * empty ETag and ignores If-None-Match.
 *
 * API (in a test file)
 *   const rgw = radosgwTarget();        // { missing: reason } when radosgw is not installed
 *   describe.skipIf(rgw.missing)(`... ${rgw.label}`, ...)   label says why it is skipped
 *   const server = await rgw.ready();   // waits for the cluster; throws if it failed to start
 *   const bucket = await server.createBucket({ objectLock?: true });   a fresh bucket
 *   server.spec(bucket, prefix, extra?) an S3StorageSpec (SigV4 credentials of a real user)
 *
 * Without radosgw installed the cases are skipped, visibly (the label names the packages); with
 * VAULTIK_REQUIRE_RADOSGW=1 (set by .ci/run) a missing radosgw fails the run instead.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { inject } from 'vitest';
import type { S3StorageSpec } from '../../src/storage/types.js';

const STARTUP_TIMEOUT_MS = 90_000;

/** What the global setup hands to test files (vitest provide/inject). */
export interface RadosgwInfo {
  /** Why there is no radosgw in this run; undefined when one is starting. */
  missing?: string;
  dir?: string;
  endpoint?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    radosgw: RadosgwInfo;
  }
}

export interface RadosgwServer {
  endpoint: string;
  /** Creates a bucket with a fresh name, optionally with Object Lock enabled (and versioning). */
  createBucket(options?: { objectLock?: boolean }): Promise<string>;
  spec(bucket: string, prefix: string, extra?: Partial<S3StorageSpec>): S3StorageSpec;
}

export interface RadosgwTarget {
  /** Why the cases are skipped, or false. */
  missing: string | false;
  /** ' (skipped: <reason>)' for describe names, '' when radosgw runs. */
  label: string;
  ready(): Promise<RadosgwServer>;
}

/** The radosgw of this run, as provided by the global setup. */
export function radosgwTarget(): RadosgwTarget {
  const info = inject('radosgw');
  const missing = info.missing ?? false;
  return {
    missing,
    label: missing ? ` (skipped: ${missing})` : '',
    ready: async () => {
      if (missing) throw new Error(missing);
      await waitReady(info.dir!);
      const exited = join(info.dir!, 'exited');
      if (existsSync(exited)) throw new Error(`radosgw is down: ${readFileSync(exited, 'utf8').trim()} (logs in ${info.dir}/log)`);
      return server(info);
    },
  };
}

async function waitReady(dir: string): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    const state = join(dir, 'state');
    if (existsSync(state)) {
      const text = readFileSync(state, 'utf8');
      if (text === 'ready') return;
      throw new Error(`radosgw did not start: ${text}`);
    }
    if (Date.now() > deadline) throw new Error(`radosgw not ready after ${STARTUP_TIMEOUT_MS} ms (logs in ${dir}/log)`);
    await sleep(100);
  }
}

function server(info: RadosgwInfo): RadosgwServer {
  const endpoint = info.endpoint!;
  const spec = (bucket: string, prefix: string, extra: Partial<S3StorageSpec> = {}): S3StorageSpec => ({
    type: 's3',
    bucket,
    prefix,
    endpoint,
    region: 'us-east-1',
    accessKeyId: info.accessKeyId,
    secretAccessKey: info.secretAccessKey,
    forcePathStyle: true,
    ...extra,
  });
  return {
    endpoint,
    spec,
    createBucket: async (options = {}) => {
      const { S3Client, CreateBucketCommand } = await import('@aws-sdk/client-s3');
      const bucket = `vaultik-${randomBytes(6).toString('hex')}`;
      const s = spec(bucket, '');
      const client = new S3Client({
        region: s.region,
        endpoint,
        forcePathStyle: true,
        credentials: { accessKeyId: s.accessKeyId!, secretAccessKey: s.secretAccessKey! },
      });
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: options.objectLock }));
      } finally {
        client.destroy();
      }
      return bucket;
    },
  };
}
