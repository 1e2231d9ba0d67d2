/**
 * Content-defined chunking (FastCDC 2020). The public surface of src/chunker: the backup pipeline
 * uses chunkStream() with chunkerOptions(config.chunk_size); the rest is for tests and tools.
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
