/**
 * Number formatting for humans, shared by every command's output: sizes in IEC units (KiB, MiB,
 * ...: what `ls -lh` and `du -h` print), durations, rates, counts with thousands separators.
 */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 0 B, 512 B, 1.5 KiB, 12.3 MiB, 1.02 GiB: three significant digits from KiB on. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 1024) return `${Math.max(0, Math.round(n || 0))} B`;
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${UNITS[u]}`;
}

/** Bytes per second over `ms` milliseconds, e.g. "45.3 MiB/s"; "-" when no time has passed. */
export function formatRate(bytes: number, ms: number): string {
  if (!(ms > 0)) return '-';
  return `${formatBytes((bytes * 1000) / ms)}/s`;
}

/** 0.4s, 12s, 3m05s, 2h03m. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/**
 * 1234567 → "1,234,567". Not toLocaleString: its first call loads ICU's locale data, ~70 ms of
 * a 1 s backup's summary.
 */
export function formatCount(n: number): string {
  const digits = String(Math.abs(Math.round(n)));
  return (n < 0 && Math.round(n) !== 0 ? '-' : '') + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** "1 blob", "2 blobs". */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${formatCount(n)} ${n === 1 ? word : many}`;
}
