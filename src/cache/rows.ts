/** Row conversions shared by the state cache's point lookups and its ordered cursor. */
import type { ChunkLocation } from '../snapshot/types.js';
import type { CachedFile } from './cache.js';

export type Row = Record<string, unknown>;

/** Inode and device numbers are unsigned 64-bit; SQLite integers are signed. */
export const toI64 = (n: bigint): bigint => BigInt.asIntN(64, n);
export const fromI64 = (n: bigint): bigint => BigInt.asUintN(64, n);

/** A `chunks` row (id, blob, offset, length, plain_length) as a location. */
export function rowToLocation(r: Row): ChunkLocation {
  return {
    id: r.id as Buffer,
    blob: (r.blob as Buffer).toString('hex'),
    offset: Number(r.offset),
    length: Number(r.length),
    plainLength: Number(r.plain_length),
  };
}

/**
 * A `files` row, read with safeIntegers, as a CachedFile; with `first`, the location of its
 * first chunk when the row was joined with it (columns id, blob, offset, length, plain_length).
 */
export function rowToCachedFile(r: Row): { file: CachedFile; first: ChunkLocation | undefined } {
  const blob = r.chunks as Buffer;
  const chunks: Buffer[] = [];
  // The row's buffer is its own (better-sqlite3 copies every BLOB): views need no copy.
  for (let i = 0; i + 32 <= blob.length; i += 32) chunks.push(blob.subarray(i, i + 32));
  const file: CachedFile = {
    size: Number(r.size),
    mtimeNs: r.mtime_ns as bigint,
    ctimeNs: r.ctime_ns as bigint,
    ino: fromI64(r.inode as bigint),
    dev: fromI64(r.device as bigint),
    mode: Number(r.mode),
    chunks,
    run: r.run as string,
  };
  if (Buffer.isBuffer(r.blob0) && r.blob0.length === 32) file.blob0 = r.blob0;
  const first = r.id !== undefined && r.id !== null && chunks.length > 0 ? rowToLocation(r) : undefined;
  return { file, first };
}
