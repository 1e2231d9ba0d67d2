/**
 * The daemon's timing rules (pure functions, no waiting) and its text log lines.
 */
import { describe, expect, it } from 'vitest';
import { daemonLogLine } from '../../src/cli/render/daemon.js';
import type { DaemonEvent, DaemonEventBody } from '../../src/daemon/index.js';
import { DirtySet, LIST, SELF } from '../../src/daemon/dirty.js';
import { fullScanDue, nextDue, retryDelay, startAt } from '../../src/daemon/schedule.js';

const S = 1000;
const H = 3600 * S;

describe('schedule', () => {
  it('retries after an interval, doubling per failure, capped at max(interval, 6 h)', () => {
    expect([1, 2, 3, 4, 5].map((n) => retryDelay(1 * S, n))).toEqual([1 * S, 2 * S, 4 * S, 8 * S, 16 * S]);
    expect([1, 2, 3, 4, 50].map((n) => retryDelay(1 * H, n))).toEqual([1 * H, 2 * H, 4 * H, 6 * H, 6 * H]);
    expect(retryDelay(24 * H, 3)).toBe(24 * H);
  });

  it('keeps the cadence; a run longer than the interval is followed at once, not by a burst', () => {
    expect(nextDue(10 * S, 60 * S, 12 * S)).toBe(70 * S);
    expect(nextDue(10 * S, 60 * S, 200 * S)).toBe(200 * S);
  });

  it('never starts sooner than min_time_between_run after the previous run ended', () => {
    expect(startAt(100 * S, undefined, 15 * 60 * S)).toBe(100 * S);
    expect(startAt(100 * S, 90 * S, 30 * S)).toBe(120 * S);
    expect(startAt(100 * S, 50 * S, 30 * S)).toBe(100 * S);
  });

  it('a full scan at start-up and then every full_scan_interval', () => {
    expect(fullScanDue(undefined, 24 * H, 5)).toBe(true);
    expect(fullScanDue(0, 24 * H, 24 * H - 1)).toBe(false);
    expect(fullScanDue(0, 24 * H, 24 * H)).toBe(true);
  });
});

describe('dirty set', () => {
  it('merges flags, hands marks over, and overflows to "scan everything" past its limit', () => {
    const d = new DirtySet(3);
    d.mark(Buffer.from('a/b'), SELF);
    d.mark(Buffer.from('a/b'), LIST);
    d.markAbs(Buffer.from('/a/\xff', 'latin1'), SELF);
    expect(d.flags(Buffer.from('a/b'))).toBe(SELF | LIST);
    expect(d.flags(Buffer.from('a/\xff', 'latin1'))).toBe(SELF);
    const taken = d.take();
    expect(d.empty).toBe(true);
    expect(taken.size).toBe(2);
    d.merge(taken);
    d.mark(Buffer.from('c'), SELF);
    expect(d.overflowed).toBe(false);
    d.mark(Buffer.from('d'), SELF);
    expect(d.overflowed).toBe(true);
    expect(d.size).toBe(0);
    expect(d.empty).toBe(false);
  });
});

describe('daemon log lines', () => {
  const t = '2026-11-27T04:00:00.000Z';
  const line = (e: DaemonEventBody): string | undefined => daemonLogLine({ time: t, ...e } as DaemonEvent);

  it('one line per run with a timestamp: snapshot id, files changed, bytes added, duration', () => {
    expect(
      line({ type: 'run', snapshotId: 'h-20261127T040000.000Z', scan: 'dirty', fullScan: false, dirtyPaths: 4, filesChanged: 3, filesNew: 1, files: 9, bytesAdded: 1536, bytesRead: 10, durationMs: 800, warnings: 0, filesChangedWhileRead: 0 }),
    ).toBe(`${t} snapshot h-20261127T040000.000Z: 3 files changed (1 new), 1.50 KiB added, 0.8s (4 dirty paths re-checked)`);
    const run = { type: 'run', snapshotId: 'h-20261127T040000.000Z', scan: 'full', fullScan: true, dirtyPaths: 0, filesChanged: 3, filesNew: 0, files: 9, bytesAdded: 0, bytesRead: 10, durationMs: 800 } as const;
    expect(line({ ...run, warnings: 3, filesChangedWhileRead: 1 })).toBe(
      `${t} snapshot h-20261127T040000.000Z: 3 files changed (0 new), 0 B added, 0.8s (full walk); 1 file changed while read, stored as last read; 2 paths left out (see the warnings above)`,
    );
    expect(line({ ...run, warnings: 2, filesChangedWhileRead: 2 })).toMatch(/\(full walk\); 2 files changed while read, stored as last read \(see the warnings above\)$/);
    expect(line({ ...run, warnings: 1, filesChangedWhileRead: 0 })).toMatch(/\(full walk\); 1 path left out \(see the warnings above\)$/);
    expect(line({ type: 'skipped', fullScan: true, reason: 'nothing changed (full scan)' })).toBe(`${t} skipped: nothing changed (full scan)`);
    expect(line({ type: 'run-failed', message: 'cannot reach\nthe store', exitCode: 6, failures: 2, retryInMs: 7_200_000 })).toBe(
      `${t} error: backup failed: cannot reach; the store; retrying in 2h00m (2 failures in a row)`,
    );
    expect(line({ type: 'run-start', scan: 'full', fullScan: true, dirtyPaths: 0 })).toBeUndefined();
  });
});
