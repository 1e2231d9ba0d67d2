/**
 * The snapshot metadata DB schema, format version 1 (documented in docs/FORMAT.md, "Snapshot
 * metadata"). The DDL text is part of the format: the reader compares the schema of an opened
 * DB with this text exactly, so a writer cannot drop a primary key or a constraint and smuggle
 * in duplicate or mistyped rows. Changing anything here means a new SNAPSHOT_FORMAT_VERSION.
 *
 * Choices: paths, chunk ids and blob hashes are BLOBs (byte-exact names, 32-byte hashes);
 * tables keyed by those are WITHOUT ROWID (the key is the row, no second b-tree); indexes are
 * the ones restore needs (chunks in blob order; the file positions of a chunk; hard-link
 * groups). No STRICT tables, so sqlite3 ≥ 3.8 can read the file; the reader checks types.
 */

/** Format version, stored in `PRAGMA user_version` and in the snapshot row. */
export const SNAPSHOT_FORMAT_VERSION = 1;

/** `PRAGMA application_id`: 'VKSN' — `file(1)`-style identification of a vaultik snapshot DB. */
export const SNAPSHOT_APPLICATION_ID = 0x564b534e;

/** Largest chunk plaintext a reader accepts (restore allocates one buffer per chunk). */
export const MAX_CHUNK_PLAIN_LENGTH = 1 << 30;

export const ENTRY_TYPES = ['file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev', 'other'] as const;

/** Tables, created when the writer starts. */
export const TABLES_DDL: readonly string[] = [
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
  chunk_count INTEGER NOT NULL,
  blob_count INTEGER NOT NULL,
  blob_bytes INTEGER NOT NULL
) WITHOUT ROWID`,
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
