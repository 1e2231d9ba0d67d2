/**
 * The local state cache schema (see cache.ts for the semantics). A cache with another
 * CACHE_SCHEMA_VERSION is dropped and rebuilt: it is only a cache.
 */

export const CACHE_SCHEMA_VERSION = 3;

export const CACHE_DDL: readonly string[] = [
  // schema_version, store_identity, base_snapshot.
  'CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID',
  // Per path, the stat tuple and chunk list (n × 32-byte ids, in order) of the last version
  // backed up, the run that last recorded it, and the blob its first chunk was found in (NULL
  // until known: filled when the run completes; x'' for an empty file).
  `CREATE TABLE files (
  path BLOB PRIMARY KEY NOT NULL,
  size INTEGER NOT NULL,
  mtime_ns INTEGER NOT NULL,
  ctime_ns INTEGER NOT NULL,
  inode INTEGER NOT NULL,
  device INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  chunks BLOB NOT NULL,
  run TEXT NOT NULL,
  blob0 BLOB
) WITHOUT ROWID`,
  // The rows whose blob0 completeSnapshot still has to fill: as many as the run's new files.
  'CREATE INDEX files_without_blob0 ON files (path) WHERE blob0 IS NULL',
  // Blobs whose upload completed; `run` is the run that uploaded (or adopted) it.
  `CREATE TABLE blobs (
  hash BLOB PRIMARY KEY NOT NULL,
  size INTEGER NOT NULL,
  uploaded_at INTEGER NOT NULL,
  run TEXT NOT NULL
) WITHOUT ROWID`,
  // Chunk locations; a chunk may live in more than one blob.
  `CREATE TABLE chunks (
  id BLOB NOT NULL,
  blob BLOB NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL,
  plain_length INTEGER NOT NULL,
  PRIMARY KEY (id, blob)
) WITHOUT ROWID`,
  'CREATE INDEX chunks_by_blob ON chunks (blob)',
  // Completed snapshots of this source.
  `CREATE TABLE snapshots (
  id TEXT PRIMARY KEY NOT NULL,
  completed_at INTEGER NOT NULL,
  run TEXT NOT NULL
) WITHOUT ROWID`,
  // The blobs the base (latest completed) snapshot references: the dedup base.
  `CREATE TABLE snapshot_blobs (
  snapshot TEXT NOT NULL,
  blob BLOB NOT NULL,
  PRIMARY KEY (snapshot, blob)
) WITHOUT ROWID`,
  // Shards this source uploaded, by the digest of their rows (src/backup/shards.ts): where each
  // is stored, its range and counts, and the data blobs it references (n × 32-byte hashes).
  `CREATE TABLE shards (
  digest BLOB PRIMARY KEY NOT NULL,
  blob BLOB NOT NULL,
  size INTEGER NOT NULL,
  first_path BLOB NOT NULL,
  last_path BLOB NOT NULL,
  entry_count INTEGER NOT NULL,
  file_count INTEGER NOT NULL,
  dir_count INTEGER NOT NULL,
  symlink_count INTEGER NOT NULL,
  other_count INTEGER NOT NULL,
  data_blobs BLOB NOT NULL
) WITHOUT ROWID`,
  // The shards of the base snapshot (and of a pending one): the ones a run may reuse.
  `CREATE TABLE snapshot_shards (
  snapshot TEXT NOT NULL,
  digest BLOB NOT NULL,
  PRIMARY KEY (snapshot, digest)
) WITHOUT ROWID`,
];

export const CACHE_TABLES = ['meta', 'files', 'blobs', 'chunks', 'snapshots', 'snapshot_blobs', 'shards', 'snapshot_shards'] as const;
