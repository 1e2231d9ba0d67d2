/**
 * Stored sizes of blobs the state cache knows, for the snapshot's blob list (ShardWriter.addBlob
 * and the manifest need them; StateCache.findChunk returns only a chunk's location). Sizes of
 * blobs uploaded in this run are remembered as they come; others are asked of the cache
 * (StateCache.blobSize, the same connection — no second one). Memoized: a snapshot references
 * few blobs compared to chunks.
 */
import { ExitCode, VaultikError } from '../errors.js';

/** The part of StateCache this needs. */
export interface BlobSizeSource {
  blobSize(hash: string): number | undefined;
}

export class BlobSizes {
  private readonly known = new Map<string, number>();

  constructor(private readonly cache: BlobSizeSource) {}

  /** Remembers a size learned elsewhere (a blob uploaded in this run). */
  set(hash: string, size: number): void {
    this.known.set(hash, size);
  }

  /**
   * The stored size of a blob the cache recorded.
   * @throws VaultikError when the cache does not know the blob (a bug: findChunk only returns
   *   locations in recorded blobs).
   */
  get(hash: string): number {
    const cached = this.known.get(hash);
    if (cached !== undefined) return cached;
    const size = this.cache.blobSize(hash);
    if (size === undefined) throw new VaultikError(`state cache: blob ${hash} has chunks but no size`, ExitCode.FAILURE);
    this.known.set(hash, size);
    return size;
  }

  /** Nothing to release any more (kept so callers need not change). */
  close(): void {
    this.known.clear();
  }
}
