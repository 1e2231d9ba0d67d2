/**
 * The retention policy, table-tested: each row is a set of snapshot times, a policy, and the
 * times that must be kept (restic's semantics, UTC buckets, each host's latest always kept).
 */
import { describe, expect, it } from 'vitest';
import { applyPolicy, bucketOf, checkPolicy, hasKeepRule, isoWeek, type RetentionPolicy } from '../../src/prune/policy.js';
import { makeSnapshotId } from '../../src/snapshot/index.js';

const HOUR = 3600_000;
const DAY = 24 * HOUR;

function snaps(host: string, times: readonly string[]): { id: string; host: string; time: Date }[] {
  return times.map((t) => {
    const time = new Date(t);
    return { id: makeSnapshotId(host, time), host, time };
  });
}

/** Kept times (ISO, newest first) for one host. */
function kept(times: readonly string[], policy: RetentionPolicy): string[] {
  return applyPolicy(snaps('h', times), policy).keep.map((d) => d.snapshot.time.toISOString());
}

/** Daily snapshots at 03:00 UTC from 2026-01-01 for `n` days. */
const daily = (n: number, start = Date.UTC(2026, 0, 1, 3)): string[] => Array.from({ length: n }, (_, i) => new Date(start + i * DAY).toISOString());

const ts = (...s: string[]): string[] => s.map((x) => new Date(x).toISOString());

interface Row {
  name: string;
  times: string[];
  policy: RetentionPolicy;
  keep: string[];
}

const rows: Row[] = [
  {
    name: 'last 2 of 4',
    times: ts('2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z', '2026-01-03T00:00:00Z', '2026-01-04T00:00:00Z'),
    policy: { last: 2 },
    keep: ts('2026-01-04T00:00:00Z', '2026-01-03T00:00:00Z'),
  },
  {
    name: 'zero counts are off; a spent rule keeps nothing more (not even the oldest)',
    times: ts('2026-01-01T00:00:00Z', '2026-01-02T00:00:00Z'),
    policy: { last: 0, daily: 0, withinMs: 0, hourly: 1 },
    keep: ts('2026-01-02T00:00:00Z'),
  },
  {
    name: 'last -1 keeps everything',
    times: daily(5),
    policy: { last: -1 },
    keep: daily(5).reverse(),
  },
  {
    name: 'daily keeps the newest of each day (UTC), n days',
    times: ts('2026-03-01T01:00:00Z', '2026-03-01T23:00:00Z', '2026-03-02T00:30:00Z', '2026-03-02T12:00:00Z', '2026-03-03T05:00:00Z'),
    policy: { daily: 2 },
    keep: ts('2026-03-03T05:00:00Z', '2026-03-02T12:00:00Z'),
  },
  {
    name: 'daily with counts left also keeps the oldest snapshot',
    times: ts('2026-03-01T01:00:00Z', '2026-03-01T23:00:00Z', '2026-03-02T12:00:00Z'),
    policy: { daily: 5 },
    keep: ts('2026-03-02T12:00:00Z', '2026-03-01T23:00:00Z', '2026-03-01T01:00:00Z'),
  },
  {
    name: 'hourly',
    times: ts('2026-03-01T10:05:00Z', '2026-03-01T10:55:00Z', '2026-03-01T11:10:00Z', '2026-03-01T12:00:00Z', '2026-03-01T12:59:59Z'),
    policy: { hourly: 2 },
    keep: ts('2026-03-01T12:59:59Z', '2026-03-01T11:10:00Z'),
  },
  {
    // 2026-01-04 is a Sunday (ISO week 1 of 2026 runs Mon 2025-12-29 .. Sun 2026-01-04).
    name: 'weekly uses ISO weeks (Monday to Sunday)',
    times: ts('2025-12-29T00:00:00Z', '2026-01-04T23:00:00Z', '2026-01-05T00:00:00Z', '2026-01-11T00:00:00Z', '2026-01-12T00:00:00Z'),
    policy: { weekly: 2 },
    keep: ts('2026-01-12T00:00:00Z', '2026-01-11T00:00:00Z'),
  },
  {
    name: 'weekly 3 reaches the previous year through the ISO year',
    times: ts('2025-12-28T00:00:00Z', '2026-01-04T23:00:00Z', '2026-01-05T00:00:00Z', '2026-01-11T00:00:00Z'),
    policy: { weekly: 3 },
    keep: ts('2026-01-11T00:00:00Z', '2026-01-04T23:00:00Z', '2025-12-28T00:00:00Z'),
  },
  {
    name: 'monthly keeps the newest of each month',
    times: ts('2026-01-31T23:59:59Z', '2026-02-01T00:00:00Z', '2026-02-28T00:00:00Z', '2026-03-15T00:00:00Z'),
    policy: { monthly: 2 },
    keep: ts('2026-03-15T00:00:00Z', '2026-02-28T00:00:00Z'),
  },
  {
    name: 'yearly',
    times: ts('2024-06-01T00:00:00Z', '2024-12-31T23:59:59Z', '2025-01-01T00:00:00Z', '2025-07-01T00:00:00Z', '2026-01-01T00:00:00Z'),
    policy: { yearly: 2 },
    keep: ts('2026-01-01T00:00:00Z', '2025-07-01T00:00:00Z'),
  },
  {
    name: 'within is relative to the newest snapshot, exclusive',
    times: daily(10),
    policy: { withinMs: 3 * DAY },
    keep: daily(10).reverse().slice(0, 3),
  },
  {
    name: 'rules combine (union of what each keeps)',
    times: daily(40),
    policy: { last: 2, weekly: 2, monthly: 2 },
    // last: Feb 9, Feb 8; weekly: Feb 9 (week 7), Feb 8 (week 6: Sun); monthly: Feb 9, Jan 31.
    keep: ts('2026-02-09T03:00:00Z', '2026-02-08T03:00:00Z', '2026-01-31T03:00:00Z'),
  },
  {
    name: 'daily -1 keeps one per day forever',
    times: ts('2026-03-01T01:00:00Z', '2026-03-01T02:00:00Z', '2026-03-02T01:00:00Z'),
    policy: { daily: -1 },
    keep: ts('2026-03-02T01:00:00Z', '2026-03-01T02:00:00Z', '2026-03-01T01:00:00Z'),
  },
];

describe('applyPolicy', () => {
  it.each(rows)('$name', ({ times, policy, keep }) => {
    expect(kept(times, policy)).toEqual(keep);
  });

  it('puts every snapshot in exactly one of keep/remove, with reasons for the kept ones', () => {
    const list = snaps('h', daily(30));
    const r = applyPolicy(list, { daily: 7, weekly: 2 });
    expect(r.keep.length + r.remove.length).toBe(30);
    expect(new Set([...r.keep, ...r.remove].map((d) => d.snapshot.id)).size).toBe(30);
    for (const d of r.keep) expect(d.reasons.length).toBeGreaterThan(0);
    for (const d of r.remove) expect(d.reasons).toEqual([]);
    expect(r.keep[0]!.reasons).toContain('latest');
  });

  it('applies the policy per host and always keeps each host latest', () => {
    const list = [...snaps('a', daily(5)), ...snaps('b', ts('2020-01-01T00:00:00Z', '2020-01-02T00:00:00Z')), ...snaps('c', daily(3))];
    const r = applyPolicy(list, { withinMs: DAY / 2 });
    const keptIds = r.keep.map((d) => `${d.snapshot.host} ${d.snapshot.time.toISOString()}`);
    // Host b stopped in 2020: its latest is kept, and within is relative to it, not to now.
    expect(keptIds).toEqual(['a 2026-01-05T03:00:00.000Z', 'b 2020-01-02T00:00:00.000Z', 'c 2026-01-03T03:00:00.000Z']);
    expect(r.remove).toHaveLength(5 - 1 + 1 + 3 - 1);
  });

  it('orders snapshots by time, not by input order', () => {
    const list = snaps('h', daily(6)).reverse();
    expect(applyPolicy(list, { last: 1 }).keep.map((d) => d.snapshot.time.toISOString())).toEqual([daily(6)[5]]);
  });

  it('is pure: same input, same output, input untouched', () => {
    const list = snaps('h', daily(12));
    const copy = JSON.stringify(list);
    expect(applyPolicy(list, { weekly: 1 })).toEqual(applyPolicy(list, { weekly: 1 }));
    expect(JSON.stringify(list)).toBe(copy);
  });
});

describe('policy helpers', () => {
  it('buckets in UTC', () => {
    const t = new Date('2026-11-27T23:30:00Z');
    expect(bucketOf('hourly', t)).toBe('2026-11-27T23');
    expect(bucketOf('daily', t)).toBe('2026-11-27');
    expect(bucketOf('weekly', t)).toBe('2026-W48');
    expect(bucketOf('monthly', t)).toBe('2026-11');
    expect(bucketOf('yearly', t)).toBe('2026');
  });

  it.each([
    ['2026-01-01T00:00:00Z', 2026, 1],
    ['2025-12-29T00:00:00Z', 2026, 1],
    ['2021-01-03T00:00:00Z', 2020, 53],
    ['2024-12-30T12:00:00Z', 2025, 1],
    ['2026-06-15T00:00:00Z', 2026, 25],
  ])('ISO week of %s is %i-W%i', (t, year, week) => {
    expect(isoWeek(new Date(t))).toEqual({ year, week });
  });

  it('knows when a policy has a rule', () => {
    expect(hasKeepRule({})).toBe(false);
    expect(hasKeepRule({ last: 0, withinMs: 0 })).toBe(false);
    expect(hasKeepRule({ monthly: 1 })).toBe(true);
    expect(hasKeepRule({ withinMs: 1 })).toBe(true);
    expect(hasKeepRule({ yearly: -1 })).toBe(true);
  });

  it('rejects bad counts', () => {
    expect(() => checkPolicy({ last: -2 })).toThrow(/keep-last/);
    expect(() => checkPolicy({ daily: 1.5 })).toThrow(/keep-daily/);
    expect(() => checkPolicy({ withinMs: -1 })).toThrow(/keep-within/);
  });
});
