/**
 * The decode pool's worker thread (see decodePool.ts). It runs the main thread's own code on
 * shared memory: openSegments() decrypts a range in place, decodeChunkInto() decodes and
 * verifies each frame into the batch's output, fillNewFile() writes the chunks that are whole
 * small files.
 */
import { openSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { decodeChunkInto } from '../blob/reader.js';
import { SEGMENT_SIZE, openSegments } from '../crypto/index.js';
import { errorMessage } from '../errors.js';
import { CREATE_FILE, fillNewFile, procPath, type WholeFileMetadata } from '../fs/restoreWriter.js';
import { HOLE_MIN, isAllZero } from './files.js';

/**
 * A chunk that is the whole content of a small regular file, to create as
 * TargetWriter.writeWholeFile does: `/proc/self/fd/<dirFd>/<name>` with CREATE_FILE, so the name
 * is looked up in the directory the main thread opened and verified and never through a symlink,
 * then fillNewFile (an all-zero chunk of at least HOLE_MIN bytes becomes a hole). The caller
 * keeps `dirFd` open until the batch settles.
 */
export interface WholeFileWrite extends WholeFileMetadata {
  dirFd: number;
  /** The final path component, as a latin1 string (one char per byte: any name round-trips). */
  name: string;
}

/** Why a whole-file write failed (the file is not there). */
export interface WriteError {
  code: string | undefined;
  message: string;
}

/** Bytes of a SharedArrayBuffer: shared with the worker, never copied. */
export interface SharedView {
  sab: SharedArrayBuffer;
  offset: number;
  length: number;
}

/** Decrypt `data` in place (DecodePool.decrypt). */
export interface DecryptRequest {
  type: 'decrypt';
  seq: number;
  data: SharedView;
  key: Uint8Array;
  firstSegment: number;
  finalSegment: number;
}

/** Decode the frames of `data` into `out`, one after the other, and write the files asked for (DecodePool.run). */
export interface BatchRequest {
  type: 'batch';
  seq: number;
  data: SharedView;
  out: SharedView;
  /** The chunks' SHA-256 ids, 32 bytes each (packed: a Buffer id is often a view of Node's 8 KiB pool slab, which structured clone would copy whole). */
  ids: ArrayBuffer;
  offsets: number[];
  lengths: number[];
  plainLengths: number[];
  writes: (WholeFileWrite | null)[];
}

export type DecodeRequest = DecryptRequest | BatchRequest;

export type DecodeReply =
  /** decrypt: the segments that cannot be used, and why. */
  | { seq: number; bad: [number, string][] }
  /** A request that failed as a whole. */
  | { seq: number; error: string }
  /** batch, per job: why its chunk is not usable (or null); whether its file was written. */
  | { seq: number; errors: (string | null)[]; writes: (null | true | WriteError)[] };

const port = parentPort;
if (!port) throw new Error('decodeWorker runs as a worker thread of a DecodePool');

function view(v: SharedView): Buffer {
  return Buffer.from(v.sab, v.offset, v.length);
}

/**
 * Segment firstSegment + k's plaintext goes to k × SEGMENT_SIZE, never past where its
 * ciphertext started, and openSegments reads each segment whole before it is written: walking
 * forward never overwrites ciphertext still needed.
 */
function decrypt(m: DecryptRequest): DecodeReply {
  const data = view(m.data);
  const bad: [number, string][] = [];
  openSegments(
    m.key,
    m.firstSegment,
    data,
    m.finalSegment,
    (k, plain) => plain.copy(data, k * SEGMENT_SIZE),
    (index, why) => bad.push([index, why]),
  );
  return { seq: m.seq, bad };
}

function writeFile(w: WholeFileWrite, data: Buffer): true | WriteError {
  const p = procPath(w.dirFd, Buffer.from(w.name, 'latin1'));
  try {
    const fd = openSync(p, CREATE_FILE, w.mode & 0o777);
    fillNewFile(p, fd, data, data.length >= HOLE_MIN && isAllZero(data), w);
    return true;
  } catch (err) {
    return { code: (err as NodeJS.ErrnoException).code, message: errorMessage(err) };
  }
}

function batch(m: BatchRequest): DecodeReply {
  const src = view(m.data);
  const out = view(m.out);
  const ids = Buffer.from(m.ids);
  const n = m.plainLengths.length;
  const errors = new Array<string | null>(n).fill(null);
  const writes = new Array<null | true | WriteError>(n).fill(null);
  for (let k = 0, outAt = 0; k < n; outAt += m.plainLengths[k]!, k++) {
    const offset = m.offsets[k]!;
    const length = m.lengths[k]!;
    const slot = out.subarray(outAt, outAt + m.plainLengths[k]!);
    try {
      if (offset < 0 || offset + length > src.length) throw new Error(`frame at ${offset} lies outside the decrypted range`);
      decodeChunkInto(src.subarray(offset, offset + length), slot, ids.subarray(32 * k, 32 * k + 32));
    } catch (err) {
      errors[k] = errorMessage(err);
      continue;
    }
    const w = m.writes[k];
    if (w) writes[k] = writeFile(w, slot);
  }
  return { seq: m.seq, errors, writes };
}

port.on('message', (m: DecodeRequest) => {
  let reply: DecodeReply;
  try {
    reply = m.type === 'decrypt' ? decrypt(m) : batch(m);
  } catch (err) {
    reply = { seq: m.seq, error: errorMessage(err) };
  }
  port.postMessage(reply);
});
