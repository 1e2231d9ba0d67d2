/**
 * Sizes and durations as written in the config file ("10MB", "512KiB", "1h30m").
 *
 * The size grammar is deliberately unambiguous: decimal SI units are powers of 1000
 * (KB, MB, GB, TB, PB) and binary IEC units are powers of 1024 (KiB, MiB, GiB, TiB, PiB).
 * Single-letter units ("10M", "10k") are refused rather than guessed, because tools disagree
 * on what they mean (restic/borg read "10M" as MiB, disks are sold in MB). Arithmetic is exact
 * (BigInt), so "1.1MB" is exactly 1 100 000 bytes and never 1 100 000.0000000002.
 */

/** Bytes per unit, keyed by the lower-cased unit. */
const SIZE_UNITS: ReadonlyMap<string, bigint> = new Map([
  ['', 1n],
  ['b', 1n],
  ['kb', 1000n],
  ['mb', 1000n ** 2n],
  ['gb', 1000n ** 3n],
  ['tb', 1000n ** 4n],
  ['pb', 1000n ** 5n],
  ['kib', 1024n],
  ['mib', 1024n ** 2n],
  ['gib', 1024n ** 3n],
  ['tib', 1024n ** 4n],
  ['pib', 1024n ** 5n],
]);

/** Units people commonly write that we refuse as ambiguous, with what to write instead. */
const AMBIGUOUS_SIZE_UNITS: ReadonlyMap<string, string> = new Map([
  ['k', 'KB (1000) or KiB (1024)'],
  ['m', 'MB (10^6) or MiB (2^20)'],
  ['g', 'GB (10^9) or GiB (2^30)'],
  ['t', 'TB (10^12) or TiB (2^40)'],
  ['p', 'PB (10^15) or PiB (2^50)'],
]);

/** Milliseconds per duration unit, largest first: components must appear in this order. */
const DURATION_UNITS: readonly (readonly [string, bigint])[] = [
  ['w', 7n * 24n * 3600n * 1000n],
  ['d', 24n * 3600n * 1000n],
  ['h', 3600n * 1000n],
  ['m', 60n * 1000n],
  ['s', 1000n],
  ['ms', 1n],
];

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** A non-negative decimal number split into an integer mantissa and a power-of-ten scale. */
function parseDecimal(text: string): { mantissa: bigint; scale: bigint } | undefined {
  const m = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) return undefined;
  const frac = m[2] ?? '';
  return { mantissa: BigInt(m[1]! + frac), scale: 10n ** BigInt(frac.length) };
}

/**
 * Parses a size into a whole number of bytes.
 *
 * Accepts a non-negative integer number (bytes), or a string: a decimal number (optionally with
 * a fraction) followed by optional spaces and an optional case-insensitive unit: B, KB, MB, GB,
 * TB, PB (powers of 1000) or KiB, MiB, GiB, TiB, PiB (powers of 1024). No unit means bytes.
 * Examples: 4096, "4096", "10MB" = 10 000 000, "512KiB" = 524 288, "1.5 MB" = 1 500 000.
 *
 * @throws Error with a message stating what was wrong (ambiguous unit, fraction of a byte,
 *   negative or non-finite number, too large to be exact); the caller adds the key and line.
 */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new Error(`cannot parse size ${String(value)}: expected a whole, non-negative number of bytes or a string like "10MB"`);
    }
    return value;
  }
  const text = value.trim();
  const m = /^([0-9.]+)\s*([a-zA-Z]*)$/.exec(text);
  const number = m ? parseDecimal(m[1]!) : undefined;
  if (!m || !number) {
    throw new Error(`cannot parse size ${JSON.stringify(value)}: expected a number with an optional unit, like "10MB", "512KiB" or "4096"`);
  }
  const unitText = m[2]!;
  const unit = unitText.toLowerCase();
  const multiplier = SIZE_UNITS.get(unit);
  if (multiplier === undefined) {
    const hint = AMBIGUOUS_SIZE_UNITS.get(unit);
    throw new Error(
      hint
        ? `cannot parse size ${JSON.stringify(value)}: unit "${unitText}" is ambiguous, write ${hint}`
        : `cannot parse size ${JSON.stringify(value)}: unknown unit "${unitText}" (use B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB or PiB)`,
    );
  }
  const scaled = number.mantissa * multiplier;
  if (scaled % number.scale !== 0n) {
    throw new Error(`cannot parse size ${JSON.stringify(value)}: not a whole number of bytes`);
  }
  const bytes = scaled / number.scale;
  if (bytes > MAX_SAFE) throw new Error(`cannot parse size ${JSON.stringify(value)}: too large`);
  return Number(bytes);
}

/**
 * Parses a duration into milliseconds.
 *
 * Accepts one or more components `<number><unit>`, largest unit first, each unit at most once,
 * optionally separated by spaces: w (weeks), d (days), h, m (minutes), s, ms — lower case only. A component's
 * number may have a fraction as long as the total is a whole number of milliseconds ("1.5h").
 * The bare number 0 (or "0") is accepted; any other number without a unit is refused because
 * its unit would be a guess. Months and years are not units: their length varies.
 * Examples: "15m", "1h", "24h", "1h30m", "30s", "7d", "1w", "1d 12h".
 *
 * @throws Error with a message stating what was wrong; the caller adds the key and line.
 */
export function parseDuration(value: string | number): number {
  if (value === 0 || (typeof value === 'string' && value.trim() === '0')) return 0;
  const shown = typeof value === 'number' ? String(value) : JSON.stringify(value);
  if (typeof value === 'number') {
    throw new Error(`cannot parse duration ${shown}: a number needs a unit, e.g. "${shown}s" or "${shown}m"`);
  }
  const text = value.trim();
  const usage = 'expected e.g. "30s", "15m", "1h30m", "7d" (units: w, d, h, m, s, ms)';
  if (text === '') throw new Error(`cannot parse duration ${shown}: ${usage}`);
  if (/^\d+(?:\.\d+)?$/.test(text)) {
    throw new Error(`cannot parse duration ${shown}: a number needs a unit, e.g. "${text}s" or "${text}m"`);
  }
  const component = /\s*([0-9.]+)\s*([a-zA-Z]+)\s*/y;
  let total = 0n;
  let lastRank = -1;
  let pos = 0;
  while (pos < text.length) {
    component.lastIndex = pos;
    const m = component.exec(text);
    if (!m) throw new Error(`cannot parse duration ${shown}: ${usage}`);
    pos = component.lastIndex;
    const number = parseDecimal(m[1]!);
    const unitText = m[2]!;
    // Units are lower case only, so that "M" (month? minute?) is never guessed.
    const rank = DURATION_UNITS.findIndex(([u]) => u === unitText);
    if (!number) throw new Error(`cannot parse duration ${shown}: bad number "${m[1]!}"`);
    if (rank < 0) {
      const hint = unitText === 'M' || /^mo/i.test(unitText) || /^y/i.test(unitText)
        ? ' (months and years vary in length: use d or w)'
        : ' (use w, d, h, m, s or ms, in lower case)';
      throw new Error(`cannot parse duration ${shown}: unknown unit "${unitText}"${hint}`);
    }
    if (rank <= lastRank) {
      throw new Error(`cannot parse duration ${shown}: units must go from largest to smallest, each once (e.g. "1h30m")`);
    }
    lastRank = rank;
    const scaled = number.mantissa * DURATION_UNITS[rank]![1];
    if (scaled % number.scale !== 0n) {
      throw new Error(`cannot parse duration ${shown}: not a whole number of milliseconds`);
    }
    total += scaled / number.scale;
  }
  if (total > MAX_SAFE) throw new Error(`cannot parse duration ${shown}: too large`);
  return Number(total);
}

/** Formats bytes for messages with the largest binary unit that divides exactly ("64 MiB", "1000 B"). */
export function formatSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let n = bytes;
  while (i < units.length - 1 && n >= 1024 && n % 1024 === 0) {
    n /= 1024;
    i++;
  }
  return `${n} ${units[i]!}`;
}
