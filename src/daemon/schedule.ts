/**
 * The daemon's timing rules, as pure functions of times in ms (tested without waiting).
 *
 * - Runs come every `backupInterval`, on a cadence: the next one is due an interval after the
 *   previous one was due, or at once when a run took longer than that (never a burst of
 *   catch-up runs: one run takes every change since).
 * - Never sooner than `minTimeBetweenRun` after the previous run ended (failed runs included).
 * - After a failure: retry an interval later, doubling with each further failure, at most
 *   max(interval, 6 h) apart, so a long outage of the store costs few attempts and the first
 *   retry still comes soon.
 * - A full stat scan once `fullScanInterval` has passed since the last one (and at start-up).
 */

const RETRY_CAP_MS = 6 * 60 * 60 * 1000;

/** Delay before the next attempt after `failures` (≥ 1) failed runs in a row. */
export function retryDelay(backupIntervalMs: number, failures: number): number {
  const cap = Math.max(backupIntervalMs, RETRY_CAP_MS);
  return Math.min(cap, backupIntervalMs * 2 ** Math.min(Math.max(failures, 1) - 1, 30));
}

/** When the run after one that was due at `dueAt` is due, seen at `now`. */
export function nextDue(dueAt: number, backupIntervalMs: number, now: number): number {
  return Math.max(dueAt + backupIntervalMs, now);
}

/** When a run due at `dueAt` may start, given when the previous run ended (if any). */
export function startAt(dueAt: number, lastRunEnd: number | undefined, minTimeBetweenRunMs: number): number {
  return lastRunEnd === undefined ? dueAt : Math.max(dueAt, lastRunEnd + minTimeBetweenRunMs);
}

/** Whether a run starting at `now` must do a full stat scan. */
export function fullScanDue(lastFullScan: number | undefined, fullScanIntervalMs: number, now: number): boolean {
  return lastFullScan === undefined || now - lastFullScan >= fullScanIntervalMs;
}
