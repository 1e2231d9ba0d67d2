/**
 * Stored sizes of blobs the state cache knows, for the snapshot's blob list.
 *
 * Why this reads the cache file itself: StateCache.findChunk returns a chunk's location but not
 * its blob's size, which SnapshotWriter.addBlob (and the manifest) need, and the cache has no
 * lookup for it. Until it has one, this opens a second, read-only connection to the same SQLite
 * file (WAL mode: it sees every committed row, and recordBlob commits before returning) and
 * reads the `blobs` table of cache schema version 1. Sizes are memoized: a snapshot references
 * few blobs compared to chunks.
 */
import Database from 'better-sqlite3';
import { ExitCode, VaultikError } from '../errors.js';
import { CACHE_SCHEMA_VERSION } from '../index/index.js';

export class BlobSizes {
  private db: Database.Database | undefined;
  private stmt: Database.Statement | undefined;
  private readonly known = new Map<string, number>();

  constructor(private readonly cachePath: string) {}

  /** Remembers a size learned elsewhere (a blob uploaded in this run). */
  set(hash: string, size: number): void {
    this.known.set(hash, size);
  }

  /**
   * The stored size of a blob the cache recorded.
   * @throws VaultikError when the cache does not know the blob (a bug: findChunk only returns
   *   locations in recorded blobs) or its schema is not the one this code reads.
   */
  get(hash: string): number {
    const cached = this.known.get(hash);
    if (cached !== undefined) return cached;
    if (!this.stmt) {
      if (CACHE_SCHEMA_VERSION !== 1) throw new VaultikError(`blob sizes: state cache schema ${CACHE_SCHEMA_VERSION} is not supported`);
      this.db = new Database(this.cachePath, { readonly: true, fileMustExist: true });
      this.stmt = this.db.prepare('SELECT size FROM blobs WHERE hash = ?');
    }
    const row = this.stmt.get(Buffer.from(hash, 'hex')) as { size: number } | undefined;
    if (!row) throw new VaultikError(`state cache: blob ${hash} has chunks but no size`, ExitCode.FAILURE);
    this.known.set(hash, row.size);
    return row.size;
  }

  close(): void {
    this.db?.close();
    this.db = undefined;
    this.stmt = undefined;
  }
}
