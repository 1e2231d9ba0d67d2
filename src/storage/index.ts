/**
 * The storage layer's public surface: the Storage contract, the local and S3 backends, the retry
 * and concurrency-limit wrappers, and openStorage/storageSpecFromArgs to build a store.
 */
export * from './types.js';
export { normalizePrefix, checkKey, compareKeys } from './keys.js';
export { LocalStorage, TEMP_PREFIX } from './local.js';
export { S3Storage, S3_DEFAULTS, type S3StorageOptions, type SdkLogger } from './s3.js';
export { RetryStorage, withRetry, backoffDelay, DEFAULT_RETRY, type RetryOptions, type RetryEvent } from './retry.js';
export { LimitStorage, Semaphore } from './limit.js';
export { openStorage, storageSpecFromArgs, type OpenStorageOptions } from './open.js';
