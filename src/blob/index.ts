/**
 * The blob format (docs/FORMAT.md): one age file whose plaintext is a run of zstd frames, one
 * per chunk, named by the SHA-256 of its stored bytes. Its main exports
 * (docs/DESIGN.md, "Architecture").
 */
export { blobKey, blobHashOf } from './key.js';
export { BlobWriter, DEFAULT_MEMORY_THRESHOLD, type BlobWriterOptions, type FinishedBlob, type FrameLocation } from './writer.js';
export { chunkFromFetched, decodeChunk, readChunk, storageReadRange, streamChunk, type FrameRef, type StreamChunkOptions } from './reader.js';
