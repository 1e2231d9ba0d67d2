/**
 * Content-defined chunking (FastCDC 2020). Its main exports (docs/DESIGN.md, "Architecture"): the
 * chunk worker runs StreamCutter with chunkerOptions(config.chunk_size); chunkBuffer and the
 * 64-bit hash are for tests and tools.
 */
export {
  chunkerOptions,
  chunkBuffer,
  findCut,
  findCutWithHash,
  resolveChunker,
  DEFAULT_NORMALIZATION,
  MIN_CHUNK_MIN_SIZE,
  MAX_CHUNK_MAX_SIZE,
  type ChunkerOptions,
  type ResolvedChunker,
} from './fastcdc.js';
export { chunkStream } from './stream.js';
export { GEAR, GEAR_LS, MASKS, MIN_MASK_BITS, MAX_MASK_BITS, masksFor, seededGear } from './gear.js';
