/**
 * The retention policy of `vaultik forget`: which snapshots to keep. Pure: it sees only snapshot
 * ids, hosts and times (all carried by the object names, so no key is needed) and a policy.
 *
 * Semantics are restic's (`restic forget`, internal/restic/snapshot_policy.go), with two
 * differences: time buckets are computed in UTC (not local time), so the same store gives the
 * same answer on every machine; and `within` is a fixed length of time in vaultik's duration
 * grammar (w, d, h, m = minutes, s) rather than calendar years and months.
 *
 * Per host, snapshots are taken newest first. For each snapshot:
 * - `last` keeps the n newest snapshots.
 * - `hourly`, `daily`, `weekly` (ISO 8601 week), `monthly`, `yearly` each keep the newest snapshot
 *   of each of the n most recent time buckets that hold a snapshot: a snapshot is kept when its
 *   bucket differs from the bucket of the previous snapshot this rule kept. A rule that still has
 *   counts left also keeps the host's oldest snapshot (restic ≥ 0.15: the history reaches as far
 *   back as the counts allow).
 * - `within` keeps every snapshot strictly newer than (newest snapshot of the host − within).
 *   Like restic, it is relative to the newest snapshot, not to now: a host that stopped backing
 *   up does not lose its history to the passing of time.
 * - A count of -1 means "unlimited" (every bucket).
 * - vaultik addition: the newest snapshot of every host is always kept, whatever the policy,
 *   because that host's next backup deduplicates against it (docs/DESIGN.md promise 5):
 *   forgetting it would let prune delete blobs that backup is about to reference.
 */
import { compareSnapshots } from '../snapshot/id.js';

/** How many snapshots each rule keeps; -1 is unlimited, undefined/0 means the rule is off. */
export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** Keep everything within this many milliseconds of the host's newest snapshot. */
  withinMs?: number;
}

/** What the policy needs to know about a snapshot (a SnapshotListing fits). */
export interface SnapshotRef {
  id: string;
  host: string;
  time: Date;
}

export interface PolicyDecision<S extends SnapshotRef = SnapshotRef> {
  snapshot: S;
  /** Why it is kept ("latest", "last", "daily 2026-11-27", "within 30d"); empty for removals. */
  reasons: string[];
}

export interface PolicyResult<S extends SnapshotRef = SnapshotRef> {
  /** Newest first within each host; hosts in name order. */
  keep: PolicyDecision<S>[];
  remove: PolicyDecision<S>[];
}

type BucketRule = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';
const BUCKET_RULES: readonly BucketRule[] = ['hourly', 'daily', 'weekly', 'monthly', 'yearly'];

const pad = (n: number, w = 2): string => String(n).padStart(w, '0');

/** ISO 8601 week-numbering year and week of a UTC date. */
export function isoWeek(t: Date): { year: number; week: number } {
  // The ISO week belongs to the year of its Thursday.
  const d = new Date(Date.UTC(t.getUTCFullYear(), t.getUTCMonth(), t.getUTCDate()));
  const day = d.getUTCDay() === 0 ? 7 : d.getUTCDay();
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  return { year: d.getUTCFullYear(), week: Math.floor((d.getTime() - yearStart) / 86_400_000 / 7) + 1 };
}

/** The UTC time bucket of `t` for a rule, as a readable label ("2026-11-27T03", "2026-W48"). */
export function bucketOf(rule: BucketRule, t: Date): string {
  const y = pad(t.getUTCFullYear(), 4);
  const m = pad(t.getUTCMonth() + 1);
  const d = pad(t.getUTCDate());
  switch (rule) {
    case 'hourly':
      return `${y}-${m}-${d}T${pad(t.getUTCHours())}`;
    case 'daily':
      return `${y}-${m}-${d}`;
    case 'weekly': {
      const w = isoWeek(t);
      return `${pad(w.year, 4)}-W${pad(w.week)}`;
    }
    case 'monthly':
      return `${y}-${m}`;
    case 'yearly':
      return y;
  }
}

/** True when at least one rule of the policy is on. */
export function hasKeepRule(policy: RetentionPolicy): boolean {
  return (
    [policy.last, ...BUCKET_RULES.map((r) => policy[r])].some((n) => n !== undefined && n !== 0) ||
    (policy.withinMs !== undefined && policy.withinMs > 0)
  );
}

/**
 * Checks a policy's numbers.
 * @throws RangeError naming the rule when a count is not an integer ≥ -1 or `withinMs` < 0.
 */
export function checkPolicy(policy: RetentionPolicy): void {
  for (const rule of ['last', ...BUCKET_RULES] as const) {
    const n = policy[rule];
    if (n !== undefined && (!Number.isSafeInteger(n) || n < -1)) throw new RangeError(`keep-${rule} must be a whole number ≥ 0 (or -1 for unlimited), got ${n}`);
  }
  if (policy.withinMs !== undefined && (!Number.isSafeInteger(policy.withinMs) || policy.withinMs < 0)) {
    throw new RangeError(`keep-within must be a non-negative duration, got ${policy.withinMs} ms`);
  }
}

/**
 * Applies `policy` to each host's snapshots separately (see the file comment).
 * Every snapshot ends up in exactly one of keep/remove. Pure and deterministic.
 * @throws RangeError for an invalid policy (see checkPolicy).
 */
export function applyPolicy<S extends SnapshotRef>(snapshots: readonly S[], policy: RetentionPolicy): PolicyResult<S> {
  checkPolicy(policy);
  const byHost = new Map<string, S[]>();
  for (const s of snapshots) {
    const list = byHost.get(s.host) ?? [];
    list.push(s);
    byHost.set(s.host, list);
  }
  const result: PolicyResult<S> = { keep: [], remove: [] };
  for (const host of [...byHost.keys()].sort()) {
    const list = byHost.get(host)!.sort((a, b) => compareSnapshots(b, a));
    const latest = list[0]!.time.getTime();
    const counts = new Map<BucketRule, number>(BUCKET_RULES.map((r) => [r, policy[r] ?? 0]));
    const lastBucket = new Map<BucketRule, string>();
    const last = policy.last ?? 0;
    list.forEach((snapshot, nr) => {
      const reasons: string[] = [];
      if (nr === 0) reasons.push('latest');
      if (last === -1 || nr < last) reasons.push('last');
      for (const rule of BUCKET_RULES) {
        const left = counts.get(rule)!;
        if (left === 0) continue;
        const bucket = bucketOf(rule, snapshot.time);
        if (bucket !== lastBucket.get(rule) || nr === list.length - 1) {
          reasons.push(nr === list.length - 1 && bucket === lastBucket.get(rule) ? `${rule} oldest` : `${rule} ${bucket}`);
          lastBucket.set(rule, bucket);
          if (left > 0) counts.set(rule, left - 1);
        }
      }
      if (policy.withinMs !== undefined && policy.withinMs > 0 && snapshot.time.getTime() > latest - policy.withinMs) {
        reasons.push('within');
      }
      (reasons.length > 0 ? result.keep : result.remove).push({ snapshot, reasons });
    });
  }
  return result;
}
