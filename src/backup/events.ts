/**
 * What a backup run reports while it works and when it ends. The engine only emits these typed
 * events; the CLI's renderers (src/cli/render) turn them into a progress line, a text summary or
 * JSON lines, and a daemon can log them. Every event is a plain JSON-serializable object (no
 * Buffers, no bigints), so `JSON.stringify(event)` is a valid machine-readable line.
 */

/** Counters of a run so far. Monotonic; every field is a count or a byte total. */
export interface BackupProgress {
  /**
   * Regular files seen by the walk: filesNew + filesChanged + filesUnchanged + hardLinks, once
   * each file is judged (a file left out with a warning stays counted where it was judged).
   */
  files: number;
  /** Files with no record in the state cache: read. */
  filesNew: number;
  /** Files whose stat changed since the last backup (or whose chunks were no longer usable): read. */
  filesChanged: number;
  /** Files whose stat was unchanged: not opened, chunk list taken from the cache. */
  filesUnchanged: number;
  /** Other names of a file already counted (hard-link followers): recorded, never read. */
  hardLinks: number;
  /** Directories, symlinks and special files recorded. */
  dirs: number;
  symlinks: number;
  others: number;
  /** Sum of the sizes of every file seen (what the snapshot covers). */
  bytesScanned: number;
  /** Bytes actually read from source files. 0 on a run where nothing changed. */
  bytesRead: number;
  /** Files opened for reading. 0 on a run where nothing changed. */
  filesRead: number;
  /** Sizes of the files the walk has found that need reading (grows while the walk goes on). */
  bytesToRead: number;
  /** Chunk plaintext that was new (not deduplicated), before compression. */
  bytesNew: number;
  /** Compressed frames packed into new blobs: what dedup and compression left of bytesNew. */
  bytesPacked: number;
  /** Blobs finished (sealed) and blobs whose upload completed. */
  blobsSealed: number;
  blobsUploaded: number;
  /** Stored (encrypted) bytes of the uploaded blobs. */
  bytesUploaded: number;
  /** Files read again because a read saw them change (each counted once). */
  filesReread: number;
  /**
   * Files that changed during each of their reads (READ_ATTEMPTS) and were stored as last read;
   * each is also a 'changed' warning.
   */
  filesChangedWhileRead: number;
  /** Paths left out (vanished, unreadable, replaced, not listable) and files stored as last read after changing while read. */
  warnings: number;
}

/** Everything a finished run reports. Also the value runBackup() resolves to. */
export interface BackupSummary extends BackupProgress {
  /** The snapshot written (it exists in the store once this object exists). */
  snapshotId: string;
  /** Store description (a file:// URL or s3://bucket/prefix). */
  store: string;
  startTime: string;
  endTime: string;
  durationMs: number;
  /** Stored bytes of the metadata this run uploaded: the root and the shards it wrote. */
  metadataBytes: number;
  /** Shards written by this run, and shards of an earlier snapshot referenced as they were. */
  shardsWritten: number;
  shardsReused: number;
  /** Blobs the snapshot references (old and new) and their total stored size. */
  snapshotBlobs: number;
  snapshotBlobBytes: number;
  /** Entries in the snapshot, all types. */
  entries: number;
}

/** What went wrong with one path; the run went on without it (or, for 'changed', with its last read). */
export interface BackupWarning {
  /**
   * Absolute path on this machine, raw (not quoted or escaped: `message` has the printable
   * form); with `pathHex`, its bytes, when they are not valid UTF-8 (fs/paths jsonPath).
   */
  path: string;
  pathHex?: string;
  /**
   * 'changed': the file changed during every read (READ_ATTEMPTS): its last read is in the
   * snapshot, possibly mixing versions; 'vanished': it disappeared; 'unreadable':
   * it could not be opened or read; 'replaced': another file or a symlink took its place;
   * 'walk': a directory or entry could not be listed or stat'ed; 'skipped': left out because
   * what it depends on (a hard link's first path) was skipped.
   */
  kind: 'changed' | 'vanished' | 'unreadable' | 'replaced' | 'walk' | 'skipped';
  message: string;
  /** For 'changed': how many times the file was read. */
  reads?: number;
}

export type BackupEvent =
  | { type: 'start'; snapshotId: string; store: string; sourceDirs: string[]; time: string }
  | ({ type: 'progress'; elapsedMs: number; walkDone: boolean } & BackupProgress)
  | ({ type: 'warning' } & BackupWarning)
  | { type: 'blob'; hash: string; size: number; chunks: number; bytesPacked: number }
  | { type: 'phase'; phase: 'scan' | 'flush' | 'metadata' | 'done' }
  /** Something worth knowing that is not a problem with a path (the state cache was reset). */
  | { type: 'notice'; message: string }
  | ({ type: 'summary' } & BackupSummary);

/** A zeroed progress record. */
export function emptyProgress(): BackupProgress {
  return {
    files: 0,
    filesNew: 0,
    filesChanged: 0,
    filesUnchanged: 0,
    hardLinks: 0,
    dirs: 0,
    symlinks: 0,
    others: 0,
    bytesScanned: 0,
    bytesRead: 0,
    filesRead: 0,
    bytesToRead: 0,
    bytesNew: 0,
    bytesPacked: 0,
    blobsSealed: 0,
    blobsUploaded: 0,
    bytesUploaded: 0,
    filesReread: 0,
    filesChangedWhileRead: 0,
    warnings: 0,
  };
}
