/**
 * zstd frames: one chunk becomes one independent frame, with the content size and a content
 * checksum in the frame header, so `zstd -d` can check each chunk on its own and frames can be
 * concatenated freely (a blob's plaintext is a run of frames).
 *
 * zstd-napi is synchronous: callers on a hot path run these in worker threads.
 */
import { Compressor, Decompressor } from 'zstd-napi';
import { VaultikError, ExitCode } from '../errors.js';

export const DEFAULT_COMPRESSION_LEVEL = 3;

const compressors = new Map<number, Compressor>();
let decompressor: Decompressor | undefined;

function compressorFor(level: number): Compressor {
  let c = compressors.get(level);
  if (!c) {
    c = new Compressor();
    c.setParameters({ compressionLevel: level, contentSizeFlag: true, checksumFlag: true });
    compressors.set(level, c);
  }
  return c;
}

/** Compress `plain` into exactly one zstd frame (content size and checksum flags set). */
export function compressFrame(plain: Uint8Array, level: number = DEFAULT_COMPRESSION_LEVEL): Buffer {
  return compressorFor(level).compress(plain);
}

/**
 * Decompress one zstd frame. `expectedSize`, when given, must equal the decompressed length.
 * @throws VaultikError (DATA) when the frame is corrupt or has the wrong size.
 */
export function decompressFrame(frame: Uint8Array, expectedSize?: number): Buffer {
  decompressor ??= new Decompressor();
  let out: Buffer;
  try {
    out = decompressor.decompress(frame);
  } catch (err) {
    throw new VaultikError(`corrupt zstd frame: ${(err as Error).message}`, ExitCode.DATA, { cause: err });
  }
  if (expectedSize !== undefined && out.length !== expectedSize) {
    throw new VaultikError(
      `zstd frame decompressed to ${out.length} bytes, expected ${expectedSize}`,
      ExitCode.DATA,
    );
  }
  return out;
}
