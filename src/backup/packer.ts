/**
 * Packs new chunks' zstd frames into blobs and uploads them, several at once, while the next blob
 * is being packed.
 *
 * Contracts:
 * - A blob is sealed before a frame would push its stored size past `blobSizeLimit` (a first
 *   frame always goes in, so a chunk larger than the limit still gets a blob), and at flush().
 *   The run's first blob is sealed at `firstBlobLimit` already, so a store that refuses writes
 *   (wrong bucket, credentials, no network) fails the run after a few MB, not after reading
 *   blob_size_limit bytes (10 GB by default).
 * - `onSealed` runs when a blob's hash is known, before its upload starts (the snapshot may refer
 *   to it from then on: the snapshot is only written after flush() confirmed every upload).
 *   `onUploaded` runs after the store confirmed the put, and only then: the state cache records a
 *   blob only once it exists in the store. A chunk stays findable with `locate` from add() until
 *   onUploaded has returned (after that the cache answers for it).
 * - At most `maxUploads` uploads run at once; add() waits for a free slot when a sealed blob
 *   cannot start, so sealed-but-not-uploaded blobs never pile up (memory and spool space stay
 *   bounded by maxUploads blobs).
 * - The first failed upload fails the packer: add() and flush() throw it, `onFailure` is told as
 *   soon as that upload has let go of its blob (so the caller can stop reading). abort() discards the open blob and waits for uploads
 *   in flight to settle; those that complete are still reported through onUploaded.
 */
import { BlobWriter, blobKey, type FinishedBlob } from '../blob/index.js';
import { ciphertextSize, type Recipient } from '../crypto/index.js';
import type { StoreWriter } from '../storage/types.js';
import { TaskWindow } from '../util/concurrency.js';

/** A chunk packed in this run. `blob` is set once the blob is sealed. */
export interface PackedChunk {
  id: Buffer;
  offset: number;
  length: number;
  plainLength: number;
}

export interface SealedBlob {
  hash: string;
  size: number;
  chunks: PackedChunk[];
  /** Sum of the frames' lengths (blob plaintext size). */
  bytesPacked: number;
}

export interface PackerOptions {
  storage: StoreWriter;
  recipients: readonly Recipient[];
  blobSizeLimit: number;
  /** Size limit of the first blob of the run (default: blobSizeLimit). */
  firstBlobLimit?: number;
  /** Where ciphertext spool files go (never plaintext). */
  spoolDir: string;
  /** Ciphertext kept in memory per blob before spooling (BlobWriter's memoryThreshold). */
  memoryThreshold?: number;
  maxUploads: number;
  signal: AbortSignal;
  onSealed: (blob: SealedBlob) => void;
  onUploaded: (blob: SealedBlob) => void;
  onFailure: (err: unknown) => void;
}

interface OpenBlob {
  writer: BlobWriter;
  chunks: PackedChunk[];
}

export class BlobPacker {
  private current: OpenBlob | undefined;
  /** Chunks packed in this run whose blob has not been reported uploaded yet, by latin1 id. */
  private readonly pending = new Map<string, { blob: OpenBlob | SealedBlob; chunk: PackedChunk }>();
  private readonly uploads: TaskWindow;
  private sealedCount = 0;

  constructor(private readonly options: PackerOptions) {
    this.uploads = new TaskWindow(options.maxUploads, options.onFailure);
  }

  private get limit(): number {
    const { blobSizeLimit, firstBlobLimit } = this.options;
    return this.sealedCount === 0 && firstBlobLimit !== undefined ? Math.min(firstBlobLimit, blobSizeLimit) : blobSizeLimit;
  }

  /** Whether a chunk packed in this run is still awaiting its upload's confirmation. */
  has(key: string): boolean {
    return this.pending.has(key);
  }

  /**
   * Appends one chunk's frame. `key` is the chunk id as a latin1 string (the map key).
   * @throws the first upload failure; the signal's reason once aborted; spool I/O errors.
   */
  async add(key: string, id: Buffer, frame: Buffer, plainLength: number): Promise<void> {
    this.uploads.throwIfFailed();
    let blob = this.current;
    if (blob && blob.writer.frameCount > 0 && this.sizeWith(blob.writer, frame.length) > this.limit) {
      await this.seal();
      blob = undefined;
    }
    if (!blob) {
      blob = { writer: new BlobWriter({ recipients: this.options.recipients, spoolDir: this.options.spoolDir, memoryThreshold: this.options.memoryThreshold }), chunks: [] };
      this.current = blob;
    }
    const at = blob.writer.addFrame(frame, plainLength);
    const chunk: PackedChunk = { id, offset: at.offset, length: at.length, plainLength };
    blob.chunks.push(chunk);
    this.pending.set(key, { blob, chunk });
  }

  /** Stored size of the blob once a frame of `frameLength` bytes is added. */
  private sizeWith(writer: BlobWriter, frameLength: number): number {
    const p = writer.plaintextSize;
    return writer.ciphertextSize - ciphertextSize(p, 0) + ciphertextSize(p + frameLength, 0);
  }

  /** Seals the open blob (if it has frames) and starts its upload, waiting for a free slot first. */
  private async seal(): Promise<void> {
    const blob = this.current;
    this.current = undefined;
    if (!blob) return;
    if (blob.writer.frameCount === 0) {
      await blob.writer.abort();
      return;
    }
    await this.uploads.room();
    this.options.signal.throwIfAborted();
    let finished: FinishedBlob;
    try {
      finished = await blob.writer.finish();
    } catch (err) {
      await blob.writer.abort();
      throw err;
    }
    this.sealedCount++;
    const sealed: SealedBlob = { hash: finished.hash, size: finished.size, chunks: blob.chunks, bytesPacked: finished.plaintextSize };
    for (const c of sealed.chunks) {
      const k = c.id.toString('latin1');
      const p = this.pending.get(k);
      if (p && p.blob === blob) p.blob = sealed;
    }
    try {
      this.options.onSealed(sealed);
    } catch (err) {
      await finished.dispose();
      throw err;
    }
    this.uploads.start(this.upload(sealed, finished));
  }

  private async upload(sealed: SealedBlob, finished: FinishedBlob): Promise<void> {
    try {
      await this.options.storage.put(blobKey(sealed.hash), finished.body, { sha256: finished.sha256, signal: this.options.signal });
      this.options.onUploaded(sealed);
      for (const c of sealed.chunks) {
        const k = c.id.toString('latin1');
        if (this.pending.get(k)?.blob === sealed) this.pending.delete(k);
      }
    } finally {
      await finished.dispose().catch(() => undefined);
    }
  }

  /**
   * Seals the open blob and waits for every upload.
   * @throws the first upload failure.
   */
  async flush(): Promise<void> {
    this.uploads.throwIfFailed();
    await this.seal();
    await this.uploads.drain();
  }

  /** Discards the open blob and waits for uploads in flight to settle. Never throws. */
  async abort(): Promise<void> {
    const blob = this.current;
    this.current = undefined;
    if (blob) await blob.writer.abort().catch(() => undefined);
    await this.uploads.settle();
  }
}
