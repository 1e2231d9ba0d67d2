/**
 * The local state cache (SQLite at `index_path`) and its lock. Its main exports (docs/DESIGN.md,
 * "Architecture").
 */
export { StateCache, storeIdentity, storeLocation, type CachedFile, type CachedShard, type StateCacheOptions } from './cache.js';
export { CacheLock, acquireLock, lockPathFor, processStartOf, type LockOptions, type LockOwner } from './lock.js';
export { CACHE_SCHEMA_VERSION } from './schema.js';
