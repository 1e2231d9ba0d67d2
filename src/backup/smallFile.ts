/**
 * Reading a small source file in one go with synchronous system calls.
 *
 * Why not fs/sourceFile.ts's openSourceFile here: each asynchronous fs call costs the main thread
 * a promise, a thread-pool round trip and (for stats) a dozen BigInts, about 20 µs, and a file
 * takes five of them (open, fstat, read, fstat, close). For a tree of small files that is most
 * of the main thread's time, while the same five calls made synchronously take a few µs each
 * when the data is in the page cache. The engine uses this for files up to a small size and
 * falls back to the asynchronous reader when reads turn slow (a cold disk would otherwise stall
 * the event loop, see SmallFileReader below).
 *
 * Same contract as openSourceFile + chunks() + finish(): O_NOFOLLOW (a symlink swapped in is
 * refused), O_NONBLOCK (a FIFO swapped in never blocks), O_NOATIME when permitted; the opened file
 * must be the regular file the walk saw (same device and inode); the result says whether size,
 * mtime or ctime changed while it was read, or fewer bytes than its size could be read.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { SOURCE_OPEN_FLAGS, SourceFileError, checkOpenedSourceFile, displayPath, fileStatOf, sourceOpenError, type ChangeReason, type FileStat } from '../fs/index.js';
import { errorMessage } from '../errors.js';

export interface SmallFileRead {
  /** The bytes read (length = bytes read). */
  data: Buffer;
  /** fstat at open: the version the bytes should be. */
  stat: FileStat;
  changed: boolean;
  reasons: ChangeReason[];
}

/**
 * Reads a whole regular file of at most `maxSize` bytes. `afterRead`, when given, runs after the
 * last byte is read and before the fstat that tells whether the file changed meanwhile.
 * @returns the read, or 'too-big' when the file has grown past `maxSize` since the walk (then
 *   read it with the streaming reader).
 * @throws SourceFileError 'vanished', 'replaced', 'not-regular' or 'unreadable', as openSourceFile.
 */
export function readSmallFileSync(absPath: Buffer, expected: Pick<FileStat, 'dev' | 'ino'>, maxSize: number, afterRead?: () => void): SmallFileRead | 'too-big' {
  let fd: number;
  try {
    try {
      fd = openSync(absPath, SOURCE_OPEN_FLAGS | constants.O_NOATIME);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
      fd = openSync(absPath, SOURCE_OPEN_FLAGS);
    }
  } catch (err) {
    throw sourceOpenError(absPath, err);
  }
  try {
    const before = fileStatOf(fstatSync(fd, { bigint: true }));
    checkOpenedSourceFile(absPath, before, expected);
    if (before.size > maxSize) return 'too-big';
    const data = Buffer.allocUnsafe(before.size);
    let got = 0;
    try {
      while (got < before.size) {
        const n = readSync(fd, data, got, before.size - got, got);
        if (n === 0) break;
        got += n;
      }
    } catch (err) {
      throw new SourceFileError(absPath, 'unreadable', `cannot read ${displayPath(absPath)}: ${errorMessage(err)}`, { cause: err });
    }
    afterRead?.();
    const after = fileStatOf(fstatSync(fd, { bigint: true }));
    const reasons: ChangeReason[] = [];
    if (after.size !== before.size) reasons.push('size');
    if (after.mtimeNs !== before.mtimeNs) reasons.push('mtime');
    if (after.ctimeNs !== before.ctimeNs) reasons.push('ctime');
    if (got !== before.size) reasons.push('short-read');
    return { data: got === data.length ? data : data.subarray(0, got), stat: before, changed: reasons.length > 0, reasons };
  } finally {
    closeSync(fd);
  }
}
