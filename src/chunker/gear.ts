/**
 * FastCDC constants: the GEAR tables and the cut masks, exactly as fastcdc-rs (v2016/v2020) and
 * the REAPI FastCDC 2020 spec use them, so chunk boundaries are portable to those implementations.
 *
 * - GEAR[i] is the first 8 bytes (big-endian) of MD5 of 64 bytes all equal to i. We derive the
 *   table at load time rather than pasting 256 literals; test/chunker checks it against
 *   test/fixtures/fastcdc/fastcdc-constants.json.
 * - GEAR_LS[i] = GEAR[i] << 1 (mod 2^64): v2020 "rolls two bytes" per step, the first byte of the
 *   pair enters the hash pre-shifted by one.
 * - MASKS[n] has exactly n one-bits (n = log2 of the target size). Indices 5..25 are the
 *   published table (destor C reference up to 17, restic-FastCDC above). vaultik's default 10 MB
 *   chunks with normalization 2 need index 25; larger averages need more, which no reference
 *   publishes. We extend the table the way its upper half was grown: each mask is the previous
 *   one plus one bit, here always the highest still-unset bit in 12..47, so every mask stays a
 *   superset of the smaller ones and stays within bits 0..47 (which keeps the hash window at its
 *   full 24 steps and lets the hot loop track only the low 49 bits of the hash). That gives
 *   indices up to 36 (2^36 = 64 GiB), far beyond the 1 GiB max chunk we accept.
 */
import { createHash } from 'node:crypto';

const U64 = (1n << 64n) - 1n;

/** Published MASKS (fastcdc-rs `MASKS`), index = number of one-bits; 0..4 unused. */
const PUBLISHED_MASKS: readonly bigint[] = [
  0n, 0n, 0n, 0n, 0n,
  0x0000000001804110n, // 5
  0x0000000001803110n,
  0x0000000018035100n,
  0x0000001800035300n,
  0x0000019000353000n,
  0x0000590003530000n, // 10
  0x0000d90003530000n,
  0x0000d90103530000n,
  0x0000d90303530000n,
  0x0000d90313530000n,
  0x0000d90f03530000n, // 15
  0x0000d90303537000n,
  0x0000d90703537000n,
  0x0000d90707537000n,
  0x0000d91707537000n,
  0x0000d91747537000n, // 20
  0x0000d91767537000n,
  0x0000d93767537000n,
  0x0000d93777537000n,
  0x0000d93777577000n,
  0x0000db3777577000n, // 25
];

/** Smallest and largest usable mask index (number of one-bits). */
export const MIN_MASK_BITS = 5;
export const MAX_MASK_BITS = 36;

/** Lowest bit the extension may set: the published masks never use bits 0..11. */
const EXTENSION_LOW_BIT = 12;
const EXTENSION_HIGH_BIT = 47;

function buildMasks(): readonly bigint[] {
  const masks = [...PUBLISHED_MASKS];
  let m = masks[masks.length - 1]!;
  for (let n = masks.length; n <= MAX_MASK_BITS; n++) {
    for (let bit = EXTENSION_HIGH_BIT; bit >= EXTENSION_LOW_BIT; bit--) {
      const b = 1n << BigInt(bit);
      if ((m & b) === 0n) {
        m |= b;
        break;
      }
    }
    masks.push(m);
  }
  return masks;
}

/** MASKS[n] for n in 0..MAX_MASK_BITS (0..4 are 0 and unusable). */
export const MASKS: readonly bigint[] = buildMasks();

function buildGear(): readonly bigint[] {
  const gear: bigint[] = [];
  for (let i = 0; i < 256; i++) {
    gear.push(createHash('md5').update(Buffer.alloc(64, i)).digest().readBigUInt64BE(0));
  }
  return gear;
}

/** GEAR table (seed 0). */
export const GEAR: readonly bigint[] = buildGear();

/** GEAR_LS table (seed 0): GEAR[i] << 1 mod 2^64. */
export const GEAR_LS: readonly bigint[] = GEAR.map((g) => (g << 1n) & U64);

/**
 * The tables for a seed, as fastcdc-rs `with_level_and_seed` builds them:
 * GEAR[i] ^ seed and GEAR_LS[i] ^ (seed << 1).
 */
export function seededGear(seed: bigint): { gear: readonly bigint[]; gearLs: readonly bigint[] } {
  if (seed === 0n) return { gear: GEAR, gearLs: GEAR_LS };
  const s = seed & U64;
  const sLs = (s << 1n) & U64;
  return { gear: GEAR.map((g) => g ^ s), gearLs: GEAR_LS.map((g) => g ^ sLs) };
}

/** Masks selected for an average size and normalization level (fastcdc-rs `get_masks`). */
export function masksFor(avgSize: number, normalization: number): { maskS: bigint; maskL: bigint; bits: number } {
  const bits = Math.round(Math.log2(avgSize));
  const s = bits + normalization;
  const l = bits - normalization;
  if (l < MIN_MASK_BITS || s > MAX_MASK_BITS) {
    throw new RangeError(
      `FastCDC: average ${avgSize} with normalization ${normalization} needs masks ${l}..${s} bits, ` +
        `supported ${MIN_MASK_BITS}..${MAX_MASK_BITS}`,
    );
  }
  return { maskS: MASKS[s]!, maskL: MASKS[l]!, bits };
}
