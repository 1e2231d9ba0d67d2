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
 * Largest frame content we decompress unless the caller raises it: the largest chunk a backup
 * can write (4 × the largest chunk_size, 64 MiB: see src/config/load.ts). A corrupt or hostile
 * 20-byte frame can declare any size, and decompression allocates the declared size up front.
 */
export const MAX_FRAME_CONTENT = 256 * 1024 * 1024;

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

/** Largest frame header (RFC 8878 §3.1.1.1: magic, descriptor, window, dictionary id, content size). */
const FRAME_HEADER_MAX = 18;
/** Output of one FrameStream step. */
const STREAM_OUT = 1024 * 1024;
const EMPTY = Buffer.alloc(0);
/** Streaming decoders to reuse: each keeps its window (freed only by GC otherwise). */
const idleStreams: InstanceType<typeof zstd.DCtx>[] = [];

/**
 * The window a frame's header asks the streaming decoder to keep, in bytes (its content size for
 * a single-segment frame); `header` holds at least the frame header.
 * @throws VaultikError (DATA) for a header that is not a zstd frame's.
 */
export function frameWindowSize(header: Uint8Array, contentSize: number): number {
  if (header.length < 6 || header[0] !== 0x28 || header[1] !== 0xb5 || header[2] !== 0x2f || header[3] !== 0xfd) throw corrupt('not a zstd frame header');
  const singleSegment = (header[4]! >> 5) & 1;
  if (singleSegment) return contentSize;
  const wd = header[5]!;
  const base = 2 ** (10 + (wd >> 3));
  return base + (base / 8) * (wd & 7);
}

/**
 * Decompresses one frame fed in pieces, in steps of at most 1 MiB of output, never holding the
 * whole content: for chunks too large to decode into one buffer. The frame must declare its
 * content size, equal to `expectedSize` (checked as soon as the header is in); producing more
 * than that is an error at once, before the excess is written anywhere. zstd's own window
 * limit (128 MiB) bounds what a hostile header can make it allocate; `windowSize` says what
 * this frame asks for, so the caller can count it.
 */
export class FrameStream {
  private dctx: InstanceType<typeof zstd.DCtx> | undefined = idleStreams.pop() ?? new zstd.DCtx();
  private readonly out = Buffer.allocUnsafe(STREAM_OUT);
  private head: Buffer | undefined = Buffer.alloc(0);
  private produced = 0;
  /** ZSTD_decompressStream's last hint: 0 once the frame is complete. */
  private hint = 1;
  /** The window the frame asks for, once its header is in. */
  windowSize: number | undefined;

  constructor(private readonly expectedSize: number) {}

  /**
   * Feeds the next bytes of the frame; yields the content they complete, as views of one
   * reused buffer, each valid only until the generator is resumed. Once, when the header is
   * in, it yields an empty view before decompressing anything: `windowSize` is known then.
   * @throws VaultikError (DATA) for a corrupt frame, a wrong declared size, more content than
   *   declared, or bytes after the end of the frame.
   */
  *push(input: Uint8Array): Generator<Buffer> {
    if (this.head) {
      // Nothing is decompressed before the header is checked.
      this.head = Buffer.concat([this.head, input]);
      if (this.head.length < FRAME_HEADER_MAX) return;
      input = this.checkHeader();
      yield EMPTY;
    }
    yield* this.step(input);
  }

  /** Hands the decoder back for reuse (its window stays allocated for the next large frame). */
  close(): void {
    if (!this.dctx) return;
    this.dctx.reset(zstd.ResetDirective.sessionOnly);
    if (idleStreams.length < 4) idleStreams.push(this.dctx);
    this.dctx = undefined;
  }

  /**
   * The end of the frame's bytes: flushes what is left.
   * @throws VaultikError (DATA) when the frame is truncated or its content is not the expected size.
   */
  *end(): Generator<Buffer> {
    if (this.head) {
      const head = this.checkHeader();
      yield EMPTY;
      yield* this.step(head);
    }
    // Flush: the decoder may hold output it had no room for.
    while (this.hint !== 0) {
      const before = this.produced;
      yield* this.step(new Uint8Array(0));
      if (this.produced === before && this.hint !== 0) throw corrupt('truncated: the frame ends early');
    }
    if (this.produced !== this.expectedSize) throw corrupt(`decompressed to ${this.produced} bytes, expected ${this.expectedSize}`);
  }

  private checkHeader(): Buffer {
    const head = this.head!;
    this.head = undefined;
    let declared: number | null;
    try {
      declared = zstd.getFrameContentSize(head);
    } catch (err) {
      throw corrupt((err as Error).message, err);
    }
    if (declared === null) throw corrupt('no content size in the frame header');
    if (declared !== this.expectedSize) throw new VaultikError(`zstd frame holds ${declared} bytes, expected ${this.expectedSize}`, ExitCode.DATA);
    this.windowSize = frameWindowSize(head, declared);
    return head;
  }

  private *step(input: Uint8Array): Generator<Buffer> {
    let at = 0;
    for (;;) {
      if (this.hint === 0) {
        if (at < input.length) throw corrupt(`${input.length - at} bytes after the end of the frame`);
        return;
      }
      let r: [number, number, number];
      try {
        if (!this.dctx) throw new Error('FrameStream used after close()');
        r = this.dctx.decompressStream(this.out, input.subarray(at));
      } catch (err) {
        throw corrupt((err as Error).message, err);
      }
      const [hint, n, used] = r;
      this.hint = hint;
      at += used;
      this.produced += n;
      if (this.produced > this.expectedSize) throw corrupt(`decompresses to more than the ${this.expectedSize} bytes declared`);
      if (n > 0) yield this.out.subarray(0, n);
      // Done with this input once it is consumed and the output had room (nothing held back).
      if (at >= input.length && n < this.out.length) return;
    }
  }
}
