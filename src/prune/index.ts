/**
 * Garbage collection and retention: `prune` (plan, then execute), `forget` (keyless retention by
 * a pure policy) and the optional multipart-upload janitor. Its main exports
 * (docs/DESIGN.md, "Architecture").
 */
export { applyPolicy, bucketOf, checkPolicy, hasKeepRule, isoWeek, type PolicyDecision, type PolicyResult, type RetentionPolicy, type SnapshotRef } from './policy.js';
export { DELETE_BATCH, deleteInBatches, executeForget, planForget, SuspectSnapshotsError, type SuspectChoice, type ForgetEvent, type ForgetOptions, type ForgetPlan, type ForgetResult } from './forget.js';
export {
  DEFAULT_GRACE_MS,
  PruneRefusedError,
  executePrune,
  planPrune,
  type CountBytes,
  type PruneEvent,
  type PruneOptions,
  type PrunePlan,
  type PruneResult,
} from './prune.js';
export { asMultipartJanitor, type IncompleteUpload, type MultipartJanitor } from './janitor.js';
export { S3MultipartJanitor } from './s3Janitor.js';
export { ShardBlobs, forEachLimited, readMetadataBlobs, readSnapshotReferences } from './snapshots.js';
