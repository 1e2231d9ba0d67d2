/**
 * Compression and chunk processing: one zstd frame per chunk (zstd.ts) and the worker pool that
 * hashes and compresses chunks on every core (pool.ts).
 */
export {
  DEFAULT_COMPRESSION_LEVEL,
  FRAME_PARAMETERS,
  MAX_FRAME_CONTENT,
  checkCompressionLevel,
  compressFrame,
  decompressFrame,
} from './zstd.js';
export {
  ChunkPool,
  IN_FLIGHT_PER_WORKER,
  type ChunkPoolOptions,
  type ChunkResult,
  type SubmitOptions,
} from './pool.js';
