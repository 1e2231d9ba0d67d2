/**
 * Reading blobs for restore: each blob's age header is read and opened once (cached, failures
 * too), then planned ranges are fetched as single ranged GETs into one buffer each. Counts
 * requests and bytes, and sorts errors into "this blob's data is bad or missing" (the affected
 * files fail, the restore goes on) and "the store cannot be used" (the restore stops).
 */
import { blobKey } from '../blob/key.js';
import { AgeError, openAgeFile, type AgeFileInfo, type Identity } from '../crypto/index.js';
import { ExitCode, VaultikError, errorMessage } from '../errors.js';
import { isStorageError, type Storage } from '../storage/types.js';

/** Blob headers kept open (ranges arrive grouped by blob, so a few suffice). */
const HEADER_CACHE = 64;

/**
 * A problem with one blob's data: missing, truncated, corrupt, or encrypted to someone else.
 * Files that need the affected chunks fail; the rest of the restore continues.
 */
export class BlobDataError extends VaultikError {
  constructor(
    readonly blob: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, ExitCode.DATA, options);
    this.name = 'BlobDataError';
  }
}

/**
 * Whether `err` says something about the data (then the affected files fail) rather than about
 * reaching the store (then the restore stops): a missing object, a range past its end (a
 * truncated blob), an age or zstd or hash failure.
 */
export function isDataError(err: unknown): boolean {
  if (err instanceof BlobDataError || err instanceof AgeError) return true;
  if (isStorageError(err)) return err.kind === 'not-found' || err.kind === 'permanent';
  return err instanceof VaultikError && err.exitCode === ExitCode.DATA;
}

export class BlobFetcher {
  private readonly headers = new Map<string, Promise<AgeFileInfo>>();
  /** Bytes of blob data downloaded (headers and ranges). */
  downloaded = 0;
  /** GET requests made for blob data. */
  requests = 0;

  constructor(
    private readonly storage: Storage,
    private readonly identities: readonly Identity[],
    private readonly signal?: AbortSignal,
  ) {}

  /**
   * Bytes [start, end) of the blob, exactly.
   * @throws BlobDataError for a short answer; StorageError from the store.
   */
  async read(blob: string, start: number, end: number): Promise<Buffer> {
    // One allocation of the known size; no concat of the pieces.
    const out = Buffer.allocUnsafe(Math.max(0, end - start));
    await this.readInto(blob, start, end, out);
    return out;
  }

  /**
   * Bytes [start, end) of the blob, exactly, into `out` (at least end - start bytes long).
   * @throws BlobDataError for a short answer; StorageError from the store.
   */
  async readInto(blob: string, start: number, end: number, out: Buffer): Promise<void> {
    const length = end - start;
    if (out.length < length) throw new RangeError(`buffer of ${out.length} bytes for a read of ${length}`);
    let n = 0;
    for await (const piece of this.stream(blob, start, end)) n += piece.copy(out, n);
  }

  /**
   * Bytes [start, end) of the blob, exactly, as the store sends them (one ranged GET, read as
   * the caller consumes it: a large chunk is never held whole).
   * @throws BlobDataError for a short or long answer; StorageError from the store.
   */
  async *stream(blob: string, start: number, end: number): AsyncGenerator<Buffer> {
    const length = end - start;
    if (length <= 0) return;
    this.requests++;
    const stream = await this.storage.get(blobKey(blob), { offset: start, length }, this.signal ? { signal: this.signal } : undefined);
    let n = 0;
    try {
      for await (const piece of stream as AsyncIterable<Buffer>) {
        if (n + piece.length > length) throw new BlobDataError(blob, `blob ${blob}: the store returned more than the ${length} bytes asked for`);
        n += piece.length;
        this.downloaded += piece.length;
        yield piece;
      }
    } finally {
      stream.destroy();
    }
    if (n !== length) throw new BlobDataError(blob, `blob ${blob}: short read at ${start}: got ${n} of ${length} bytes (truncated blob?)`);
  }

  /**
   * The blob's opened header (file key unwrapped, MAC checked), read once per blob.
   * @throws BlobDataError when the blob is missing, truncated or its header is corrupt or not
   *   for our key; StorageError for store failures.
   */
  open(blob: string, size: number): Promise<AgeFileInfo> {
    let p = this.headers.get(blob);
    if (p) {
      // Most recently used last.
      this.headers.delete(blob);
      this.headers.set(blob, p);
      return p;
    }
    p = openAgeFile((s, e) => this.read(blob, s, e), size, this.identities).catch((err: unknown) => {
      if (!isDataError(err)) {
        this.headers.delete(blob); // a store outage is not a property of the blob
        throw err;
      }
      if (err instanceof AgeError && err.kind === 'no-match') {
        // This key opened the snapshot's metadata, so a blob it cannot open is damaged or was
        // replaced (age cannot tell a flipped stanza from another recipient's).
        throw new BlobDataError(blob, `blob ${blob}: no identity opens its header: damaged, or replaced by one written for another key`, { cause: err });
      }
      if (isStorageError(err, 'not-found')) throw new BlobDataError(blob, `blob ${blob} is missing from the store`, { cause: err });
      throw new BlobDataError(blob, `blob ${blob}: ${errorMessage(err)}`, { cause: err });
    });
    p.catch(() => undefined); // failures are read by every caller; none is unhandled
    this.headers.set(blob, p);
    while (this.headers.size > HEADER_CACHE) this.headers.delete(this.headers.keys().next().value!);
    return p;
  }
}
