/**
 * Restore: everything back from the store and the private key alone. Its main exports
 * (docs/DESIGN.md, "Architecture"), for the CLI's restore, fetch, ls and snapshots commands.
 */
export { runRestore, type RestoreOptions } from './engine.js';
export { runFetch, fetchToStream, fetchDestination, type FetchOptions } from './fetch.js';
export { describeSnapshots, type SnapshotDescription } from './catalog.js';
export { MAX_REPORTED, type FailedPath, type RestoreEvent, type RestoreProgress, type RestoreSummary, type RestoreTotals } from './events.js';
export { PLAN_DEFAULTS, cipherSpan, planRanges, segmentsOf, type ChunkJob, type ChunkUse, type PlanOptions, type RangePlan } from './plan.js';
export { SafetyPolicy, type RestoreSafety, type Withheld } from './safety.js';
export { Selector, isAtOrUnder, relocator, snapshotPathArg, type Relocation, type RestoreSelection } from './select.js';
export { BlobDataError, isDataError } from './fetcher.js';
