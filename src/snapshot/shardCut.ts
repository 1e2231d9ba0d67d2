/**
 * Where a snapshot's entries are cut into shards (docs/DESIGN.md, "Snapshot metadata: shards").
 *
 * Entries come in path byte order. A shard ends after an entry whose path hash has its low
 * BOUNDARY_BITS bits zero (a "boundary path"); it also ends at MAX_ENTRIES entries, or once its
 * files add up to MAX_BYTES (a shard's chunk rows grow with the bytes of its files). The cut
 * depends on the paths alone, so adding, removing or changing one entry changes the shard that
 * holds it and leaves the others as they were: the next boundary path ends the changed shard
 * exactly where it ended before. A boundary path added splits its shard in two, one removed joins
 * two. Only a shard cut by a maximum (rare: no boundary among 8192 paths, e^-8) passes a shift on
 * to the next boundary path.
 *
 * There is no minimum size: with one, a count decides whether a boundary path cuts, and an edit
 * could then move a cut in the next shard too. Small shards are the price (1 in 16 holds fewer
 * than 64 entries), each one object more.
 *
 * Readers do not depend on this rule: the root lists each shard's path range. It is not part of
 * the format, and changing it costs one backup that writes new shards.
 */

/** A shard ends after a path whose hash has this many low zero bits (1 in 1024 paths). */
export const BOUNDARY_BITS = 10;
/** A shard never holds more entries than this. */
export const MAX_ENTRIES = 8192;
/** Nor files adding up to more bytes than this (their chunk rows grow with it). */
export const MAX_BYTES = 64 * 1024 ** 3;

/** FNV-1a, 32 bits: a cheap, well-spread hash of the path bytes (no adversary gains by it). */
export function pathHash(path: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < path.length; i++) {
    h ^= path[i]!;
    h = Math.imul(h, 0x01000193);
  }
  // A final mix, so the low bits depend on every byte.
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return h >>> 0;
}

export interface ShardLimits {
  boundaryBits: number;
  /** No boundary path cuts before this many entries (1 by default: see the top). */
  minEntries: number;
  maxEntries: number;
  maxBytes: number;
}

export const DEFAULT_SHARD_LIMITS: ShardLimits = {
  boundaryBits: BOUNDARY_BITS,
  minEntries: 1,
  maxEntries: MAX_ENTRIES,
  maxBytes: MAX_BYTES,
};

/** Decides, entry by entry in path order, where shards end. */
export class ShardCutter {
  private entries = 0;
  private bytes = 0;
  private readonly mask: number;

  constructor(private readonly limits: ShardLimits = DEFAULT_SHARD_LIMITS) {
    this.mask = limits.boundaryBits >= 32 ? 0xffffffff : (1 << limits.boundaryBits) - 1;
  }

  /** Adds the next entry; true when the shard ends after it. */
  add(path: Uint8Array, size: number): boolean {
    this.entries++;
    this.bytes += size;
    const l = this.limits;
    const cut =
      this.entries >= l.maxEntries ||
      this.bytes >= l.maxBytes ||
      (this.entries >= l.minEntries && (pathHash(path) & this.mask) === 0);
    if (cut) {
      this.entries = 0;
      this.bytes = 0;
    }
    return cut;
  }
}

/** Cuts a path-ordered list into shards (for tests and tools): the index of each shard's end. */
export function cutPoints(paths: readonly { path: Uint8Array; size?: number }[], limits?: ShardLimits): number[] {
  const cutter = new ShardCutter(limits);
  const ends: number[] = [];
  paths.forEach((p, i) => {
    if (cutter.add(p.path, p.size ?? 0)) ends.push(i);
  });
  if (paths.length > 0 && ends[ends.length - 1] !== paths.length - 1) ends.push(paths.length - 1);
  return ends;
}
