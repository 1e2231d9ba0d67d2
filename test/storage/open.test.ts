import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError, ExitCode } from '../../src/errors.js';
import { openStorage, storageSpecFromArgs } from '../../src/storage/open.js';
import { StorageError } from '../../src/storage/types.js';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.js';
import { makeTempDir } from '../helpers/tmp.js';
import { expectStorageError, readAll } from './conformance.js';

describe('storageSpecFromArgs', () => {
  const cases: [string, string, NodeJS.ProcessEnv, unknown][] = [
    ['file:///srv/backups', 'host1', {}, { type: 'local', path: '/srv/backups', prefix: 'host1/' }],
    ['file:///srv/backups/', '', {}, { type: 'local', path: '/srv/backups/', prefix: '' }],
    ['my-bucket', '/host1/sub/', {}, { type: 's3', bucket: 'my-bucket', prefix: 'host1/sub/', endpoint: undefined, region: 'us-east-1' }],
    ['s3://my-bucket/', 'h', { AWS_DEFAULT_REGION: 'eu-west-1' }, { type: 's3', bucket: 'my-bucket', prefix: 'h/', endpoint: undefined, region: 'eu-west-1' }],
    [
      'b',
      'p/',
      { AWS_REGION: 'eu-central-1', AWS_DEFAULT_REGION: 'eu-west-1', AWS_ENDPOINT_URL: 'http://generic:9000', AWS_ENDPOINT_URL_S3: 'http://minio:9000' },
      { type: 's3', bucket: 'b', prefix: 'p/', endpoint: 'http://minio:9000', region: 'eu-central-1' },
    ],
    ['b', '', { AWS_ENDPOINT_URL: 'http://generic:9000', AWS_ENDPOINT_URL_S3: '' }, { type: 's3', bucket: 'b', prefix: '', endpoint: 'http://generic:9000', region: 'us-east-1' }],
    [
      'b',
      '',
      { AWS_ACCESS_KEY_ID: 'AK', AWS_SECRET_ACCESS_KEY: 'SK', AWS_SESSION_TOKEN: 'TOK' },
      { type: 's3', bucket: 'b', prefix: '', endpoint: undefined, region: 'us-east-1', accessKeyId: 'AK', secretAccessKey: 'SK', sessionToken: 'TOK' },
    ],
    // Only half the key pair: left to the SDK's default chain (which will say what is missing).
    ['b', '', { AWS_ACCESS_KEY_ID: 'AK' }, { type: 's3', bucket: 'b', prefix: '', endpoint: undefined, region: 'us-east-1' }],
  ];
  it.each(cases)('%s %s', (bucket, prefix, env, expected) => {
    expect(storageSpecFromArgs(bucket, prefix, env)).toEqual(expected);
  });

  it.each([
    ['file://relative/dir', 'h'],
    ['file:relative', 'h'],
    ['', 'h'],
    ['a/b', 'h'],
    ['b', '../up'],
    ['b', 'a//b'],
  ])('refuses %j %j with a usage error', (bucket, prefix) => {
    let caught: unknown;
    try {
      storageSpecFromArgs(bucket, prefix, {});
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(UsageError);
  });
});

describe('openStorage', () => {
  it('opens a local store with the wrappers', async () => {
    const tmp = makeTempDir();
    try {
      const store = openStorage(storageSpecFromArgs(`file://${tmp.dir}`, 'h1', {}));
      await store.put('x', Buffer.from('hello'));
      expect((await readAll(await store.get('x'))).toString()).toBe('hello');
      expect(store.description).toBe(`file://${tmp.dir}/h1/`);
    } finally {
      tmp.cleanup();
    }
  });

  it('turns an invalid spec into a usage error', () => {
    expect(() => openStorage({ type: 'local', path: 'relative', prefix: '' })).toThrow(UsageError);
    expect(() => openStorage({ type: 's3', bucket: 'b', prefix: '', partSize: 1024 })).toThrow(/part size/);
  });

  it('storage errors carry exit codes: missing data vs unreachable store', () => {
    expect(new StorageError('x', 'not-found').exitCode).toBe(ExitCode.DATA);
    expect(new StorageError('x', 'transient').exitCode).toBe(ExitCode.STORAGE);
    expect(new StorageError('x', 'permission').exitCode).toBe(ExitCode.STORAGE);
  });
});

describe('S3 credentials from the SDK default chain', () => {
  let s3: S3rverHandle;
  const saved = { ...process.env };
  const tmp = makeTempDir('vaultik-aws-');
  beforeAll(async () => {
    s3 = await startS3rver();
  });
  afterAll(async () => {
    process.env = saved;
    tmp.cleanup();
    await s3?.stop();
  });

  function isolatedEnv(extra: NodeJS.ProcessEnv): void {
    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(saved)) if (!k.startsWith('AWS_')) env[k] = v;
    // No instance-metadata probing: it would take seconds to time out here.
    process.env = { ...env, AWS_EC2_METADATA_DISABLED: 'true', AWS_CONFIG_FILE: join(tmp.dir, 'none'), AWS_SHARED_CREDENTIALS_FILE: join(tmp.dir, 'none'), ...extra };
  }

  it('reads a named profile (AWS_PROFILE + shared credentials file)', async () => {
    mkdirSync(join(tmp.dir, 'aws'), { recursive: true });
    const credentials = join(tmp.dir, 'aws', 'credentials');
    writeFileSync(credentials, '[backup]\naws_access_key_id = S3RVER\naws_secret_access_key = S3RVER\n\n[wrong]\naws_access_key_id = NOPE\naws_secret_access_key = x\n');
    isolatedEnv({ AWS_PROFILE: 'backup', AWS_SHARED_CREDENTIALS_FILE: credentials, AWS_ENDPOINT_URL_S3: s3.endpoint });
    const spec = storageSpecFromArgs(s3.bucket, 'profile/', process.env);
    expect(spec).not.toHaveProperty('accessKeyId');
    const store = openStorage(spec, { retry: false });
    await store.put('x', Buffer.from('via profile'));
    expect((await readAll(await store.get('x'))).toString()).toBe('via profile');
    await store.close();

    isolatedEnv({ AWS_PROFILE: 'wrong', AWS_SHARED_CREDENTIALS_FILE: credentials, AWS_ENDPOINT_URL_S3: s3.endpoint });
    const refused = openStorage(storageSpecFromArgs(s3.bucket, 'profile/', process.env), { retry: false });
    await expectStorageError(refused.put('y', Buffer.from('no')), 'permission', /access key id is not known/);
    await refused.close();
  });

  it('says what to set when there are no credentials at all', async () => {
    isolatedEnv({ AWS_ENDPOINT_URL_S3: s3.endpoint });
    const store = openStorage(storageSpecFromArgs(s3.bucket, 'none/', process.env));
    const start = Date.now();
    await expectStorageError(store.put('x', Buffer.from('x')), 'permission', /no S3 credentials found .*AWS_ACCESS_KEY_ID/);
    expect(Date.now() - start).toBeLessThan(3000);
    await store.close();
  });
});
