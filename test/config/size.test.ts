import { describe, expect, it } from 'vitest';
import { formatSize, parseDuration, parseSize } from '../../src/config/size.js';

describe('parseSize', () => {
  const ok: [string | number, number][] = [
    [0, 0],
    [4096, 4096],
    ['4096', 4096],
    ['0', 0],
    ['10B', 10],
    ['10 b', 10],
    ['1KB', 1000],
    ['1kb', 1000],
    ['1Kb', 1000],
    ['10MB', 10_000_000],
    ['10 MB', 10_000_000],
    ['10GB', 10_000_000_000],
    ['2TB', 2_000_000_000_000],
    ['1PB', 1e15],
    ['512KiB', 524_288],
    ['512kib', 524_288],
    ['64MiB', 64 * 1024 * 1024],
    ['1GiB', 1024 ** 3],
    ['1TiB', 1024 ** 4],
    ['1PiB', 1024 ** 5],
    ['1.5 MB', 1_500_000],
    ['1.1MB', 1_100_000],
    ['0.5KiB', 512],
    ['  7 GB  ', 7e9],
  ];
  it.each(ok)('%j → %d', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  const bad: [string | number, RegExp][] = [
    ['10 potatoes', /cannot parse size "10 potatoes": unknown unit "potatoes"/],
    ['10M', /unit "M" is ambiguous, write MB \(10\^6\) or MiB \(2\^20\)/],
    ['10k', /unit "k" is ambiguous/],
    ['1G', /ambiguous/],
    ['', /cannot parse size "": expected a number/],
    ['MB', /expected a number/],
    ['-5MB', /expected a number/],
    ['1.5B', /not a whole number of bytes/],
    ['0.3KiB', /not a whole number of bytes/],
    ['1e6', /expected a number/],
    ['1,000', /expected a number/],
    ['1..5MB', /expected a number/],
    ['.5MB', /expected a number/],
    ['10 MB extra', /expected a number/],
    ['100000PiB', /too large/],
    [-1, /whole, non-negative/],
    [1.5, /whole, non-negative/],
    [Number.NaN, /whole, non-negative/],
    [Infinity, /whole, non-negative/],
  ];
  it.each(bad)('%j throws %s', (input, message) => {
    expect(() => parseSize(input)).toThrow(message);
  });
});

describe('parseDuration', () => {
  const ok: [string | number, number][] = [
    [0, 0],
    ['0', 0],
    ['30s', 30_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['24h', 86_400_000],
    ['1h30m', 5_400_000],
    ['1h 30m', 5_400_000],
    ['7d', 7 * 86_400_000],
    ['1w', 7 * 86_400_000],
    ['1w2d3h4m5s6ms', ((((7 + 2) * 24 + 3) * 60 + 4) * 60 + 5) * 1000 + 6],
    ['1.5h', 5_400_000],
    ['250ms', 250],
    ['0s', 0],
    ['90m', 5_400_000],
    [' 2h ', 7_200_000],
  ];
  it.each(ok)('%j → %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  const bad: [string | number, RegExp][] = [
    [3600, /cannot parse duration 3600: a number needs a unit, e.g. "3600s"/],
    ['3600', /a number needs a unit/],
    ['', /expected e.g./],
    ['1x', /unknown unit "x"/],
    ['1M', /unknown unit "M" \(months and years vary/],
    ['1mo', /months and years/],
    ['1y', /months and years/],
    ['1H', /unknown unit "H" \(use w, d, h, m, s or ms, in lower case\)/],
    ['30m1h', /units must go from largest to smallest/],
    ['1h1h', /units must go from largest to smallest/],
    ['h', /expected e.g./],
    ['-1h', /expected e.g./],
    ['1h30', /expected e.g./],
    ['1.0001s', /not a whole number of milliseconds/],
    ['1.2.3h', /bad number/],
    ['99999999999999w', /too large/],
  ];
  it.each(bad)('%j throws %s', (input, message) => {
    expect(() => parseDuration(input)).toThrow(message);
  });
});

describe('formatSize', () => {
  it.each([
    [0, '0 B'],
    [1000, '1000 B'],
    [65536, '64 KiB'],
    [64 * 1024 * 1024, '64 MiB'],
    [5 * 1024 ** 4, '5 TiB'],
    [10_000_000, '10000000 B'],
  ])('%d → %s', (n, s) => {
    expect(formatSize(n)).toBe(s);
  });
});
