/**
 * The real S3 servers the S3 tests run against, so a test is written once and parametrized:
 *
 *   for (const server of s3Servers()) {
 *     it.skipIf(server.missing)(`... on ${server.name}${server.label}`, async () => {
 *       const s3 = await server.start();   // a fresh bucket (s3rver: a fresh server)
 *       ... s3.spec(prefix), s3.yaml(prefix) ...
 *       await s3.stop();
 *     });
 *   }
 *
 * s3rver always runs; radosgw when installed (test/helpers/radosgw.ts), else its cases are
 * skipped with the reason in their name.
 */
import type { S3StorageSpec } from '../../src/storage/types.js';
import { radosgwTarget } from './radosgw.js';
import { startS3rver } from './s3rver.js';

export interface S3Server {
  endpoint: string;
  bucket: string;
  spec(prefix: string, extra?: Partial<S3StorageSpec>): S3StorageSpec;
  /** The `s3:` block of a config file for `prefix`, endpoint overridable (a fault proxy). */
  yaml(prefix: string, endpoint?: string): string;
  /** The environment of a command given `<bucket> <prefix>` (restore, prune, ...). */
  env(): NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export interface S3ServerKind {
  name: 's3rver' | 'radosgw';
  /** Why this server's cases are skipped, or false. */
  missing: string | false;
  /** ' (skipped: <reason>)' for test names, or ''. */
  label: string;
  /** s3rver cannot list multipart uploads; radosgw can. */
  listsUploads: boolean;
  start(): Promise<S3Server>;
}

function server(spec: (prefix: string, extra?: Partial<S3StorageSpec>) => S3StorageSpec, stop: () => Promise<void>): S3Server {
  const base = spec('');
  const yaml = (prefix: string, endpoint = base.endpoint): string =>
    `s3: {endpoint: '${endpoint}', bucket: ${base.bucket}, prefix: ${prefix}, region: us-east-1, access_key_id: ${base.accessKeyId}, secret_access_key: ${base.secretAccessKey}}`;
  const env = (): NodeJS.ProcessEnv => ({
    AWS_ENDPOINT_URL_S3: base.endpoint,
    AWS_REGION: 'us-east-1',
    AWS_ACCESS_KEY_ID: base.accessKeyId,
    AWS_SECRET_ACCESS_KEY: base.secretAccessKey,
  });
  return { endpoint: base.endpoint!, bucket: base.bucket, spec, yaml, env, stop };
}

export function s3Servers(): S3ServerKind[] {
  const rgw = radosgwTarget();
  return [
    {
      name: 's3rver',
      missing: false,
      label: '',
      listsUploads: false,
      start: async () => {
        const s3 = await startS3rver();
        return server(s3.spec, s3.stop);
      },
    },
    {
      name: 'radosgw',
      missing: rgw.missing,
      label: rgw.label,
      listsUploads: true,
      start: async () => {
        const rgwServer = await rgw.ready();
        const bucket = await rgwServer.createBucket();
        // The cluster belongs to the run (global setup): nothing to stop per file.
        return server((prefix, extra) => rgwServer.spec(bucket, prefix, extra), async () => undefined);
      },
    },
  ];
}
