/**
 * Moving a metadata DB to and from the store: SQLite file → zstd → age, and back.
 *
 * Both directions stream with bounded memory. Packing spools the ciphertext to a file next to the
 * DB once it outgrows `memoryLimit` (ciphertext on disk is harmless). Unpacking must write the
 * decrypted DB to a temp file, because SQLite reads files: that file is plaintext metadata
 * (names, sizes, owners — never file contents) on the restoring machine. It is created mode 0600
 * in a fresh 0700 directory under the caller's `tmpDir`, and deleted when the reader is closed
 * or when opening fails.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rm, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import { CompressStream, DecompressStream } from 'zstd-napi';
import { AgeError, createDecryptStream, createEncryptStream, type Identity, type Recipient } from '../crypto/index.js';
import { ExitCode, VaultikError } from '../errors.js';
import { StorageError, type Storage, type StoreWriter } from '../storage/types.js';
import { manifestKey, metadataKey, parseSnapshotId } from './id.js';
import { buildManifest } from './manifest.js';
import { openSnapshotFile, type SnapshotReader } from './reader.js';
import type { BlobRef } from './types.js';

/**
 * zstd level of metadata DBs. SQLite pages repeat at long distances (the same paths and chunk
 * ids in entries, file_chunks and their indexes), so a larger window and match table pay more
 * than a slower search: on a 20 MB DB of 42,000 files level 4 with METADATA_ZSTD_PARAMETERS
 * stores 4.65 MB in ~60 ms where plain level 9 stored 5.75 MB in ~170 ms, and this runs in
 * every backup, no-change ones included.
 */
export const METADATA_COMPRESSION_LEVEL = 4;
/**
 * An 8 MiB window (what a restore's decoder allocates at most; within the default limit of
 * `zstd -d`) and a 2^21-entry match table (8 MiB while packing).
 */
const METADATA_ZSTD_PARAMETERS = { windowLog: 23, hashLog: 21 } as const;

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
 * Compresses and encrypts the metadata DB at `dbPath` (finished by SnapshotWriter) to
 * `recipients`. The result decrypts with `age -d -i key | zstd -d` to the DB file, byte for byte.
 * @throws AgeError 'key' when `recipients` is empty; VaultikError when the DB cannot be read.
 */
export async function packSnapshot(dbPath: string, recipients: readonly Recipient[], options: PackOptions = {}): Promise<PackedSnapshot> {
  const spoolPath = join(options.spoolDir ?? dirname(dbPath), `.pack-${process.pid}-${randomBytes(6).toString('hex')}.zst.age`);
  const spool = new Spool(spoolPath, options.memoryLimit ?? 16 * 1024 * 1024);
  const encrypt = createEncryptStream(recipients);
  try {
    await pipeline(
      createReadStream(dbPath),
      new CompressStream({
        ...METADATA_ZSTD_PARAMETERS,
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
    throw new VaultikError(`cannot pack snapshot metadata ${dbPath}: ${(err as Error).message}`, ExitCode.FAILURE, { cause: err });
  }
}

export interface PublishOptions extends PackOptions {
  indexPrefix: string;
  /** The finished metadata DB. */
  dbPath: string;
  recipients: readonly Recipient[];
}

export interface PublishedSnapshot {
  id: string;
  metadataKey: string;
  metadataSize: number;
  manifestKey: string;
  blobs: BlobRef[];
}

/**
 * Uploads a finished snapshot: the manifest first, then the encrypted metadata, which is what
 * makes the snapshot exist (docs/DESIGN.md promise 5: metadata is written last, after every
 * blob it references — the caller uploads the blobs before calling this). A crash between the two
 * writes leaves an orphan manifest, never a snapshot without one. Uses only `put`.
 * @throws VaultikError / StorageError from reading the DB or uploading.
 */
export async function publishSnapshot(storage: StoreWriter, options: PublishOptions): Promise<PublishedSnapshot> {
  // Our own, just-validated file: read the id and blob list directly.
  const db = new Database(options.dbPath, { readonly: true, fileMustExist: true });
  let id: string;
  let blobs: BlobRef[];
  try {
    id = (db.prepare('SELECT id FROM snapshot').get() as { id: string }).id;
    blobs = (db.prepare('SELECT hash, size FROM blobs ORDER BY hash').all() as { hash: Buffer; size: number }[]).map((r) => ({
      hash: r.hash.toString('hex'),
      size: r.size,
    }));
  } finally {
    db.close();
  }
  parseSnapshotId(id);
  const mKey = manifestKey(options.indexPrefix, id);
  await storage.put(mKey, buildManifest(id, blobs), { signal: options.signal });
  const packed = await packSnapshot(options.dbPath, options.recipients, options);
  try {
    const key = metadataKey(options.indexPrefix, id);
    await storage.put(key, packed, { sha256: packed.sha256, signal: options.signal });
    return { id, metadataKey: key, metadataSize: packed.size, manifestKey: mKey, blobs };
  } finally {
    await packed.dispose();
  }
}

export interface OpenSnapshotFromStoreOptions {
  signal?: AbortSignal;
  /** Refuse metadata that decompresses to more than this (default 64 GiB): a zstd bomb guard. */
  maxSize?: number;
}

/** Counts bytes through a stream and fails past a limit. */
function limitStream(max: number, id: string): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
      n += chunk.length;
      if (n > max) cb(new VaultikError(`snapshot ${id}: metadata larger than ${max} bytes`, ExitCode.DATA));
      else cb(null, chunk);
    },
  });
}

/**
 * Downloads, decrypts and decompresses a snapshot's metadata into a fresh temp directory under
 * `tmpDir`, then opens and validates it (see reader.ts). The decrypted DB is plaintext metadata
 * on this machine: close() the reader to delete it; it is also deleted when anything fails.
 * @throws VaultikError NO_IDENTITY when no identity matches ("no identity matches this
 *   backup"); DATA when the object is missing, fails authentication, or is invalid; STORAGE
 *   errors from the store as StorageError.
 */
export async function openSnapshot(
  storage: Storage,
  indexPrefix: string,
  id: string,
  identities: readonly Identity[],
  tmpDir: string,
  options: OpenSnapshotFromStoreOptions = {},
): Promise<SnapshotReader> {
  const key = metadataKey(indexPrefix, id);
  const dir = await mkdtemp(join(tmpDir, 'vaultik-snapshot-'));
  const dbPath = join(dir, 'snapshot.db');
  try {
    let body: Readable;
    try {
      body = await storage.get(key, undefined, { signal: options.signal });
    } catch (err) {
      if (err instanceof StorageError && err.kind === 'not-found') {
        throw new VaultikError(`snapshot ${id}: metadata object ${key} not found`, ExitCode.DATA, { cause: err });
      }
      throw err;
    }
    await pipeline(
      body,
      createDecryptStream(identities),
      new DecompressStream(),
      limitStream(options.maxSize ?? 64 * 1024 ** 3, id),
      createWriteStream(dbPath, { flags: 'wx', mode: 0o600 }),
      { signal: options.signal },
    );
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    if (err instanceof AgeError && err.kind === 'no-match') {
      throw new VaultikError(`no identity matches this backup (snapshot ${id})`, ExitCode.NO_IDENTITY, { cause: err });
    }
    if (err instanceof AgeError) {
      throw new VaultikError(`snapshot ${id}: metadata failed authentication: ${err.message}`, ExitCode.DATA, { cause: err });
    }
    if (err instanceof VaultikError || err instanceof StorageError) throw err;
    if ((err as Error).name === 'AbortError') throw err;
    throw new VaultikError(`snapshot ${id}: cannot decompress metadata: ${(err as Error).message}`, ExitCode.DATA, { cause: err });
  }
  // openSnapshotFile removes `dir` itself when validation fails.
  return openSnapshotFile(dbPath, { expectedId: id, deleteOnClose: dir });
}
