/**
 * Reading snapshot metadata back from the store: a root (readRoot), one shard (openShard), and a
 * snapshot's entries assembled from its shards (openSnapshot).
 *
 * SQLite reads files, so every DB is decrypted into a temp file: plaintext metadata (names,
 * sizes, owners — never file contents) on the reading machine, created mode 0600 in a fresh 0700
 * directory under the caller's `tmpDir`, and deleted when its reader is closed or opening fails
 * — or, should the process die first (SIGKILL), by tempDir.ts's watchdog.
 *
 * openSnapshot reads the root, then only the shards it needs: all of them, or for one path
 * (`under`) the shards whose range meets that path or its descendants. Each shard is validated on
 * its own (reader.ts), then its rows are copied into one DB with the shard tables, which the
 * SnapshotReader queries; checkAssembled then checks what spans shard borders.
 */
import { createHash, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import { blobKey } from '../blob/key.js';
import { boundedDecompress } from '../compress/zstd.js';
import { AgeError, createDecryptStream, type Identity } from '../crypto/index.js';
import { ExitCode, VaultikError } from '../errors.js';
import { hashObject } from '../storage/streams.js';
import { StorageError, type Storage } from '../storage/types.js';
import type { IndexObject } from './list.js';
import { descendantRange } from './paths.js';
import { checkAssembled, openShardFile, readRootFile, SnapshotReader, type LostShard, type RootContentsRead, type ShardReader } from './reader.js';
import { INDEXES_DDL, TABLES_DDL } from './schema.js';
import { MAX_ENTRIES } from './shardCut.js';
import { makeMetadataDir } from './tempDir.js';
import type { ShardRef } from './types.js';

export interface OpenMetadataOptions {
  signal?: AbortSignal;
  /** Refuse a DB that decompresses to more than this instead of metadataSizeLimit's cap (tests). */
  maxSize?: number;
}

export interface OpenSnapshotFromStoreOptions extends OpenMetadataOptions {
  /** Only this path and what lies under it: read only the shards that cover it. */
  under?: Buffer;
  /**
   * Go on without a shard that is missing or damaged (ShardUnavailableError), and list it in the
   * reader's lostShards: a restore then restores everything else and fails that range. A wrong
   * key, or a shard that decrypts but does not validate (forged), still fails the whole read.
   */
  tolerateLostShards?: boolean;
}

/**
 * Reader limits on a metadata DB's decompressed size (docs/FORMAT.md, "Reader limits"): a zstd
 * bomb (a few hundred KB that expand to gigabytes) is refused once its output passes the cap,
 * before it fills the temp directory (prune reads four snapshots at once).
 *
 * The cap is a base the format bounds plus a multiple of the stored size:
 * - root: 1 MiB (the schema and the snapshot row) + 512 × stored bytes. Each shard row carries a
 *   32-byte SHA-256 that does not compress, and at most two paths of PATH_MAX (4 KiB) and nine
 *   integers: no real root expands more than ~290 times (measured: 20,000 rows of 4 KB paths, 163).
 * - shard: 1 MiB + 16 KiB per entry its root lists (at most MAX_ENTRIES, 8192: a path and a link
 *   target of 4 KiB each, with their page and index overhead: 128 MiB) + 1024 × stored bytes
 *   for the chunk rows, which grow with the files' bytes. Measured: 8192 entries of 4 KB paths
 *   and targets expand 552 times (inside the base); a 256 GiB file of one repeated chunk, 27.
 */
export const METADATA_BASE_SIZE = 1024 * 1024;
export const ROOT_EXPANSION = 512;
export const SHARD_ENTRY_ALLOWANCE = 16 * 1024;
export const SHARD_EXPANSION = 1024;

/** The most a root (no entry count) or a shard of `entryCount` entries may decompress to. */
export function metadataSizeLimit(storedSize: number, entryCount?: number): number {
  if (entryCount === undefined) return METADATA_BASE_SIZE + ROOT_EXPANSION * storedSize;
  return METADATA_BASE_SIZE + SHARD_ENTRY_ALLOWANCE * Math.min(entryCount, MAX_ENTRIES) + SHARD_EXPANSION * storedSize;
}

/** What fetchDecrypted reads: the object, its name's hash and the size it is listed with. */
interface MetadataObject {
  key: string;
  /** The SHA-256 the object is named by (roots and shards both are). */
  sha256: string;
  /** The stored size its listing (root) or its root (shard) gives. */
  size: number;
  /** For a shard, the entry count its root gives. */
  entryCount?: number;
}

/** Passes bytes through, hashes them, and fails past `max` bytes. */
function hashStream(hash: Hash, max: number, tooLarge: () => Error): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
      n += chunk.length;
      if (n > max) return cb(tooLarge());
      hash.update(chunk);
      cb(null, chunk);
    },
  });
}

function notItsName(label: string, key: string, got: string, why = ''): VaultikError {
  return new VaultikError(`${label}: ${why}${key} is damaged or replaced (the stored object hashes to ${got}, not its name)`, ExitCode.DATA);
}

/**
 * Downloads the object, decrypts and decompresses it into `dest` (which must not exist). The
 * stored bytes must hash to the name (roots and shards are named by their hash): a replaced or
 * damaged object is refused however well it decrypts. When age refuses the object (no identity
 * opens its header, or it fails authentication), the bytes are hashed again on their own: an
 * object that does not hash to its name is damaged or replaced (DATA), not "another key": a
 * flipped byte in a stanza looks to age exactly like a stanza for someone else.
 * @throws VaultikError NO_IDENTITY when no identity matches an intact object; DATA when the
 *   object is missing, larger than listed, damaged or replaced, fails authentication or
 *   decompression, or decompresses past metadataSizeLimit; StorageError.
 */
async function fetchDecrypted(storage: Storage, object: MetadataObject, identities: readonly Identity[], dest: string, label: string, options: OpenMetadataOptions): Promise<void> {
  const { key, sha256 } = object;
  try {
    let body: Readable;
    try {
      body = await storage.get(key, undefined, { signal: options.signal });
    } catch (err) {
      if (err instanceof StorageError && err.kind === 'not-found') {
        throw new VaultikError(`${label}: metadata object ${key} not found`, ExitCode.DATA, { cause: err });
      }
      throw err;
    }
    const hash = createHash('sha256');
    const cap = options.maxSize ?? metadataSizeLimit(object.size, object.entryCount);
    await pipeline(
      body,
      hashStream(hash, object.size, () => new VaultikError(`${label}: ${key} is damaged or replaced: it holds more than the ${object.size} bytes listed for it`, ExitCode.DATA)),
      createDecryptStream(identities),
      boundedDecompress(
        cap,
        () => new VaultikError(`${label}: ${key} is damaged or forged: it decompresses to more than ${cap} bytes, more than the format allows for ${object.size} stored bytes (docs/FORMAT.md "Reader limits")`, ExitCode.DATA),
      ),
      createWriteStream(dest, { flags: 'wx', mode: 0o600 }),
      { signal: options.signal },
    );
    const got = hash.digest('hex');
    if (got !== sha256) throw notItsName(label, key, got);
  } catch (err) {
    if (err instanceof AgeError) {
      // age cannot tell a damaged stanza from another recipient's: the name's hash can.
      const stored = await hashObject(storage, key, options.signal);
      if (stored !== undefined && stored.hash !== sha256) {
        throw notItsName(label, key, stored.hash, err.kind === 'no-match' ? 'no identity opens it: ' : `metadata failed authentication (${err.message}): `);
      }
      if (err.kind === 'no-match') throw new VaultikError(`no identity matches this backup (${label})`, ExitCode.NO_IDENTITY, { cause: err });
      throw new VaultikError(`${label}: metadata failed authentication: ${err.message}`, ExitCode.DATA, { cause: err });
    }
    if (err instanceof VaultikError || err instanceof StorageError) throw err;
    if ((err as Error).name === 'AbortError') throw err;
    throw new VaultikError(`${label}: cannot decompress metadata: ${(err as Error).message}`, ExitCode.DATA, { cause: err });
  }
}

/** Which root to read: a snapshot id and one of its root objects (a SnapshotListing fits). */
export interface RootRef {
  id: string;
  root: Pick<IndexObject, 'key' | 'sha256' | 'size'>;
}

/**
 * Refuses a snapshot whose id has several roots: all but one were written by someone else, and
 * without a signature nothing tells which (docs/SECURITY.md "Forged snapshots").
 * @throws VaultikError DATA naming the objects.
 */
export function checkSingleRoot(s: RootRef & { otherRoots: readonly Pick<IndexObject, 'key'>[] }): void {
  if (s.otherRoots.length === 0) return;
  const keys = [s.root, ...s.otherRoots].map((o) => o.key);
  throw new VaultikError(
    `snapshot ${s.id} has ${keys.length} root objects (${keys.join(', ')}): all but one were written by someone else; refusing to choose (see docs/SECURITY.md "Forged snapshots")`,
    ExitCode.DATA,
  );
}

/**
 * Downloads, decrypts and validates a snapshot's root: its row and its shards. The stored bytes
 * must hash to the root's name. The decrypted
 * file is deleted before returning.
 * @throws VaultikError NO_IDENTITY (wrong key), DATA (missing, corrupt or invalid); StorageError.
 */
export async function readRoot(
  storage: Storage,
  ref: RootRef,
  identities: readonly Identity[],
  tmpDir: string,
  options: OpenMetadataOptions = {},
): Promise<RootContentsRead> {
  const dir = await makeMetadataDir(tmpDir, 'snapshot');
  try {
    const path = join(dir, 'root.db');
    await fetchDecrypted(storage, ref.root, identities, path, `snapshot ${ref.id}`, options);
    return readRootFile(path, ref.id);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A shard that is missing, or whose stored bytes are damaged (not its hash, failing age's
 * authentication or zstd): lost data, as a missing blob is. A shard that decrypts fine but does
 * not validate is something else, a forgery, and stays a plain DATA error.
 */
export class ShardUnavailableError extends VaultikError {
  constructor(cause: VaultikError) {
    super(cause.message, ExitCode.DATA, { cause });
    this.name = 'ShardUnavailableError';
  }
}

/**
 * Downloads, decrypts and validates one shard, checked against `ref` (its range and counts as
 * its root lists them). close() the reader to delete the decrypted copy.
 * @throws VaultikError NO_IDENTITY, DATA (missing, corrupt, invalid, or not what `ref` says);
 *   StorageError.
 */
export async function openShard(
  storage: Storage,
  ref: ShardRef,
  identities: readonly Identity[],
  tmpDir: string,
  options: OpenMetadataOptions = {},
): Promise<ShardReader> {
  const dir = await makeMetadataDir(tmpDir, 'shard');
  const label = `shard ${ref.hash}`;
  try {
    const path = join(dir, 'shard.db');
    try {
      await fetchDecrypted(storage, { key: blobKey(ref.hash), sha256: ref.hash, size: ref.size, entryCount: ref.entryCount }, identities, path, label, options);
    } catch (err) {
      if (err instanceof VaultikError && err.exitCode === ExitCode.DATA) throw new ShardUnavailableError(err);
      throw err;
    }
    return openShardFile(path, { expected: ref, label, deleteOnClose: dir });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * The shards that hold `path` or anything under it: those whose range meets [path, path] or the
 * descendants' key range (paths.ts descendantRange).
 */
export function shardsCovering(shards: readonly ShardRef[], path: Buffer): ShardRef[] {
  const { low, high } = descendantRange(path);
  return shards.filter((s) => {
    const holdsSelf = Buffer.compare(s.firstPath, path) <= 0 && Buffer.compare(path, s.lastPath) <= 0;
    const meetsBelow = Buffer.compare(s.lastPath, low) > 0 && Buffer.compare(s.firstPath, high) < 0;
    return holdsSelf || meetsBelow;
  });
}

/**
 * Downloads, decrypts and validates a snapshot (refused when it has several roots:
 * checkSingleRoot): its root, then its shards (only those covering
 * `under` when given), assembled into one DB. A wrong key fails at the root, before anything else
 * is read. close() the reader to delete the decrypted files.
 * @throws VaultikError NO_IDENTITY when no identity matches ("no identity matches this
 *   backup"); DATA when an object is missing, fails authentication, or is invalid; STORAGE
 *   errors from the store as StorageError.
 */
export async function openSnapshot(
  storage: Storage,
  snapshot: RootRef & { otherRoots: readonly Pick<IndexObject, 'key'>[] },
  identities: readonly Identity[],
  tmpDir: string,
  options: OpenSnapshotFromStoreOptions = {},
): Promise<SnapshotReader> {
  checkSingleRoot(snapshot);
  const { id } = snapshot;
  const root = await readRoot(storage, snapshot, identities, tmpDir, options);
  const wanted = options.under ? shardsCovering(root.shards, options.under) : root.shards;
  const lost: LostShard[] = [];
  const dir = await makeMetadataDir(tmpDir, 'snapshot');
  const dbPath = join(dir, 'snapshot.db');
  try {
    const db = new Database(dbPath);
    try {
      db.pragma('journal_mode = OFF');
      db.pragma('synchronous = OFF');
      db.pragma('temp_store = FILE');
      for (const ddl of TABLES_DDL) db.exec(ddl);
      for (const ref of wanted) {
        options.signal?.throwIfAborted();
        let shard: ShardReader;
        try {
          shard = await openShard(storage, ref, identities, dir, options);
        } catch (err) {
          if (!options.tolerateLostShards || !(err instanceof ShardUnavailableError)) throw err;
          lost.push({ ref, message: err.message });
          continue;
        }
        try {
          mergeShard(db, shard, id);
        } finally {
          shard.close();
        }
      }
      keepFirstCarriers(db);
      for (const ddl of INDEXES_DDL) db.exec(ddl);
      checkAssembled(db, root.info, wanted.length === root.shards.length && lost.length === 0);
    } finally {
      db.close();
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return SnapshotReader.openAssembled(dbPath, root.info, wanted.length === root.shards.length && lost.length === 0, dir, lost);
}

/**
 * Copies a validated shard's rows into the assembled DB. Shards do not overlap (the root was
 * checked), so entries never collide. A chunk or blob two shards both list must agree on what
 * its id determines (plain length; stored size): anything else is a forgery.
 */
function mergeShard(db: Database.Database, shard: ShardReader, id: string): void {
  db.prepare('ATTACH DATABASE ? AS s').run(shard.path);
  try {
    const clash = db
      .prepare(
        `SELECT 1 FROM s.chunks sc JOIN main.chunks c ON c.id = sc.id WHERE c.plain_length != sc.plain_length
         UNION ALL SELECT 1 FROM s.blobs sb JOIN main.blobs b ON b.hash = sb.hash WHERE b.size != sb.size LIMIT 1`,
      )
      .get();
    if (clash) throw new VaultikError(`snapshot ${id}: invalid metadata: ${shard.label} disagrees with another shard on a chunk's length or a blob's size`, ExitCode.DATA);
    db.exec('BEGIN');
    db.exec('INSERT INTO main.entries SELECT * FROM s.entries');
    db.exec('INSERT INTO main.file_chunks SELECT * FROM s.file_chunks');
    db.exec('INSERT OR IGNORE INTO main.chunks SELECT * FROM s.chunks');
    db.exec('INSERT OR IGNORE INTO main.blobs SELECT * FROM s.blobs');
    db.exec('COMMIT');
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    if (err instanceof VaultikError) throw err;
    throw new VaultikError(`snapshot ${id}: cannot assemble ${shard.label}: ${(err as Error).message}`, ExitCode.DATA, { cause: err });
  } finally {
    db.exec('DETACH DATABASE s');
  }
}

/**
 * In each shard the first member of a hard-link group carries its content; across shards only
 * the first of those stays a carrier (the rule of one DB; docs/FORMAT.md, "Shards", hard links).
 */
function keepFirstCarriers(db: Database.Database): void {
  const any = db.prepare('SELECT 1 FROM entries WHERE link_group IS NOT NULL LIMIT 1').get();
  if (!any) return;
  db.exec(`DELETE FROM file_chunks WHERE path IN (
             SELECT e.path FROM entries e JOIN (SELECT link_group, MIN(path) AS first FROM entries WHERE link_group IS NOT NULL GROUP BY link_group) g
               ON g.link_group = e.link_group WHERE e.path != g.first)`);
}
