/**
 * The data model shared by the walker, the snapshot metadata DB, the local state cache and the
 * restorer. Paths are byte strings (Buffers), never decoded text: file names need not be UTF-8
 * and must survive byte-exactly. Snapshot paths are relative to the snapshot root, '/'-separated,
 * and start with the source directory's absolute path without its leading '/'
 * (source "/home/u/data" → entries "home/u/data", "home/u/data/a.txt").
 */

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev' | 'other';

export interface Entry {
  /** Relative, '/'-separated byte path (see above). Never empty, never absolute, no '..'. */
  path: Buffer;
  type: EntryType;
  /** Permission bits and setuid/setgid/sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Modification time in nanoseconds since the epoch. */
  mtimeNs: bigint;
  /** File size in bytes (0 for non-files). */
  size: number;
  /** Symlink target bytes (symlinks only). */
  target?: Buffer;
  /** Device number (chardev/blockdev only). */
  rdev?: number;
  /**
   * Hard-link group: entries of type 'file' with the same non-null group are one inode; the
   * first in path order carries the chunks, the others are restored as links to it.
   */
  linkGroup?: number;
}

/** Where one chunk's zstd frame lives. */
export interface ChunkLocation {
  /** SHA-256 of the chunk plaintext. */
  id: Buffer;
  /** SHA-256 (hex) of the blob's stored bytes: the blob's name. */
  blob: string;
  /** Offset of the frame in the blob plaintext. */
  offset: number;
  /** Length of the frame (compressed). */
  length: number;
  /** Length of the chunk plaintext. */
  plainLength: number;
}
