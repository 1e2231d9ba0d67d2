/**
 * Snapshot metadata: ids and object keys, the metadata DB (writer, validated reader), packing to
 * and from the store, the keyless manifest, and listing. The format is documented in
 * docs/FORMAT.md ("Snapshot metadata"). Its main exports (docs/DESIGN.md,
 * "Architecture").
 */
export type { BlobRef, ChunkLocation, Entry, EntryType, SnapshotCounts, SnapshotInfo, SnapshotSummary } from './types.js';
export {
  MANIFEST_SUFFIX,
  METADATA_SUFFIX,
  compareSnapshots,
  formatSnapshotTime,
  isValidHost,
  makeSnapshotId,
  manifestKey,
  metadataKey,
  parseSnapshotId,
  parseSnapshotTime,
  sanitizeHostname,
  tryParseSnapshotId,
  type ParsedSnapshotId,
} from './id.js';
export { closestSnapshotIds, listSnapshots, resolveSnapshotId, scanIndex, type IndexScan, type SnapshotListing } from './list.js';
export { MANIFEST_VERSION, blobListDifference, buildManifest, parseManifest, readManifest, type Manifest } from './manifest.js';
export {
  METADATA_COMPRESSION_LEVEL,
  openSnapshot,
  packSnapshot,
  publishSnapshot,
  type OpenSnapshotFromStoreOptions,
  type PackOptions,
  type PackedSnapshot,
  type PublishOptions,
  type PublishedSnapshot,
} from './pack.js';
export { describePath, descendantRange, entryPathProblem } from './paths.js';
export {
  SnapshotReader,
  openSnapshotFile,
  type ChunkPlacement,
  type EntriesOptions,
  type OpenSnapshotOptions,
} from './reader.js';
export { ENTRY_TYPES, MAX_CHUNK_PLAIN_LENGTH, SNAPSHOT_APPLICATION_ID, SNAPSHOT_FORMAT_VERSION } from './schema.js';
export { SnapshotWriter, type FinishedSnapshot, type SnapshotWriterOptions } from './writer.js';
