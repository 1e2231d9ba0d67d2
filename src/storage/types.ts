/**
 * The storage contract every backend implements (local directory, S3) and every wrapper
 * (retry, concurrency limit, fault injection in tests) preserves.
 *
 * Keys are relative to the store's prefix and use '/' separators ("blobs/ab/cd/<hash>",
 * "index/<snapshot>.db.zst.age"). Objects are immutable: callers never put the same key twice
 * with different bytes. A put is atomic: afterwards the object exists whole, or not at all. A put
 * never replaces an existing object: it succeeds and leaves it (where the store allows: local
 * always, S3 through If-None-Match).
 */
import type { Readable } from 'node:stream';
import { ExitCode, VaultikError } from '../errors.js';

export interface ObjectInfo {
  key: string;
  size: number;
  /** The store's own timestamp of the object (S3 LastModified, file mtime). */
  lastModified: Date;
}

/**
 * A body to upload: bytes in memory, or a re-openable stream of known size (retries reopen it).
 * A stream body may also name the `file` that holds exactly its bytes (a blob's ciphertext spool
 * file), unchanged until the put settles: the local store then links that file into place
 * instead of copying it, and trusts PutOptions.sha256 as the hash of that file (the caller hashed
 * the bytes as it wrote them; linking moves no byte that could be altered on the way). Other
 * stores ignore `file` and read `open()`.
 */
export type PutBody = Buffer | { size: number; open: () => Readable; file?: string };

export interface PutOptions {
  /** SHA-256 of the body, when the caller knows it (sent as an integrity checksum). */
  sha256?: Buffer;
  signal?: AbortSignal;
}

export interface ByteRange {
  offset: number;
  length: number;
}

/**
 * What a backup may do to the store: put objects, nothing else. The backup path (runBackup, the
 * packer, publishSnapshot, the daemon) takes this type, not Storage, so the compiler keeps it from
 * reading, listing or deleting: a write-only credential is all it needs (README promise 1).
 */
export interface StoreWriter {
  /** Human-readable location, for messages ("s3://bucket/prefix", "file:///srv/b/host1/"). */
  readonly description: string;
  /** Upload an object. */
  put(key: string, body: PutBody, options?: PutOptions): Promise<void>;
}

export interface Storage extends StoreWriter {
  /**
   * Read a whole object or a byte range of it. The range must lie within the object; a range of
   * length 0 yields an empty stream without a request. Otherwise the promise settles once the
   * object is known to exist; errors while streaming (a reset connection, a short body) are
   * emitted by the stream as StorageErrors. Consume or destroy every returned stream: it holds a
   * connection (and a concurrency slot).
   * @throws StorageError 'not-found'; 'permanent' when the range reaches past the end.
   */
  get(key: string, range?: ByteRange, options?: { signal?: AbortSignal }): Promise<Readable>;
  /** Size and timestamp of an object. @throws StorageError 'not-found' */
  stat(key: string): Promise<ObjectInfo>;
  /** Every object whose key starts with `prefix`, in lexicographic key order, any number of keys. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /**
   * Delete objects; keys that do not exist are not an error.
   * @throws DeleteRefusedError after deleting the rest, when the store refuses some keys.
   */
  delete(keys: string[]): Promise<void>;
  /** Release connections and resources. */
  close(): Promise<void>;
}

export type StorageErrorKind = 'not-found' | 'permission' | 'permanent' | 'transient';

/**
 * A classified storage failure. Only 'transient' errors are retried.
 *
 * It is a VaultikError so the CLI maps it to an exit code without knowing about storage: a missing
 * object is a data problem (ExitCode.DATA), everything else means the store could not be reached or
 * refused access (ExitCode.STORAGE). The message is meant for users: it names the location and,
 * where there is one, the fix ("check the credential's s3:PutObject permission").
 */
export class StorageError extends VaultikError {
  constructor(
    message: string,
    readonly kind: StorageErrorKind,
    readonly key?: string,
    options?: { cause?: unknown },
  ) {
    super(message, kind === 'not-found' ? ExitCode.DATA : ExitCode.STORAGE, options);
    this.name = 'StorageError';
  }
}

/**
 * The store deleted what it could but refused some keys (S3 Object Lock retention, a legal
 * hold): those objects are still there, and still listed. Not retried (kind 'permission').
 */
export class DeleteRefusedError extends StorageError {
  constructor(
    message: string,
    readonly refused: string[],
  ) {
    super(message, 'permission', refused[0]);
    this.name = 'DeleteRefusedError';
  }
}

/** True when `err` is a StorageError (of `kind`, when given). */
export function isStorageError(err: unknown, kind?: StorageErrorKind): err is StorageError {
  return err instanceof StorageError && (kind === undefined || err.kind === kind);
}

/** Where a store is: parsed from a config file's `local:`/`s3:` block or from `<bucket> <prefix>`. */
export type StorageSpec = LocalStorageSpec | S3StorageSpec;

export interface LocalStorageSpec {
  type: 'local';
  /** Absolute path of the store root. */
  path: string;
  /** Key prefix below the root, '' or ending in '/'. */
  prefix: string;
}

export interface S3StorageSpec {
  type: 's3';
  bucket: string;
  /** Key prefix, '' or ending in '/'. */
  prefix: string;
  /** Endpoint URL (MinIO, R2, ...); undefined means AWS. */
  endpoint?: string;
  region?: string;
  /** Explicit credentials; undefined means the AWS SDK's default chain (env, profiles, ...). */
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** Path-style addressing (default true when an endpoint is set). */
  forcePathStyle?: boolean;
  objectLock?: { mode: 'governance' | 'compliance'; days: number };
  /**
   * Send If-None-Match: * on every put so no object is ever replaced (default 'auto': if the
   * server answers 501 NotImplemented, warn once and put without it; true makes that an error).
   */
  conditionalWrites?: 'auto' | boolean;
  /** Objects larger than this go up as multipart uploads. */
  multipartThreshold?: number;
  partSize?: number;
  /** Parallel uploads/parts. */
  concurrency?: number;
}
