/**
 * The snapshot metadata schema, format version 2 (documented in docs/FORMAT.md, "Snapshot
 * metadata"): a small root DB per snapshot (the snapshot row and its shards) and shard DBs, each
 * holding the entries of one path range with their chunks and blobs, shared by every snapshot
 * whose entries in that range are the same. The DDL text is part of the format: the reader
 * compares the schema of an opened DB with this text exactly, so a writer cannot drop a primary key or a constraint and smuggle
 * in duplicate or mistyped rows. Changing anything here means a new SNAPSHOT_FORMAT_VERSION.
 *
 * Choices: paths, chunk ids and blob hashes are BLOBs (byte-exact names, 32-byte hashes);
 * tables keyed by those are WITHOUT ROWID (the key is the row, no second b-tree); indexes are
 * the ones restore needs (chunks in blob order; the file positions of a chunk; hard-link
 * groups). No STRICT tables, so sqlite3 ≥ 3.8 can read the file; the reader checks types.
 */

/** Format version, stored in `PRAGMA user_version` of the root and of every shard, and in the
 *  snapshot row. Version 1 (one DB per snapshot) is refused by this reader (docs/FORMAT.md). */
export const SNAPSHOT_FORMAT_VERSION = 2;

/** `PRAGMA application_id` of a snapshot root: 'VKSN'. */
export const SNAPSHOT_APPLICATION_ID = 0x564b534e;

/** `PRAGMA application_id` of a shard: 'VKSH'. */
export const SHARD_APPLICATION_ID = 0x564b5348;

/**
 * Largest chunk plaintext a writer makes and a reader accepts: 4 × the largest chunk_size
 * (64 MiB), FastCDC's maximum for it (src/config/load.ts CHUNK_SIZE_MAX, MAX_CHUNK_FACTOR). A
 * larger one is damaged or forged metadata.
 */
export const MAX_CHUNK_PLAIN_LENGTH = 256 * 1024 * 1024;

export const ENTRY_TYPES = ['file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev', 'other'] as const;

/** The root DB: the snapshot row and its shards. */
export const ROOT_DDL: readonly string[] = [
  `CREATE TABLE snapshot (
  id TEXT PRIMARY KEY NOT NULL,
  format_version INTEGER NOT NULL,
  host TEXT NOT NULL,
  start_time TEXT NOT NULL,
  end_time TEXT NOT NULL,
  tool_version TEXT NOT NULL,
  source_dirs TEXT NOT NULL,
  excludes TEXT NOT NULL,
  chunker TEXT NOT NULL,
  chunk_size INTEGER NOT NULL,
  blob_size_limit INTEGER NOT NULL,
  compression TEXT NOT NULL,
  compression_level INTEGER NOT NULL,
  warnings INTEGER NOT NULL,
  file_count INTEGER NOT NULL,
  dir_count INTEGER NOT NULL,
  symlink_count INTEGER NOT NULL,
  other_count INTEGER NOT NULL,
  total_size INTEGER NOT NULL,
  blob_count INTEGER NOT NULL,
  blob_bytes INTEGER NOT NULL,
  shard_count INTEGER NOT NULL,
  shard_bytes INTEGER NOT NULL
) WITHOUT ROWID`,
  `CREATE TABLE shards (
  first_path BLOB PRIMARY KEY NOT NULL,
  last_path BLOB NOT NULL,
  blob BLOB NOT NULL,
  size INTEGER NOT NULL,
  entry_count INTEGER NOT NULL,
  file_count INTEGER NOT NULL,
  dir_count INTEGER NOT NULL,
  symlink_count INTEGER NOT NULL,
  other_count INTEGER NOT NULL
) WITHOUT ROWID`,
];

/** A shard DB's tables, created when a shard writer starts (also the layout of the DB a reader
 *  assembles from the shards it reads). */
export const TABLES_DDL: readonly string[] = [
  `CREATE TABLE entries (
  path BLOB PRIMARY KEY NOT NULL,
  type TEXT NOT NULL CHECK (type IN ('file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev', 'other')),
  mode INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  size INTEGER NOT NULL,
  target BLOB,
  rdev INTEGER,
  link_group INTEGER
) WITHOUT ROWID`,
  `CREATE TABLE file_chunks (
  path BLOB NOT NULL,
  seq INTEGER NOT NULL,
  chunk BLOB NOT NULL,
  file_offset INTEGER NOT NULL,
  PRIMARY KEY (path, seq)
) WITHOUT ROWID`,
  `CREATE TABLE chunks (
  id BLOB PRIMARY KEY NOT NULL,
  blob BLOB NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  plain_length INTEGER NOT NULL
) WITHOUT ROWID`,
  `CREATE TABLE blobs (
  hash BLOB PRIMARY KEY NOT NULL,
  size INTEGER NOT NULL
) WITHOUT ROWID`,
];

/**
 * Indexes, created by the writer after the bulk inserts (building an index once is much faster
 * than maintaining it row by row).
 */
export const INDEXES_DDL: readonly string[] = [
  'CREATE INDEX chunks_by_blob ON chunks (blob, offset)',
  // Covers file_offset too: the restore plan reads every use of a chunk without a table lookup.
  'CREATE INDEX file_chunks_by_chunk ON file_chunks (chunk, file_offset)',
  'CREATE INDEX entries_by_link_group ON entries (link_group) WHERE link_group IS NOT NULL',
];
