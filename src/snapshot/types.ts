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

/** A blob a snapshot references: its name (SHA-256 of the stored bytes, hex) and stored size. */
export interface BlobRef {
  hash: string;
  size: number;
}

/** What the backup knows about a run, written into the snapshot row by writeRoot. */
export interface SnapshotSummary {
  /** The snapshot id (see id.ts); the host is taken from it. */
  id: string;
  startTime: Date;
  endTime: Date;
  /** vaultik's version (package.json). */
  toolVersion: string;
  /** Configured source directories, absolute. */
  sourceDirs: string[];
  /** Configured exclude patterns, as written. */
  excludes: string[];
  /** FastCDC average chunk size in bytes. */
  chunkSize: number;
  /** Configured blob size limit in bytes. */
  blobSizeLimit: number;
  /** zstd level of the chunk frames. */
  compressionLevel: number;
  /** Files skipped or changed while read (the run exits with WARNINGS when > 0). */
  warnings?: number;
}

/** What a snapshot's rows add up to (stored in its root's snapshot row). */
export interface SnapshotCounts {
  /** Entries of type 'file' (hard links counted per name). */
  fileCount: number;
  dirCount: number;
  symlinkCount: number;
  /** fifo, socket, chardev, blockdev, other. */
  otherCount: number;
  /** Sum of file sizes, each hard-link group counted once. */
  totalSize: number;
  /** Distinct data blobs the snapshot references (shard objects not counted). */
  blobCount: number;
  /** Sum of those blobs' stored sizes. */
  blobBytes: number;
  /** Shards, and the sum of their stored sizes. */
  shardCount: number;
  shardBytes: number;
}

/** What one shard holds, by entry type. */
export interface ShardCounts {
  entryCount: number;
  fileCount: number;
  dirCount: number;
  symlinkCount: number;
  otherCount: number;
}

/** A shard as a root lists it: its path range and where it is stored. */
export interface ShardRef extends ShardCounts {
  /** First and last entry paths (inclusive). */
  firstPath: Buffer;
  lastPath: Buffer;
  /** SHA-256 (hex) of the stored shard object, at blobs/<h0h1>/<h2h3>/<hash>. */
  hash: string;
  /** Its stored size. */
  size: number;
}

/** The snapshot row of a root: the summary plus what the snapshot counts. */
export interface SnapshotInfo extends Required<SnapshotSummary>, SnapshotCounts {
  formatVersion: number;
  host: string;
  /** Chunker and compressor names, so the format is self-describing ('fastcdc', 'zstd'). */
  chunker: string;
  compression: string;
}
