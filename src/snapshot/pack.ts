/**
 * Moving metadata DBs to the store: SQLite file → zstd → age (packMetadata), a shard as a blob
 * named by its hash (putShard), a snapshot's manifest and root (publishSnapshot). The way back is
 * open.ts.
 *
 * Packing streams with bounded memory: the ciphertext is spooled to a file next to the DB once it
 * outgrows `memoryLimit` (ciphertext on disk is harmless).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CompressStream } from 'zstd-napi';
import { blobKey } from '../blob/key.js';
import { createEncryptStream, type Recipient } from '../crypto/index.js';
import { ExitCode, VaultikError } from '../errors.js';
import type { StoreWriter } from '../storage/types.js';
import { manifestKey, metadataKey, parseSnapshotId, signatureKey } from './id.js';
import { buildManifest } from './manifest.js';
import type { BlobRef, ShardRef } from './types.js';
import type { FinishedShard } from './writer.js';

/**
 * zstd level of metadata DBs (roots and shards). SQLite pages repeat at long distances (the same
 * paths and chunk ids in entries, file_chunks and their indexes), so a larger window and match
 * table pay more than a slower search: on a 20 MB DB of 42,000 files level 4 with the parameters
 * of metadataZstdParameters stored 4.65 MB in ~60 ms where plain level 9 stored 5.75 MB in
 * ~170 ms.
 */
export const METADATA_COMPRESSION_LEVEL = 4;
/**
 * At most an 8 MiB window (what a restore's decoder allocates at most; within the default limit
 * of `zstd -d`) and a 2^21-entry match table (8 MiB while packing); smaller for a smaller DB. A
 * streaming compressor does not know the size, so it would set up the largest tables for every
 * shard: for the 113 shards of a 100,000-file backup (~400 KB each) that cost 0.65 s of the
 * main thread.
 */
export function metadataZstdParameters(size: number): { windowLog: number; hashLog: number } {
  const windowLog = Math.max(10, Math.min(23, Math.ceil(Math.log2(Math.max(1, size)))));
  return { windowLog, hashLog: Math.max(10, Math.min(21, windowLog - 2)) };
}

export interface PackOptions {
  /** Ciphertext above this many bytes is spooled to a file (default 16 MiB). */
  memoryLimit?: number;
  /** Where the spool file goes (default: the DB's directory). */
  spoolDir?: string;
  compressionLevel?: number;
  signal?: AbortSignal;
}

/**
 * An encrypted, compressed metadata DB ready for `Storage.put` (it is a PutBody: `size` and a
 * re-openable `open()`), with its SHA-256. Call dispose() after the upload to remove the spool.
 */
export interface PackedSnapshot {
  readonly size: number;
  readonly sha256: Buffer;
  open(): Readable;
  dispose(): Promise<void>;
}

/** Writes ciphertext to memory until memoryLimit, then to a spool file. */
class Spool {
  private parts: Buffer[] = [];
  private inMemory = 0;
  private file: FileHandle | undefined;
  size = 0;
  readonly hash = createHash('sha256');

  constructor(
    private readonly path: string,
    private readonly memoryLimit: number,
  ) {}

  async write(b: Buffer): Promise<void> {
    this.hash.update(b);
    this.size += b.length;
    if (!this.file && this.inMemory + b.length <= this.memoryLimit) {
      this.parts.push(b);
      this.inMemory += b.length;
      return;
    }
    if (!this.file) {
      this.file = await open(this.path, 'wx', 0o600);
      for (const p of this.parts) await this.file.write(p);
      this.parts = [];
    }
    await this.file.write(b);
  }

  async finish(): Promise<PackedSnapshot> {
    const sha256 = this.hash.digest();
    const size = this.size;
    if (!this.file) {
      const buf = Buffer.concat(this.parts);
      this.parts = [];
      return { size, sha256, open: () => Readable.from([buf], { objectMode: false }), dispose: async () => {} };
    }
    await this.file.sync();
    await this.file.close();
    this.file = undefined;
    const path = this.path;
    return { size, sha256, open: () => createReadStream(path), dispose: () => rm(path, { force: true }) };
  }

  async discard(): Promise<void> {
    this.parts = [];
    await this.file?.close().catch(() => undefined);
    this.file = undefined;
    await rm(this.path, { force: true });
  }
}

/**
 * Compresses and encrypts the metadata DB at `dbPath` (a finished shard or root) to
 * `recipients`. The result decrypts with `age -d -i key | zstd -d` to the DB file, byte for byte.
 * @throws AgeError 'key' when `recipients` is empty; VaultikError when the DB cannot be read.
 */
export async function packMetadata(dbPath: string, recipients: readonly Recipient[], options: PackOptions = {}): Promise<PackedSnapshot> {
  const spoolPath = join(options.spoolDir ?? dirname(dbPath), `.pack-${process.pid}-${randomBytes(6).toString('hex')}.zst.age`);
  const spool = new Spool(spoolPath, options.memoryLimit ?? 16 * 1024 * 1024);
  const encrypt = createEncryptStream(recipients);
  try {
    await pipeline(
      createReadStream(dbPath),
      new CompressStream({
        ...metadataZstdParameters((await stat(dbPath)).size),
        compressionLevel: options.compressionLevel ?? METADATA_COMPRESSION_LEVEL,
        checksumFlag: true,
      }),
      encrypt,
      async (source: AsyncIterable<Buffer>) => {
        for await (const b of source) await spool.write(b);
      },
      { signal: options.signal },
    );
    return await spool.finish();
  } catch (err) {
    await spool.discard();
    if (err instanceof VaultikError) throw err;
    throw new VaultikError(`cannot pack metadata ${dbPath}: ${(err as Error).message}`, ExitCode.FAILURE, { cause: err });
  }
}

/**
 * Uploads a finished shard as a blob named by the SHA-256 of its stored bytes (docs/FORMAT.md,
 * "Shards"), and returns how its root lists it. Uses only `put`.
 * @throws VaultikError / StorageError from packing or uploading.
 */
export async function putShard(storage: StoreWriter, shard: FinishedShard, recipients: readonly Recipient[], options: PackOptions = {}): Promise<ShardRef> {
  const packed = await packMetadata(shard.dbPath, recipients, options);
  try {
    const hash = packed.sha256.toString('hex');
    await storage.put(blobKey(hash), packed, { sha256: packed.sha256, signal: options.signal });
    return {
      firstPath: shard.firstPath,
      lastPath: shard.lastPath,
      hash,
      size: packed.size,
      entryCount: shard.entryCount,
      fileCount: shard.fileCount,
      dirCount: shard.dirCount,
      symlinkCount: shard.symlinkCount,
      otherCount: shard.otherCount,
    };
  } finally {
    await packed.dispose();
  }
}

export interface PublishOptions extends PackOptions {
  indexPrefix: string;
  /** The snapshot id (the root's row carries it). */
  id: string;
  /** The root DB (writeRoot). */
  rootPath: string;
  /** Every blob the snapshot needs, data and shards: the manifest lists them. */
  blobs: Iterable<BlobRef>;
  recipients: readonly Recipient[];
  /**
   * Signs a snapshot (opt-in, docs/SECURITY.md "Signed snapshots"): given the id and the hashes of
   * the root and the manifest, returns the signature object's bytes.
   */
  sign?: (names: { snapshot: string; root: string; manifest: string }) => Buffer;
}

export interface PublishedSnapshot {
  id: string;
  metadataKey: string;
  /** Stored size of the root. */
  metadataSize: number;
  manifestKey: string;
  /** The signature's key, when the snapshot was signed. */
  signatureKey?: string;
}

/**
 * Uploads a snapshot's manifest, its signature (when signing), then its encrypted root, which is
 * what makes the snapshot exist (docs/DESIGN.md promise 5: metadata is written last, after every
 * blob and shard it references — the caller uploads those before calling this). Each is named by
 * the SHA-256 of its bytes. A crash between the writes leaves an orphan manifest or signature,
 * never a snapshot without one. Uses only `put`.
 * @throws VaultikError / StorageError from reading the DB or uploading.
 */
export async function publishSnapshot(storage: StoreWriter, options: PublishOptions): Promise<PublishedSnapshot> {
  const { id } = options;
  parseSnapshotId(id);
  const manifest = buildManifest(id, options.blobs);
  const manifestSha256 = createHash('sha256').update(manifest).digest();
  const mKey = manifestKey(options.indexPrefix, id, manifestSha256.toString('hex'));
  await storage.put(mKey, manifest, { sha256: manifestSha256, signal: options.signal });
  const packed = await packMetadata(options.rootPath, options.recipients, options);
  try {
    const rootHash = packed.sha256.toString('hex');
    let sigKey: string | undefined;
    if (options.sign) {
      sigKey = signatureKey(options.indexPrefix, id, rootHash);
      const signature = options.sign({ snapshot: id, root: rootHash, manifest: manifestSha256.toString('hex') });
      await storage.put(sigKey, signature, { sha256: createHash('sha256').update(signature).digest(), signal: options.signal });
    }
    const key = metadataKey(options.indexPrefix, id, rootHash);
    await storage.put(key, packed, { sha256: packed.sha256, signal: options.signal });
    return { id, metadataKey: key, metadataSize: packed.size, manifestKey: mKey, ...(sigKey !== undefined ? { signatureKey: sigKey } : {}) };
  } finally {
    await packed.dispose();
  }
}
