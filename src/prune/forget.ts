/**
 * `vaultik forget`: removes snapshots (their root, then their manifest and signature) that a
 * retention policy does not keep, or that the user names. It never touches blobs: `prune`
 * deletes the blobs no remaining snapshot references.
 *
 * Keyless by design: the policy needs each snapshot's host and a time, which the object names
 * and the store's listing give, so forget decides without decrypting anything. It can run where
 * the private key is not, and it cannot be fooled by metadata it cannot read.
 *
 * **The store's clock, not the id's** (docs/SECURITY.md "Forged snapshots and the store's
 * clock"). Anyone with the public recipient and a write credential can make a snapshot with any
 * id; its time is a claim. The time the store recorded for the root (S3 LastModified, the file's
 * mtime) is not theirs to choose on S3. So the policy sorts and buckets snapshots by store time,
 * and a snapshot whose id time and store time disagree beyond the clock rules (list.ts
 * judgeSnapshot), or whose id has several roots, is *suspect*: it never takes a keep slot or
 * counts as a host's latest, and while any exists forget refuses (SuspectSnapshotsError) unless
 * told to keep them all or forget them all. With allowed signers (`--signers`), a snapshot
 * without a valid signature is suspect too (src/snapshot/signatures.ts).
 *
 * One policy per host name (the id's host part). Two configs backing up different directories
 * under the same host name would share one "latest": give each its own `hostname:` (prune
 * notes hosts whose snapshots have different source directories).
 *
 * Order of deletion: every root first, then the manifests and signatures. A snapshot exists as
 * long as its root does (docs/DESIGN.md promise 5), so an interrupted forget leaves either a whole
 * snapshot or orphan manifests, which prune removes; never a snapshot without its manifest.
 */
import { ExitCode, UsageError, VaultikError } from '../errors.js';
import type { AllowedSigner } from '../sign/index.js';
import { judgeSignatures } from '../snapshot/signatures.js';
import { DEFAULT_CLOCK_RULES, scanIndex, type ClockRules, type SnapshotListing } from '../snapshot/list.js';
import { compareSnapshots } from '../snapshot/id.js';
import type { Storage } from '../storage/types.js';
import { applyPolicy, hasKeepRule, type PolicyDecision, type RetentionPolicy } from './policy.js';

/** What forget does with suspect snapshots: nothing (refuse) unless told. */
export type SuspectChoice = 'keep' | 'forget';

/**
 * Forget refused to apply a policy because suspect snapshots exist (ExitCode.SUSPECT): nothing
 * was removed. The message lists them and the choices.
 */
export class SuspectSnapshotsError extends VaultikError {
  constructor(readonly suspects: readonly SnapshotListing[]) {
    const shown = suspects.slice(0, 10).map((s) => `  ${s.id}: ${s.suspect.join('; ')}`);
    if (suspects.length > 10) shown.push(`  … (${suspects.length} in all)`);
    super(
      `${suspects.length} suspect snapshot(s): forged, or written by a host whose clock is far off; nothing was removed\n${shown.join('\n')}\n` +
        'Inspect them (`vaultik snapshots`, `vaultik verify`), then run forget again with --suspects keep (keep them all; they take no ' +
        'keep slot) or --suspects forget (remove them all), or name them by id (docs/SECURITY.md "Forged snapshots and the store\'s clock")',
      ExitCode.SUSPECT,
    );
    this.name = 'SuspectSnapshotsError';
  }
}

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
  /** What to do with suspect snapshots; undefined refuses to apply a policy while any exists. */
  suspects?: SuspectChoice;
  /** When a snapshot's id time and store time disagree too much (default DEFAULT_CLOCK_RULES). */
  clock?: ClockRules;
  /** Require valid signatures by these signers: a snapshot without one is suspect. */
  signers?: readonly AllowedSigner[];
}

export interface ForgetPlan {
  indexPrefix: string;
  /** Snapshots kept, with the rules that keep them. */
  keep: PolicyDecision<SnapshotListing>[];
  /** Snapshots to forget. */
  remove: PolicyDecision<SnapshotListing>[];
  /** Snapshots of other hosts (with `host`), not considered. */
  untouched: number;
  /** How many of keep and remove are suspect. */
  suspects: number;
}

export interface ForgetResult {
  /** Ids whose metadata was deleted. */
  forgotten: string[];
  metadataDeleted: number;
  manifestsDeleted: number;
}

export type ForgetEvent = { type: 'deleted'; phase: 'metadata' | 'manifests'; done: number; total: number };

/**
 * The newest snapshot of each host that is not suspect, by store time: what that host's next
 * backup deduplicates against, always kept.
 */
function latestByHost(snapshots: readonly SnapshotListing[]): Map<string, SnapshotListing> {
  const latest = new Map<string, SnapshotListing>();
  for (const s of snapshots) {
    if (s.suspect.length > 0) continue;
    const cur = latest.get(s.host);
    if (!cur || compareByStoreTime(cur, s) < 0) latest.set(s.host, s);
  }
  return latest;
}

function compareByStoreTime(a: SnapshotListing, b: SnapshotListing): number {
  return a.storeTime.getTime() - b.storeTime.getTime() || compareSnapshots(a, b);
}

/**
 * Applies `policy` to the snapshots that are not suspect, each judged by its store time (the
 * decisions carry the listings unchanged); suspects are kept or removed as `choice` says.
 */
function decide(considered: readonly SnapshotListing[], policy: RetentionPolicy, choice: SuspectChoice | undefined): { keep: PolicyDecision<SnapshotListing>[]; remove: PolicyDecision<SnapshotListing>[] } {
  const suspects = considered.filter((s) => s.suspect.length > 0);
  if (suspects.length > 0 && choice === undefined) throw new SuspectSnapshotsError(suspects);
  const trusted = considered.filter((s) => s.suspect.length === 0).map((listing) => ({ id: listing.id, host: listing.host, time: listing.storeTime, listing }));
  const decided = applyPolicy(trusted, policy);
  const back = (d: PolicyDecision<(typeof trusted)[number]>): PolicyDecision<SnapshotListing> => ({ snapshot: d.snapshot.listing, reasons: d.reasons });
  const keep = decided.keep.map(back);
  const remove = decided.remove.map(back);
  for (const s of suspects) {
    if (choice === 'keep') keep.push({ snapshot: s, reasons: [`suspect: ${s.suspect.join('; ')}`] });
    else remove.push({ snapshot: s, reasons: [`suspect: ${s.suspect.join('; ')}`] });
  }
  return { keep, remove };
}

/**
 * Decides which snapshots to forget. Lists the index only (no key, nothing downloaded).
 * @throws UsageError when neither a keep rule nor ids are given, when both are, when a named id
 *   does not exist, or when a named id is its host's latest snapshot (always kept; with
 *   `signers`, the newest validly signed one);
 *   SuspectSnapshotsError (a policy while suspects exist and no `suspects` choice);
 *   StorageError from listing.
 */
export async function planForget(storage: Storage, options: ForgetOptions): Promise<ForgetPlan> {
  const ids = options.ids ?? [];
  const policy = options.policy ?? {};
  if (ids.length > 0 && hasKeepRule(policy)) throw new UsageError('give either snapshot ids or --keep-* options, not both');
  if (ids.length === 0 && !hasKeepRule(policy)) {
    throw new UsageError('forget needs at least one --keep-* option (or snapshot ids): refusing to guess what to remove');
  }
  const { snapshots } = await scanIndex(storage, options.indexPrefix, options.clock ?? DEFAULT_CLOCK_RULES);
  if (options.signers) await judgeSignatures(storage, snapshots, options.signers);
  const considered = options.host === undefined ? snapshots : snapshots.filter((s) => s.host === options.host);
  const untouched = snapshots.length - considered.length;
  const countSuspects = (list: readonly PolicyDecision<SnapshotListing>[]): number => list.filter((d) => d.snapshot.suspect.length > 0).length;
  if (ids.length === 0) {
    const { keep, remove } = decide(considered, policy, options.suspects);
    return { indexPrefix: options.indexPrefix, keep, remove, untouched, suspects: countSuspects(keep) + countSuspects(remove) };
  }
  // Named ids: everything else is kept as it is.
  const latest = latestByHost(snapshots);
  const wanted = new Set(ids);
  for (const id of wanted) {
    const found = considered.find((s) => s.id === id);
    if (!found) throw new UsageError(`unknown snapshot '${id}'${options.host !== undefined ? ` of host '${options.host}'` : ''}`);
    if (latest.get(found.host)?.id === id) {
      throw new UsageError(`${id} is the latest snapshot of host '${found.host}': it is always kept, because that host's next backup deduplicates against it`);
    }
  }
  const keep = considered.filter((s) => !wanted.has(s.id)).map((snapshot) => ({ snapshot, reasons: ['not named'] }));
  const remove = considered.filter((s) => wanted.has(s.id)).map((snapshot) => ({ snapshot, reasons: [] }));
  return { indexPrefix: options.indexPrefix, keep, remove, untouched, suspects: countSuspects(keep) + countSuspects(remove) };
}

/**
 * Deletes the plan's snapshots: all roots (batches of 1000), then their manifests and signatures.
 * Deleting a key that is already gone is not an error, so rerunning after an interruption is
 * safe. Retries are the store's (openStorage wraps a retry policy around every delete call).
 * @throws StorageError from delete; the abort reason when `signal` fires (between batches).
 */
export async function executeForget(
  storage: Pick<Storage, 'delete'>,
  plan: ForgetPlan,
  options: { signal?: AbortSignal; onEvent?: (e: ForgetEvent) => void } = {},
): Promise<ForgetResult> {
  const metadata = plan.remove.flatMap((d) => [d.snapshot.root, ...d.snapshot.otherRoots].map((o) => o.key));
  const manifests = plan.remove.flatMap((d) => [...d.snapshot.manifests, ...d.snapshot.signatures].map((o) => o.key));
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
