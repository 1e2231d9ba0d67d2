/**
 * zstd frames: one chunk becomes one independent frame, with the content size and a content
 * checksum in the frame header, so `zstd -d` can check each chunk on its own and frames can be
 * concatenated freely (a blob's plaintext is a run of frames).
 *
 * zstd-napi is synchronous: callers on a hot path run these in worker threads (pool.ts, which
 * builds its compressors from FRAME_PARAMETERS so both paths write identical frames).
 */
import { Compressor, type CompressParameters } from 'zstd-napi';
import zstd from 'zstd-napi/binding.js';
import { VaultikError, ExitCode } from '../errors.js';

export const DEFAULT_COMPRESSION_LEVEL = 3;

/**
 * Largest frame content we decompress unless the caller raises it: the largest chunk the
 * chunker may produce (1 GiB). A corrupt or hostile 20-byte frame can declare any size, and
 * decompression allocates the declared size up front.
 */
export const MAX_FRAME_CONTENT = 1 << 30;

/** Frame parameters every vaultik frame uses (besides the level). */
export const FRAME_PARAMETERS: Readonly<CompressParameters> = Object.freeze({
  contentSizeFlag: true,
  checksumFlag: true,
  // No dictionary ever; keep the header minimal and independent of any dictionary state.
  dictIDFlag: false,
});

/**
 * Checks a compression level.
 * @throws RangeError unless `level` is an integer in zstd's range (negative "fast" levels to 22).
 */
export function checkCompressionLevel(level: number): number {
  if (!Number.isInteger(level) || level < zstd.minCLevel() || level > zstd.maxCLevel()) {
    throw new RangeError(`compression level must be an integer in ${zstd.minCLevel()}..${zstd.maxCLevel()}, got ${level}`);
  }
  return level;
}

const compressors = new Map<number, Compressor>();
let dctx: InstanceType<typeof zstd.DCtx> | undefined;

function compressorFor(level: number): Compressor {
  let c = compressors.get(level);
  if (!c) {
    checkCompressionLevel(level);
    c = new Compressor();
    c.setParameters({ ...FRAME_PARAMETERS, compressionLevel: level });
    compressors.set(level, c);
  }
  return c;
}

/**
 * Compress `plain` into exactly one zstd frame (content size and checksum flags set).
 * The result may be a view into a larger allocation (zstd-napi trims only wasteful buffers).
 * @throws RangeError for a bad level.
 */
export function compressFrame(plain: Uint8Array, level: number = DEFAULT_COMPRESSION_LEVEL): Buffer {
  return compressorFor(level).compress(plain);
}

/**
 * Decompress exactly one zstd frame, verifying its content checksum when it has one (ours all
 * do). The frame must declare its content size (ours all do), which must equal `expectedSize`
 * when given and never exceed `maxSize`; this is checked before allocating.
 * @throws VaultikError (DATA) when the input is not exactly one valid frame (truncated, trailing
 *   bytes, bad checksum, corrupt data) or has the wrong or an excessive size.
 */
export function decompressFrame(frame: Uint8Array, expectedSize?: number, maxSize: number = MAX_FRAME_CONTENT): Buffer {
  const out = Buffer.allocUnsafe(declaredSize(frame, expectedSize, maxSize));
  decompressInto(frame, out);
  return out;
}

/**
 * decompressFrame() into `out`, which must be exactly the expected content size (e.g. a view of
 * shared memory).
 * @throws VaultikError (DATA) as decompressFrame.
 */
export function decompressFrameInto(frame: Uint8Array, out: Uint8Array, maxSize: number = MAX_FRAME_CONTENT): void {
  declaredSize(frame, out.length, maxSize);
  decompressInto(frame, out);
}

function corrupt(what: string, cause?: unknown): VaultikError {
  return new VaultikError(`corrupt zstd frame: ${what}`, ExitCode.DATA, cause === undefined ? undefined : { cause });
}

/** The content size `frame` declares, after the checks of decompressFrame. */
function declaredSize(frame: Uint8Array, expectedSize: number | undefined, maxSize: number): number {
  let declared: number | null;
  let frameLength: number;
  try {
    declared = zstd.getFrameContentSize(frame);
    frameLength = zstd.findFrameCompressedSize(frame);
  } catch (err) {
    throw corrupt((err as Error).message, err);
  }
  if (frameLength !== frame.length) throw corrupt(`${frame.length - frameLength} bytes after the end of the frame`);
  if (declared === null) throw corrupt('no content size in the frame header');
  if (expectedSize !== undefined && declared !== expectedSize) {
    throw new VaultikError(`zstd frame holds ${declared} bytes, expected ${expectedSize}`, ExitCode.DATA);
  }
  if (declared > maxSize) throw corrupt(`declares ${declared} bytes, more than the ${maxSize} allowed`);
  return declared;
}

/** Decompresses a checked frame into `out`, exactly its declared size. */
function decompressInto(frame: Uint8Array, out: Uint8Array): void {
  dctx ??= new zstd.DCtx();
  let n: number;
  try {
    n = dctx.decompress(out, frame);
  } catch (err) {
    throw corrupt((err as Error).message, err);
  }
  if (n !== out.length) throw corrupt(`decompressed to ${n} bytes, header says ${out.length}`);
}

/** Output buffer of one streaming decompression step (zstd's recommended size, ~128 KiB). */
const STREAM_OUT_SIZE = zstd.dStreamOutSize();

/**
 * A pipeline stage (stream.pipeline accepts it between a source and a sink) that decompresses a
 * zstd stream of any number of frames and stops as soon as its output passes `maxOutput`. It
 * yields one decoder buffer at a time and waits for the consumer to take it, so whatever the
 * compression ratio (a hostile 1 KB frame can expand to gigabytes) it holds one buffer and never
 * produces more than `maxOutput` plus one buffer. zstd-napi's DecompressStream, by contrast,
 * expands a whole input chunk into memory before anything downstream can count it.
 * @throws what `tooLarge()` returns, past the cap; VaultikError (DATA) on corrupt data or a
 *   stream that ends inside a frame.
 */
export function boundedDecompress(maxOutput: number, tooLarge: () => Error): (source: AsyncIterable<Buffer>) => AsyncGenerator<Buffer> {
  return async function* decompress(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const dctx = new zstd.DCtx();
    let total = 0;
    let inFrame = false;
    for await (const chunk of source) {
      let src = chunk;
      for (;;) {
        const dst = Buffer.allocUnsafe(STREAM_OUT_SIZE);
        let ret: number, produced: number, consumed: number;
        try {
          [ret, produced, consumed] = dctx.decompressStream(dst, src);
        } catch (err) {
          throw corrupt((err as Error).message, err);
        }
        total += produced;
        if (total > maxOutput) throw tooLarge();
        if (produced > 0) yield dst.subarray(0, produced);
        src = src.subarray(consumed);
        // Input used up and the decoder has nothing more to flush (or a frame just ended).
        if (src.length === 0 && (produced < dst.length || ret === 0)) {
          inFrame = ret !== 0;
          break;
        }
      }
    }
    if (inFrame) throw corrupt('the data ends inside a frame (truncated)');
  };
}
