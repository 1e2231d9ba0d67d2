/**
 * The storage layer's main exports (docs/DESIGN.md, "Architecture"): the Storage contract, the local and S3 backends, the retry
 * and concurrency-limit wrappers, and openStorage/storageSpecFromArgs to build a store.
 */
export * from './types.js';
export { normalizePrefix, checkKey, compareKeys } from './keys.js';
export { LocalStorage, TEMP_PREFIX } from './local.js';
// Only the type of S3Storage: its module loads the AWS SDK; import it from './s3.js' where an S3
// backend is built (openStorage does so on first use).
export type { S3Storage } from './s3.js';
export { S3_DEFAULTS, type S3StorageOptions, type SdkLogger } from './s3Settings.js';
export { RetryStorage, withRetry, backoffDelay, DEFAULT_RETRY, type RetryOptions, type RetryEvent } from './retry.js';
export { LimitStorage } from './limit.js';
export { hashObject } from './streams.js';
export { openStorage, storageSpecFromArgs, type OpenStorageOptions } from './open.js';
