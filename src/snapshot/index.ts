/**
 * Snapshot metadata: ids and object keys, the metadata DB (writer, validated reader), packing to
 * and from the store, the keyless manifest, and listing. The format is documented in
 * docs/FORMAT.md ("Snapshot metadata"). Its main exports (docs/DESIGN.md,
 * "Architecture").
 */
export type { BlobRef, ChunkLocation, Entry, EntryType, ShardCounts, ShardRef, SnapshotCounts, SnapshotInfo, SnapshotSummary } from './types.js';
export {
  MANIFEST_SUFFIX,
  METADATA_SUFFIX,
  SIGNATURE_SUFFIX,
  compareSnapshots,
  formatSnapshotTime,
  isValidHost,
  makeSnapshotId,
  manifestKey,
  metadataKey,
  parseIndexName,
  parseSnapshotId,
  parseSnapshotTime,
  sanitizeHostname,
  signatureKey,
  tryParseSnapshotId,
  type IndexObjectKind,
  type ParsedSnapshotId,
} from './id.js';
export {
  DEFAULT_CLOCK_RULES,
  closestSnapshotIds,
  judgeSnapshot,
  listSnapshots,
  resolveSnapshotId,
  scanIndex,
  type ClockRules,
  type IndexObject,
  type IndexScan,
  type SnapshotListing,
} from './list.js';
export { MANIFEST_VERSION, blobListDifference, buildManifest, parseManifest, readManifest, type Manifest } from './manifest.js';
export {
  METADATA_COMPRESSION_LEVEL,
  packMetadata,
  publishSnapshot,
  putShard,
  type PackOptions,
  type PackedSnapshot,
  type PublishOptions,
  type PublishedSnapshot,
} from './pack.js';
export {
  ShardUnavailableError,
  checkSingleRoot,
  openShard,
  openSnapshot,
  readRoot,
  shardsCovering,
  type OpenMetadataOptions,
  type OpenSnapshotFromStoreOptions,
  type RootRef,
} from './open.js';
export { describePath, descendantRange, entryPathProblem } from './paths.js';
export {
  MetadataReader,
  ShardReader,
  SnapshotReader,
  openShardFile,
  readRootFile,
  type ChunkPlacement,
  type EntriesOptions,
  type LostShard,
  type OpenShardOptions,
  type RootContentsRead,
  type ShardFacts,
} from './reader.js';
export { ENTRY_TYPES, MAX_CHUNK_PLAIN_LENGTH, SHARD_APPLICATION_ID, SNAPSHOT_APPLICATION_ID, SNAPSHOT_FORMAT_VERSION } from './schema.js';
export {
  checkSnapshotSignature,
  checkSnapshotSignatures,
  judgeSignatures,
  resolveSignedSnapshot,
  signatureOf,
  type SignatureStatus,
} from './signatures.js';
export { shardRefKey, snapshotReferences, type SnapshotReferences } from './references.js';
export { DEFAULT_SHARD_LIMITS, ShardCutter, cutPoints, pathHash, type ShardLimits } from './shardCut.js';
export { LocationSpool, ShardWriter, writeRoot, type FinishedShard, type RootContents, type ShardWriterOptions } from './writer.js';
export { SnapshotWriter, type BuildOptions, type BuiltSnapshot } from './builder.js';
