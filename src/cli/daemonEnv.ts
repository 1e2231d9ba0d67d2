/**
 * glibc's malloc settings for `vaultik backup --daemon`, which glibc reads from the environment
 * once, when the process starts: bin.ts replaces the process with itself (execve, same pid, so
 * systemd and containers see nothing) with them set.
 *
 * - MALLOC_ARENA_MAX=2: every thread that allocates (the chunk pool's workers, libuv's and V8's)
 *   otherwise gets an arena of its own, up to 8 per core, each keeping free memory of its own.
 * - MALLOC_MMAP_THRESHOLD_=65536, MALLOC_TRIM_THRESHOLD_=65536: blocks of 64 KiB and more get
 *   pages of their own (given back on free()), and free() gives back the top of a heap past
 *   64 KiB. By default glibc raises both thresholds (up to 32 MiB) each time a large block is
 *   freed, and a run's buffers then stay in the heap, among smaller blocks still in use.
 * Idle RSS after the start-up run (bench/daemon.mjs, 20,000 files, with the trim of
 * src/daemon/memory.ts): 95-101 MiB with glibc's defaults, 79-83 MiB with these (docs/DAEMON.md).
 *
 * Only the daemon: other commands end when their work is done. A value the user set wins; the
 * others are still set (and once all three are set, nothing is exec'd: no loop).
 */

const SETTINGS: Readonly<Record<string, string>> = { MALLOC_ARENA_MAX: '2', MALLOC_MMAP_THRESHOLD_: '65536', MALLOC_TRIM_THRESHOLD_: '65536' };

/** The environment to exec the daemon with, or undefined to go on as is. */
export function daemonExecEnv(argv: readonly string[], env: NodeJS.ProcessEnv, platform: NodeJS.Platform): NodeJS.ProcessEnv | undefined {
  if (platform !== 'linux' || Object.keys(SETTINGS).every((k) => env[k] !== undefined)) return undefined;
  if (argv[0] !== 'backup' || !argv.includes('--daemon') || argv.includes('--help') || argv.includes('-h')) return undefined;
  return { ...SETTINGS, ...env };
}

/** Execs this process again with daemonExecEnv's environment when it gives one; else returns. */
export function execDaemonEnv(): void {
  const env = daemonExecEnv(process.argv.slice(2), process.env, process.platform);
  if (env === undefined || typeof process.execve !== 'function') return;
  // Does not return (a failing execve ends the process; process.execPath is this very binary).
  process.execve(process.execPath, [process.argv0, ...process.execArgv, ...process.argv.slice(1)], env);
}
