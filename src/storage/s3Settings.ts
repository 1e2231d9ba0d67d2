/**
 * The S3 backend's defaults, options and spec check, apart from src/storage/s3.ts so that
 * openStorage can check an S3 spec, and the CLI start, without loading the AWS SDK (~90 ms and
 * ~27 MB even for a local store): s3.ts is imported only when an S3 store is used.
 */
import type { RetryOptions } from './retry.js';
import { StorageError, type S3StorageSpec } from './types.js';

const MiB = 1024 * 1024;

export const S3_DEFAULTS = {
  multipartThreshold: 32 * MiB,
  partSize: 8 * MiB,
  /** Parts in flight per multipart upload. */
  concurrency: 4,
  /** S3's minimum size of every part but the last. */
  minPartSize: 5 * MiB,
  connectionTimeoutMs: 10_000,
  socketTimeoutMs: 60_000,
  maxSockets: 64,
} as const;

export interface S3StorageOptions {
  /** Give up connecting after this long (transient error). Default 10 s. */
  connectionTimeoutMs?: number;
  /** A connection with no traffic for this long is dropped (transient error). Default 60 s. */
  socketTimeoutMs?: number;
  /** HTTP connections kept per endpoint. Default 64. */
  maxSockets?: number;
  /**
   * Smallest part size accepted (default 5 MiB, S3's rule). Tests lower it to exercise multipart
   * with small objects; real S3 rejects smaller parts with EntityTooSmall at completion.
   */
  minPartSize?: number;
  /** Retries of one multipart part (the whole put is retried by RetryStorage). Default 4 attempts. */
  partRetry?: RetryOptions;
  /** Where warnings go (a server without conditional writes); default stderr. */
  warn?: (message: string) => void;
  /** Where the AWS SDK's own log lines go (debugging); silent by default. */
  sdkLogger?: SdkLogger;
}

export interface SdkLogger {
  debug: (...content: unknown[]) => void;
  info: (...content: unknown[]) => void;
  warn: (...content: unknown[]) => void;
  error: (...content: unknown[]) => void;
}

/**
 * The part settings S3Storage refuses, checked before anything is built.
 * @throws StorageError ('permanent') for a part size below the minimum or a bad concurrency.
 */
export function checkS3Spec(spec: S3StorageSpec, options: S3StorageOptions = {}): void {
  const partSize = spec.partSize ?? S3_DEFAULTS.partSize;
  const concurrency = spec.concurrency ?? S3_DEFAULTS.concurrency;
  const minPartSize = options.minPartSize ?? S3_DEFAULTS.minPartSize;
  if (!Number.isSafeInteger(partSize) || partSize < minPartSize) {
    throw new StorageError(`S3 part size ${partSize} is below the minimum of ${minPartSize} bytes`, 'permanent');
  }
  if (!Number.isSafeInteger(concurrency) || concurrency < 1) {
    throw new StorageError(`S3 concurrency must be a positive integer, got ${concurrency}`, 'permanent');
  }
}
