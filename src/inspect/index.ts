/**
 * Inspecting a store: what changed between two snapshots (diff), which snapshots hold a path
 * (find), and what the store holds and deduplication saves (stats). Read-only; built on the
 * snapshot metadata readers (src/snapshot), reading only the shards each answer needs.
 */
export { MetadataSource, type MetadataSourceOptions } from './shards.js';
export { diffSnapshots, entryChanges, type DiffCounts, type DiffEntry, type DiffSummary, type EntryChange } from './diff.js';
export { compileFindPatterns, findInSnapshots, literalPrefix, shardMayMatch, type FindMatch, type FindPattern, type FindSnapshotResult, type FindSummary } from './find.js';
export { addKeyedStats, storeStats, type KeyedStats, type SnapshotStats, type StoreStats, type Tally } from './stats.js';
