// Timing for the single-threaded comparisons (bench/sqlite.mjs, bench/zstd.mjs): the process's
// CPU time (user + system) is the work's cost even on a loaded machine; wall time goes beside it.

/** Runs fn (synchronous) and returns [CPU seconds, wall seconds]. */
export function timed(fn) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  fn();
  const c = process.cpuUsage(c0);
  return [(c.user + c.system) / 1e6, Number(process.hrtime.bigint() - t0) / 1e9];
}
