/**
 * Shard boundaries (src/snapshot/shardCut.ts) are stable under edits: inserting, deleting or
 * renaming one entry changes the shard that holds it (a boundary path added or removed: two) and
 * leaves every other shard exactly as it was
 * (same entries), which is what lets a backup reuse them. Seeded property test over random trees.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_SHARD_LIMITS, ShardCutter, cutPoints, pathHash, type ShardLimits } from '../../src/snapshot/index.js';
import { int, prng, suiteSeed } from '../hardening/kit.js';

/** A random tree's paths in byte order, like a walk yields them. */
function randomPaths(rnd: () => number, n: number): Buffer[] {
  const set = new Set<string>();
  const dirs = ['home', 'home/u', 'home/u/data', 'etc', 'var/lib/x'];
  while (set.size < n) {
    const d = dirs[int(rnd, dirs.length)]!;
    const name = `${d}/${Math.floor(rnd() * 1e9).toString(36)}${rnd() < 0.1 ? '.d' : ''}`;
    set.add(name);
    if (name.endsWith('.d') && dirs.length < 200) dirs.push(name);
  }
  return [...set].map((s) => Buffer.from(s)).sort(Buffer.compare);
}

/** The shards of a path list, each as its paths joined. */
function shards(paths: readonly Buffer[], limits: ShardLimits): string[] {
  const ends = cutPoints(paths.map((path) => ({ path })), limits);
  const out: string[] = [];
  let start = 0;
  for (const end of ends) {
    out.push(paths.slice(start, end + 1).map((p) => p.toString('latin1')).join('\n'));
    start = end + 1;
  }
  return out;
}

/** How many shards of `after` are not shards of `before`. */
function changed(before: readonly string[], after: readonly string[]): number {
  const old = new Set(before);
  return after.filter((s) => !old.has(s)).length;
}

const SMALL: ShardLimits = { boundaryBits: 4, minEntries: 1, maxEntries: 1 << 20, maxBytes: 2 ** 50 };

describe('shard boundaries', () => {
  it('depend only on the paths: the same list always cuts the same way, every entry in one shard', () => {
    const rnd = prng(suiteSeed('shard/same', 7001));
    const paths = randomPaths(rnd, 3000);
    const a = shards(paths, SMALL);
    expect(shards(paths, SMALL)).toEqual(a);
    expect(a.join('\n').split('\n')).toEqual(paths.map((p) => p.toString('latin1')));
    expect(a.length).toBeGreaterThan(3000 / 64);
  });

  it.each([
    ['insert', 0],
    ['delete', 1],
    ['rename', 2],
  ])('one %s changes at most two shards (a boundary path splits or joins), never the rest', (_name, op) => {
    const rnd = prng(suiteSeed(`shard/edit-${op}`, 7002 + op));
    const paths = randomPaths(rnd, 4000);
    const before = shards(paths, SMALL);
    let worst = 0;
    let total = 0;
    for (let round = 0; round < 300; round++) {
      const edited = [...paths];
      const at = int(rnd, edited.length);
      const fresh = Buffer.from(`${edited[at]!.toString()}-${round}x`);
      if (op === 0) edited.push(fresh);
      else if (op === 1) edited.splice(at, 1);
      else edited[at] = fresh;
      edited.sort(Buffer.compare);
      const after = shards(edited, SMALL);
      const n = changed(before, after);
      worst = Math.max(worst, n);
      total += n;
      // Everything but the few new shards is a shard of the original, entries and all.
      expect(n, `round ${round}`).toBeLessThanOrEqual(op === 2 ? 4 : 2);
      // An insert changes its shard (exactly one), or splits it when the new path is a boundary path;
      // a delete changes its shard, or joins two into one.
      if (op === 0 && (pathHash(fresh) & 15) !== 0) expect(n).toBe(1);
      if (op === 1) expect(n).toBeLessThanOrEqual(1);
      // At most two old shards are gone (joined, or one changed): all others are kept as they were.
      expect(before.length - (after.length - n), `round ${round}`).toBeLessThanOrEqual(op === 2 ? 4 : 2);
    }
    // Most edits touch exactly one shard.
    expect(total / 300).toBeLessThan(op === 2 ? 2.6 : 1.6);
    expect(worst).toBeGreaterThanOrEqual(1);
  });

  it('a shard cut at the maximum passes the shift on only to the next boundary path', () => {
    const rnd = prng(suiteSeed('shard/max', 7006));
    const paths = randomPaths(rnd, 4000);
    const limits = { ...SMALL, maxEntries: 20 };
    const before = shards(paths, limits);
    for (let round = 0; round < 100; round++) {
      const edited = [...paths, Buffer.from(`${paths[int(rnd, paths.length)]!.toString()}-${round}x`)].sort(Buffer.compare);
      const n = changed(before, shards(edited, limits));
      // Several maximum-size shards in a row may shift; the first boundary path stops it.
      expect(n).toBeLessThan(before.length / 4);
    }
  });

  it('the default limits: ~1,000 entries a shard, never more than the maximum', () => {
    const rnd = prng(suiteSeed('shard/default', 7005));
    const paths = randomPaths(rnd, 60_000);
    const ends = cutPoints(paths.map((path) => ({ path })));
    const sizes = ends.map((e, i) => e - (i === 0 ? -1 : ends[i - 1]!));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(DEFAULT_SHARD_LIMITS.maxEntries);
    const mean = paths.length / sizes.length;
    expect(mean).toBeGreaterThan(700);
    expect(mean).toBeLessThan(1400);
  });

  it('cuts a shard whose files add up to the byte limit', () => {
    const cutter = new ShardCutter({ ...SMALL, boundaryBits: 30, maxBytes: 1000 });
    expect(cutter.add(Buffer.from('a'), 600)).toBe(false);
    expect(cutter.add(Buffer.from('b'), 600)).toBe(true);
    expect(cutter.add(Buffer.from('c'), 10)).toBe(false);
  });

  it('hashes every byte of the path', () => {
    const base = Buffer.from('home/u/data/report.odt');
    const seen = new Set([pathHash(base)]);
    for (let i = 0; i < base.length; i++) {
      const b = Buffer.from(base);
      b[i]! ^= 1;
      seen.add(pathHash(b));
    }
    expect(seen.size).toBe(base.length + 1);
  });
});
