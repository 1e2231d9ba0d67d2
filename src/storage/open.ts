/**
 * Building a store from a spec, and a spec from the command line (`<bucket> <prefix>` plus the
 * standard AWS environment). The only place that decides how the wrappers are stacked.
 */
import { fileURLToPath } from 'node:url';
import { isAbsolute } from 'node:path';
import type { Readable } from 'node:stream';
import { UsageError } from '../errors.js';
import { normalizePrefix } from './keys.js';
import { LimitStorage } from './limit.js';
import { LocalStorage } from './local.js';
import { RetryStorage, type RetryOptions } from './retry.js';
import type { S3Storage } from './s3.js';
import { checkS3Spec, type S3StorageOptions } from './s3Settings.js';
import {
  isStorageError,
  type ByteRange,
  type ObjectInfo,
  type PutBody,
  type PutOptions,
  type S3StorageSpec,
  type Storage,
  type StorageSpec,
} from './types.js';

export interface OpenStorageOptions {
  /** Retry policy; false disables retries (tests of the raw backends). */
  retry?: RetryOptions | false;
  /** Operations in flight at once (default: the spec's concurrency, else 8). */
  concurrency?: number;
  /** Timeouts and part settings of the S3 backend. */
  s3?: S3StorageOptions;
}

/**
 * Opens the store a spec describes, wrapped as retry(limit(backend)): transient failures are
 * retried with backoff, at most `concurrency` operations run at once, and a slot is free while a
 * retry sleeps. Opening makes no request; credentials and the bucket are checked by the first
 * operation.
 * @throws UsageError for an invalid spec (relative local path, bad prefix, bad part settings).
 */
export function openStorage(spec: StorageSpec, options: OpenStorageOptions = {}): Storage {
  let backend: Storage;
  try {
    backend = spec.type === 'local' ? new LocalStorage(spec) : new LazyS3Storage(spec, options.s3);
  } catch (err) {
    if (isStorageError(err)) throw new UsageError(err.message, { cause: err });
    throw err;
  }
  const concurrency = options.concurrency ?? (spec.type === 's3' ? spec.concurrency : undefined) ?? 8;
  const limited = new LimitStorage(backend, concurrency);
  return options.retry === false ? limited : new RetryStorage(limited, options.retry);
}

/**
 * An S3Storage built on first use: its module loads the AWS SDK (~90 ms and ~27 MB), which a
 * command on a local store never needs. The spec is checked now, so a bad one still fails at
 * open; the client is built by the first operation (opening makes no request either way).
 */
class LazyS3Storage implements Storage {
  readonly description: string;
  private backend: Promise<S3Storage> | undefined;

  constructor(
    private readonly spec: S3StorageSpec,
    private readonly options: S3StorageOptions | undefined,
  ) {
    checkS3Spec(spec, options);
    this.description = `s3://${spec.bucket}/${normalizePrefix(spec.prefix)}`;
  }

  private load(): Promise<S3Storage> {
    this.backend ??= import('./s3.js').then((m) => new m.S3Storage(this.spec, this.options));
    return this.backend;
  }

  async put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    return (await this.load()).put(key, body, options);
  }

  async get(key: string, range?: ByteRange, options?: { signal?: AbortSignal }): Promise<Readable> {
    return (await this.load()).get(key, range, options);
  }

  async stat(key: string): Promise<ObjectInfo> {
    return (await this.load()).stat(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    yield* (await this.load()).list(prefix);
  }

  async delete(keys: string[]): Promise<void> {
    return (await this.load()).delete(keys);
  }

  async close(): Promise<void> {
    // Never built: nothing to close, and no reason to load the SDK now.
    if (this.backend) await (await this.backend).close();
  }
}

/**
 * The spec for commands that take `<bucket> <prefix>` (restore, fetch, prune, ls).
 *
 * - `file:///abs/dir` is the local-directory store at /abs/dir.
 * - Anything else is an S3 bucket (an `s3://` in front is accepted). The endpoint comes from
 *   AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL (unset: AWS itself); the region from AWS_REGION,
 *   else AWS_DEFAULT_REGION, else us-east-1. Credentials: AWS_ACCESS_KEY_ID +
 *   AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) from `env` when both are set, otherwise the SDK's
 *   default chain (AWS_PROFILE and ~/.aws files, SSO, container and instance roles).
 * - The prefix is normalized: '' or ending in '/'.
 * @throws UsageError for a malformed file URL, a relative path, an empty bucket or a bad prefix.
 */
export function storageSpecFromArgs(bucket: string, prefix: string, env: NodeJS.ProcessEnv): StorageSpec {
  let normalized: string;
  try {
    normalized = normalizePrefix(prefix);
  } catch (err) {
    throw new UsageError(`invalid prefix '${prefix}': ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (bucket.startsWith('file:')) {
    if (!bucket.startsWith('file://')) throw new UsageError(`invalid store URL '${bucket}': use file:///absolute/path`);
    let path: string;
    try {
      path = fileURLToPath(bucket);
    } catch (err) {
      throw new UsageError(`invalid store URL '${bucket}': use file:///absolute/path`, { cause: err });
    }
    if (!isAbsolute(path)) throw new UsageError(`invalid store URL '${bucket}': use file:///absolute/path`);
    return { type: 'local', path, prefix: normalized };
  }
  const name = bucket.replace(/^s3:\/\//, '').replace(/\/+$/, '');
  if (name === '' || name.includes('/')) {
    throw new UsageError(`invalid bucket '${bucket}': give a bucket name (or file:///path for a local directory)`);
  }
  const nonEmpty = (v: string | undefined): string | undefined => (v === undefined || v === '' ? undefined : v);
  const endpoint = nonEmpty(env.AWS_ENDPOINT_URL_S3) ?? nonEmpty(env.AWS_ENDPOINT_URL);
  const accessKeyId = nonEmpty(env.AWS_ACCESS_KEY_ID);
  const secretAccessKey = nonEmpty(env.AWS_SECRET_ACCESS_KEY);
  const explicit = accessKeyId !== undefined && secretAccessKey !== undefined;
  return {
    type: 's3',
    bucket: name,
    prefix: normalized,
    endpoint,
    region: nonEmpty(env.AWS_REGION) ?? nonEmpty(env.AWS_DEFAULT_REGION) ?? 'us-east-1',
    ...(explicit ? { accessKeyId, secretAccessKey, sessionToken: nonEmpty(env.AWS_SESSION_TOKEN) } : {}),
  };
}
