/**
 * `vaultik forget`: removes snapshots (their metadata object, then their manifest) that a
 * retention policy does not keep, or that the user names. It never touches blobs: `prune`
 * deletes the blobs no remaining snapshot references.
 *
 * Keyless by design. The policy needs only each snapshot's host and time, and both are in the
 * object names (`<host>-<UTC time>.db.zst.age`), so forget lists the index and decides without
 * decrypting anything. It can run where the private key is not (an operator holding only a
 * delete credential), and it cannot be fooled by metadata it cannot read. The id's time is the
 * backup's start time, the same time the metadata's snapshot row records.
 *
 * One policy per host name (the id's host part). Two configs backing up different directories
 * under the same host name would share one "latest": give each its own `hostname:` (prune
 * notes hosts whose snapshots have different source directories).
 *
 * Order of deletion: every metadata object first, then the manifests. A snapshot exists as long
 * as its metadata does (docs/DESIGN.md promise 5), so an interrupted forget leaves either a whole snapshot or an
 * orphan manifest, which prune removes; never a snapshot without its manifest.
 */
import { UsageError } from '../errors.js';
import { scanIndex, type SnapshotListing } from '../snapshot/list.js';
import { compareSnapshots, manifestKey, metadataKey } from '../snapshot/id.js';
import type { Storage } from '../storage/types.js';
import { applyPolicy, hasKeepRule, type PolicyDecision, type RetentionPolicy } from './policy.js';

/** Keys per delete request (S3's DeleteObjects limit). */
export const DELETE_BATCH = 1000;

export interface ForgetOptions {
  indexPrefix: string;
  /** The retention policy; at least one rule must be on unless `ids` is given. */
  policy?: RetentionPolicy;
  /** Forget exactly these snapshots instead of applying a policy. */
  ids?: readonly string[];
  /** Only this host's snapshots are considered; others are left alone. */
  host?: string;
}

export interface ForgetPlan {
  indexPrefix: string;
  /** Snapshots kept, with the rules that keep them. */
  keep: PolicyDecision<SnapshotListing>[];
  /** Snapshots to forget. */
  remove: PolicyDecision<SnapshotListing>[];
  /** Snapshots of other hosts (with `host`), not considered. */
  untouched: number;
}

export interface ForgetResult {
  /** Ids whose metadata was deleted. */
  forgotten: string[];
  metadataDeleted: number;
  manifestsDeleted: number;
}

export type ForgetEvent = { type: 'deleted'; phase: 'metadata' | 'manifests'; done: number; total: number };

/**
 * Decides which snapshots to forget. Lists the index only (no key, nothing downloaded).
 * @throws UsageError when neither a keep rule nor ids are given, when both are, when a named id
 *   does not exist, or when a named id is its host's latest snapshot (always kept);
 *   StorageError from listing.
 */
export async function planForget(storage: Storage, options: ForgetOptions): Promise<ForgetPlan> {
  const ids = options.ids ?? [];
  const policy = options.policy ?? {};
  if (ids.length > 0 && hasKeepRule(policy)) throw new UsageError('give either snapshot ids or --keep-* options, not both');
  if (ids.length === 0 && !hasKeepRule(policy)) {
    throw new UsageError('forget needs at least one --keep-* option (or snapshot ids): refusing to guess what to remove');
  }
  const { snapshots } = await scanIndex(storage, options.indexPrefix);
  const considered = options.host === undefined ? snapshots : snapshots.filter((s) => s.host === options.host);
  const untouched = snapshots.length - considered.length;
  if (ids.length === 0) {
    const decided = applyPolicy(considered, policy);
    return { indexPrefix: options.indexPrefix, keep: decided.keep, remove: decided.remove, untouched };
  }
  // Named ids: everything else is kept as it is.
  const latest = new Map<string, SnapshotListing>();
  for (const s of snapshots) {
    const cur = latest.get(s.host);
    if (!cur || compareSnapshots(cur, s) < 0) latest.set(s.host, s);
  }
  const wanted = new Set(ids);
  for (const id of wanted) {
    const found = considered.find((s) => s.id === id);
    if (!found) throw new UsageError(`unknown snapshot '${id}'${options.host !== undefined ? ` of host '${options.host}'` : ''}`);
    if (latest.get(found.host)?.id === id) {
      throw new UsageError(`${id} is the latest snapshot of host '${found.host}': it is always kept, because that host's next backup deduplicates against it`);
    }
  }
  return {
    indexPrefix: options.indexPrefix,
    keep: considered.filter((s) => !wanted.has(s.id)).map((snapshot) => ({ snapshot, reasons: ['not named'] })),
    remove: considered.filter((s) => wanted.has(s.id)).map((snapshot) => ({ snapshot, reasons: [] })),
    untouched,
  };
}

/**
 * Deletes the plan's snapshots: all metadata objects (batches of 1000), then their manifests.
 * Deleting a key that is already gone is not an error, so rerunning after an interruption is
 * safe. Retries are the store's (openStorage wraps a retry policy around every delete call).
 * @throws StorageError from delete; the abort reason when `signal` fires (between batches).
 */
export async function executeForget(
  storage: Pick<Storage, 'delete'>,
  plan: ForgetPlan,
  options: { signal?: AbortSignal; onEvent?: (e: ForgetEvent) => void } = {},
): Promise<ForgetResult> {
  const metadata = plan.remove.map((d) => metadataKey(plan.indexPrefix, d.snapshot.id));
  const manifests = plan.remove.filter((d) => d.snapshot.hasManifest).map((d) => manifestKey(plan.indexPrefix, d.snapshot.id));
  await deleteInBatches(storage, metadata, (done) => options.onEvent?.({ type: 'deleted', phase: 'metadata', done, total: metadata.length }), options.signal);
  await deleteInBatches(storage, manifests, (done) => options.onEvent?.({ type: 'deleted', phase: 'manifests', done, total: manifests.length }), options.signal);
  return { forgotten: plan.remove.map((d) => d.snapshot.id), metadataDeleted: metadata.length, manifestsDeleted: manifests.length };
}

/**
 * Deletes `keys` in requests of at most DELETE_BATCH keys, checking `signal` between requests.
 * @throws StorageError from delete; the abort reason.
 */
export async function deleteInBatches(
  storage: Pick<Storage, 'delete'>,
  keys: readonly string[],
  onBatch?: (done: number) => void,
  signal?: AbortSignal,
  batchSize = DELETE_BATCH,
): Promise<void> {
  for (let i = 0; i < keys.length; i += batchSize) {
    signal?.throwIfAborted();
    const batch = keys.slice(i, i + batchSize);
    await storage.delete(batch);
    onBatch?.(i + batch.length);
  }
}
