/**
 * Reading a source file for backup, safely and with change detection.
 *
 * The walker classified the path with lstat; between that and the read the file may have been
 * replaced (by another file, a symlink, a FIFO), may grow, shrink or be rewritten. This module
 * opens without following symlinks and without blocking on FIFOs, proves the opened file is the
 * one the walk saw (same device and inode), streams it, and afterwards says whether it changed
 * while it was being read, so backup can read it again, and warn when it has to store a read
 * that saw a change, instead of silently recording a torn copy.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { constants } from 'node:fs';
import { ExitCode, VaultikError, errorMessage } from '../errors.js';
import { displayPath } from './paths.js';
import { fileStatOf, type FileStat } from './walk.js';

/** Default size of one read: large enough to amortize syscalls, small enough to bound memory per file. */
export const DEFAULT_READ_SIZE = 1 << 20;

export type SourceFileProblem = 'vanished' | 'replaced' | 'not-regular' | 'unreadable';

/**
 * A source file could not be read as the walk saw it. The backup engine warns with the message
 * and skips the file (exit code WARNINGS): one file never aborts a backup.
 */
export class SourceFileError extends VaultikError {
  constructor(
    readonly absPath: Buffer,
    readonly problem: SourceFileProblem,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, ExitCode.WARNINGS, options);
    this.name = 'SourceFileError';
  }
}

/** What changed between opening and finishing a read. */
export type ChangeReason = 'size' | 'mtime' | 'ctime' | 'short-read';

export interface ChangeReport {
  /** True when the bytes read may not be one consistent version of the file. */
  changed: boolean;
  reasons: ChangeReason[];
  bytesRead: number;
  /** fstat at open (the version the bytes should be). */
  before: FileStat;
  /** fstat after the last read. */
  after: FileStat;
}

export interface OpenSourceOptions {
  /** Bytes per read (default DEFAULT_READ_SIZE). */
  readSize?: number;
  /** Checked before each read; reading throws the signal's reason once it is aborted. */
  signal?: AbortSignal;
}

/**
 * Flags for opening a source file: never through a symlink, and never blocking on a FIFO that
 * was swapped in. Callers add O_NOATIME and retry without it on EPERM (not the file's owner).
 */
export const SOURCE_OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** The SourceFileError for a failed open of a source file. */
export function sourceOpenError(absPath: Buffer, err: unknown): SourceFileError {
  const code = (err as NodeJS.ErrnoException).code;
  const where = displayPath(absPath);
  if (code === 'ENOENT') return new SourceFileError(absPath, 'vanished', `file vanished before it was read: ${where}`, { cause: err });
  if (code === 'ELOOP') return new SourceFileError(absPath, 'replaced', `file was replaced by a symlink: ${where}`, { cause: err });
  return new SourceFileError(absPath, 'unreadable', `cannot open ${where}: ${errorMessage(err)}`, { cause: err });
}

/**
 * Checks that the opened file is the regular file the walk saw (same dev and inode).
 * @throws SourceFileError 'not-regular' or 'replaced'.
 */
export function checkOpenedSourceFile(absPath: Buffer, st: FileStat, expected: Pick<FileStat, 'dev' | 'ino'>): void {
  if ((st.mode & constants.S_IFMT) !== constants.S_IFREG) {
    throw new SourceFileError(absPath, 'not-regular', `file was replaced by a non-regular file: ${displayPath(absPath)}`);
  }
  if (st.dev !== expected.dev || st.ino !== expected.ino) {
    throw new SourceFileError(absPath, 'replaced', `file was replaced by another file: ${displayPath(absPath)}`);
  }
}

/**
 * Opens a regular file found by the walk for reading.
 *
 * Flags: O_NOFOLLOW (a symlink swapped in fails, never followed), O_NONBLOCK (a FIFO swapped in
 * does not block the open; it is then rejected as not regular; for regular files the flag has no
 * effect), O_NOATIME (reading for backup should not touch atimes; retried without it on EPERM,
 * which the kernel returns when we neither own the file nor have CAP_FOWNER).
 *
 * @param expected the walk's stat of the path: the opened file must have the same (dev, ino).
 * @throws SourceFileError 'vanished' (ENOENT), 'replaced' (now a symlink, or another inode),
 *   'not-regular' (now a FIFO, device, directory…), 'unreadable' (EACCES and other open errors).
 */
export async function openSourceFile(
  absPath: Buffer,
  expected: Pick<FileStat, 'dev' | 'ino'>,
  options: OpenSourceOptions = {},
): Promise<SourceFile> {
  let handle: FileHandle;
  try {
    try {
      handle = await open(absPath, SOURCE_OPEN_FLAGS | constants.O_NOATIME);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      handle = await open(absPath, SOURCE_OPEN_FLAGS);
    }
  } catch (err) {
    throw sourceOpenError(absPath, err);
  }
  try {
    const st = fileStatOf(await handle.stat({ bigint: true }));
    checkOpenedSourceFile(absPath, st, expected);
    return new SourceFile(absPath, handle, st, options);
  } catch (err) {
    await handle.close();
    throw err;
  }
}

/**
 * An open source file. Read it once with `chunks()`, then call `finish()` to learn whether it
 * changed meanwhile, and `close()` in a finally block.
 *
 * Record `stat` (taken at open) in the state cache rather than the walk's stat: if the file
 * changed between walk and open, the bytes read belong to this version.
 */
export class SourceFile {
  private bytesRead = 0;
  private closed = false;
  private readonly readSize: number;

  /** @internal use openSourceFile */
  constructor(
    readonly absPath: Buffer,
    private readonly handle: FileHandle,
    /** fstat of the opened file, before any read. */
    readonly stat: FileStat,
    private readonly options: OpenSourceOptions,
  ) {
    this.readSize = options.readSize ?? DEFAULT_READ_SIZE;
    if (!(this.readSize > 0)) throw new RangeError('readSize must be positive');
  }

  /**
   * The file's bytes in order, in reads of up to `readSize` bytes, stopping at the size seen at
   * open (a file that keeps growing cannot keep the backup reading forever; growth shows up in
   * `finish()`). Each yielded Buffer is freshly allocated and owned by the caller, who may keep
   * it after asking for the next one.
   * @throws SourceFileError 'unreadable' on a read error (EIO…); the signal's reason when aborted.
   */
  async *chunks(): AsyncGenerator<Buffer> {
    const size = this.stat.size;
    while (this.bytesRead < size) {
      this.options.signal?.throwIfAborted();
      const want = Math.min(this.readSize, size - this.bytesRead);
      const buf = Buffer.allocUnsafe(want);
      let n: number;
      try {
        ({ bytesRead: n } = await this.handle.read(buf, 0, want, this.bytesRead));
      } catch (err) {
        throw new SourceFileError(this.absPath, 'unreadable', `cannot read ${displayPath(this.absPath)}: ${errorMessage(err)}`, { cause: err });
      }
      if (n === 0) return; // truncated while reading: finish() reports 'short-read'
      this.bytesRead += n;
      yield n === want ? buf : buf.subarray(0, n);
    }
  }

  /**
   * Compares a fresh fstat with the one taken at open: size, mtime and ctime must be unchanged
   * and every byte up to the size at open must have been read. ctime catches rewrites that
   * restore the mtime (touch -d, rsync -t). Does not close the file.
   */
  async finish(): Promise<ChangeReport> {
    const after = fileStatOf(await this.handle.stat({ bigint: true }));
    const before = this.stat;
    const reasons: ChangeReason[] = [];
    if (after.size !== before.size) reasons.push('size');
    if (after.mtimeNs !== before.mtimeNs) reasons.push('mtime');
    if (after.ctimeNs !== before.ctimeNs) reasons.push('ctime');
    if (this.bytesRead !== before.size) reasons.push('short-read');
    return { changed: reasons.length > 0, reasons, bytesRead: this.bytesRead, before, after };
  }

  /** Closes the descriptor; safe to call more than once. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}
