/**
 * BlobWriter packs already-compressed zstd frames (one per chunk) into one age file, hashing the
 * ciphertext as it is produced: the SHA-256 of the stored bytes names the blob.
 *
 * Memory is bounded for any blob size: ciphertext stays in memory up to `memoryThreshold`, then
 * goes to a spool file. Only ciphertext is ever written to disk, never plaintext.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { closeSync, createReadStream, openSync, writevSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { AgeEncryptor, type Recipient } from '../crypto/index.js';
import type { PutBody } from '../storage/types.js';

export const DEFAULT_MEMORY_THRESHOLD = 16 * 1024 * 1024;
// Spool writes are batched to about this many bytes per writev call.
const SPOOL_BATCH = 1024 * 1024;
// Stay well under IOV_MAX (1024 on Linux) per writev call.
const MAX_IOVECS = 512;

export interface BlobWriterOptions {
  recipients: readonly Recipient[];
  /** Directory of the ciphertext spool file (default: os.tmpdir()). */
  spoolDir?: string;
  /** Ciphertext bytes kept in memory before spooling to disk (default 16 MiB). */
  memoryThreshold?: number;
}

/** Where addFrame put a frame in the blob plaintext. */
export interface FrameLocation {
  offset: number;
  length: number;
}

export interface FinishedBlob {
  /** Hex SHA-256 of the stored bytes: the blob's name (see blobKey). */
  hash: string;
  /** The same hash as bytes (for PutOptions.sha256). */
  sha256: Buffer;
  /** Stored size in bytes. */
  size: number;
  /** The ciphertext: in memory, or a re-openable stream over the spool file. */
  body: PutBody;
  /** Plaintext size (sum of the frame lengths). */
  plaintextSize: number;
  /** Deletes the spool file, if any. Idempotent; call it once the upload is done or abandoned. */
  dispose(): Promise<void>;
}

/** Writes every buffer to `fd`, in order, retrying short writes. */
function writeAllSync(fd: number, bufs: Buffer[]): void {
  let i = 0;
  while (i < bufs.length) {
    const batch = bufs.slice(i, i + MAX_IOVECS);
    let written = writevSync(fd, batch);
    let k = 0;
    while (k < batch.length && written >= batch[k]!.length) written -= batch[k++]!.length;
    if (k < batch.length) bufs[i + k] = batch[k]!.subarray(written);
    i += k;
  }
}

export class BlobWriter {
  private readonly encryptor: AgeEncryptor;
  private readonly hash: Hash = createHash('sha256');
  private readonly spoolDir: string;
  private readonly memoryThreshold: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private spool: { fd: number; path: string } | null = null;
  private frames = 0;
  private chunkBytes = 0;
  private state: 'open' | 'finished' | 'failed' = 'open';

  /** @throws AgeError 'key' when there is no recipient. */
  constructor(options: BlobWriterOptions) {
    this.encryptor = new AgeEncryptor(options.recipients);
    this.spoolDir = options.spoolDir ?? tmpdir();
    this.memoryThreshold = options.memoryThreshold ?? DEFAULT_MEMORY_THRESHOLD;
  }

  /** Bytes of blob plaintext so far (the offset the next frame gets). */
  get plaintextSize(): number {
    return this.encryptor.plaintextSize;
  }

  /** Stored size of the blob if it were finished now. */
  get ciphertextSize(): number {
    return this.encryptor.ciphertextSize;
  }

  /** Number of frames added. */
  get frameCount(): number {
    return this.frames;
  }

  /** Sum of the chunks' uncompressed lengths. */
  get uncompressedSize(): number {
    return this.chunkBytes;
  }

  /** Whether ciphertext has gone to a spool file (for tests and progress output). */
  get spooled(): boolean {
    return this.spool !== null;
  }

  /**
   * Appends one complete zstd frame (compressed by the caller). `plainLength` is the chunk's
   * uncompressed length: the caller's metadata records it, the blob only counts it.
   * @returns the frame's offset and length in the blob plaintext.
   * @throws Error after finish() or a failed write; I/O errors of the spool file (the writer is
   *   then unusable: call abort()).
   */
  addFrame(frame: Buffer, plainLength: number): FrameLocation {
    if (this.state !== 'open') throw new Error(`BlobWriter.addFrame on a ${this.state} writer`);
    if (!Number.isSafeInteger(plainLength) || plainLength < 0) throw new RangeError(`invalid plainLength ${plainLength}`);
    const offset = this.encryptor.plaintextSize;
    this.absorb(this.encryptor.update(frame));
    this.frames++;
    this.chunkBytes += plainLength;
    return { offset, length: frame.length };
  }

  private absorb(parts: Buffer[]): void {
    try {
      for (const p of parts) {
        this.hash.update(p);
        this.pending.push(p);
        this.pendingBytes += p.length;
      }
      if (this.spool === null && this.pendingBytes > this.memoryThreshold) {
        const path = join(this.spoolDir, `vaultik-blob-${process.pid}-${randomBytes(8).toString('hex')}.spool`);
        this.spool = { fd: openSync(path, 'wx', 0o600), path };
      }
      if (this.spool !== null && this.pendingBytes >= SPOOL_BATCH) this.flush();
    } catch (err) {
      this.state = 'failed';
      throw err;
    }
  }

  private flush(): void {
    writeAllSync(this.spool!.fd, this.pending);
    this.pending = [];
    this.pendingBytes = 0;
  }

  /**
   * Seals the age file and returns the blob. The writer is done afterwards.
   * @throws Error when called twice or after a failure; spool I/O errors.
   */
  finish(): Promise<FinishedBlob> {
    if (this.state !== 'open') return Promise.reject(new Error(`BlobWriter.finish on a ${this.state} writer`));
    const plaintextSize = this.encryptor.plaintextSize;
    this.absorb([this.encryptor.final()]);
    this.state = 'finished';
    const sha256 = this.hash.digest();
    const size = this.encryptor.ciphertextSize;
    if (this.spool === null) {
      const body = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      return Promise.resolve({ hash: sha256.toString('hex'), sha256, size, body, plaintextSize, dispose: () => Promise.resolve() });
    }
    const { fd, path } = this.spool;
    try {
      this.flush();
    } finally {
      closeSync(fd);
    }
    // `file`: a local store links the spool file into place instead of copying it (PutBody).
    const body = { size, open: (): Readable => createReadStream(path), file: path };
    return Promise.resolve({ hash: sha256.toString('hex'), sha256, size, body, plaintextSize, dispose: () => rm(path, { force: true }) });
  }

  /** Abandons the blob and deletes its spool file. Safe to call in any state. */
  async abort(): Promise<void> {
    if (this.state === 'finished') return;
    this.state = 'failed';
    this.pending = [];
    if (this.spool !== null) {
      const { fd, path } = this.spool;
      this.spool = null;
      try {
        closeSync(fd);
      } catch {
        // Already closed by a failed finish(); the file still goes.
      }
      await rm(path, { force: true });
    }
  }
}
