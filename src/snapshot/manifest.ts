/**
 * The keyless manifest: `<index_prefix><id>.<sha256>.manifest.json.zst`, a zstd-compressed JSON object
 *
 *     { "version": 1, "snapshot": "<id>", "host": "<host>", "time": "<ISO 8601 UTC>",
 *       "blobs": [["<sha256 hex>", <size>], ...] }
 *
 * listing the blobs a snapshot references, sorted by hash, without duplicates. It lets `verify`
 * (and anyone without the key) check that a snapshot's blobs exist and are intact, and lets
 * prune cross-check the encrypted metadata. It deliberately holds no path, name or file size:
 * only blob hashes and sizes, which are public anyway as object names and object sizes. `time`
 * is the start time in the id, repeated for readability.
 */
import { createHash } from 'node:crypto';
import zstdBinding from 'zstd-napi/binding.js';
import { compressFrame, decompressFrame } from '../compress/zstd.js';
import { ExitCode, VaultikError } from '../errors.js';
import { isStorageError, type Storage } from '../storage/types.js';
import { tryParseSnapshotId } from './id.js';
import { isHexHash } from './sql.js';
import type { BlobRef } from './types.js';

export const MANIFEST_VERSION = 1;

/** Manifests larger than this (decompressed) are refused: 1M blobs is ~80 MB of JSON. */
const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;

export interface Manifest {
  version: number;
  snapshot: string;
  host: string;
  time: Date;
  /** Sorted by hash, unique. */
  blobs: BlobRef[];
}

/**
 * Serializes a manifest: JSON, one zstd frame. Blobs are sorted and deduplicated here.
 * @throws VaultikError when the id is malformed or a blob hash or size is invalid (a bug).
 */
export function buildManifest(snapshotId: string, blobs: Iterable<BlobRef>): Buffer {
  const parsed = tryParseSnapshotId(snapshotId);
  if (!parsed) throw new VaultikError(`manifest: malformed snapshot id '${snapshotId}'`);
  const byHash = new Map<string, number>();
  for (const b of blobs) {
    if (!isHexHash(b.hash) || !Number.isSafeInteger(b.size) || b.size <= 0) {
      throw new VaultikError(`manifest: invalid blob ${JSON.stringify(b)}`);
    }
    const prev = byHash.get(b.hash);
    if (prev !== undefined && prev !== b.size) throw new VaultikError(`manifest: blob ${b.hash} listed with two sizes`);
    byHash.set(b.hash, b.size);
  }
  const sorted = [...byHash].sort(([a], [b]) => (a < b ? -1 : 1));
  const json = JSON.stringify({
    version: MANIFEST_VERSION,
    snapshot: snapshotId,
    host: parsed.host,
    time: parsed.time.toISOString(),
    blobs: sorted,
  });
  return compressFrame(Buffer.from(json, 'utf8'), 19);
}

function bad(what: string, label: string): VaultikError {
  return new VaultikError(`manifest ${label}: ${what}`, ExitCode.DATA);
}

/**
 * Parses and strictly validates a manifest: exactly the keys above, version 1, a well-formed
 * id whose host and time match `host` and `time`, blobs as [lowercase hex SHA-256, positive
 * integer size] pairs, strictly sorted by hash. `expectedId`, when given, must match.
 * @throws VaultikError (DATA) naming the first problem.
 */
export function parseManifest(data: Buffer, expectedId?: string): Manifest {
  const label = expectedId ?? '(unnamed)';
  let json: string;
  try {
    // Check the declared size before decompressing: a keyless object is anyone's input, and a
    // tiny frame can claim gigabytes.
    const declared = zstdBinding.getFrameContentSize(data);
    if (declared === null || declared > MAX_MANIFEST_BYTES) throw bad('missing or excessive content size', label);
    const plain = decompressFrame(data, declared);
    json = new TextDecoder('utf-8', { fatal: true }).decode(plain);
  } catch (err) {
    if (err instanceof VaultikError && err.message.startsWith('manifest')) throw err;
    throw new VaultikError(`manifest ${label}: not a zstd-compressed UTF-8 document: ${(err as Error).message}`, ExitCode.DATA, { cause: err });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new VaultikError(`manifest ${label}: invalid JSON: ${(err as Error).message}`, ExitCode.DATA, { cause: err });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('not a JSON object', label);
  const o = doc as Record<string, unknown>;
  const keys = Object.keys(o).sort().join(',');
  if (keys !== 'blobs,host,snapshot,time,version') throw bad(`unexpected keys (${keys}), expected blobs, host, snapshot, time, version`, label);
  if (o.version !== MANIFEST_VERSION) throw bad(`unsupported version ${JSON.stringify(o.version)}`, label);
  if (typeof o.snapshot !== 'string') throw bad('"snapshot" is not a string', label);
  const parsed = tryParseSnapshotId(o.snapshot);
  if (!parsed) throw bad(`malformed snapshot id ${JSON.stringify(o.snapshot)}`, label);
  if (expectedId !== undefined && o.snapshot !== expectedId) throw bad(`describes snapshot '${o.snapshot}'`, label);
  if (o.host !== parsed.host) throw bad(`"host" ${JSON.stringify(o.host)} does not match the snapshot id`, label);
  if (o.time !== parsed.time.toISOString()) throw bad(`"time" ${JSON.stringify(o.time)} does not match the snapshot id`, label);
  if (!Array.isArray(o.blobs)) throw bad('"blobs" is not an array', label);
  const blobs: BlobRef[] = [];
  let prev = '';
  for (const [i, b] of (o.blobs as unknown[]).entries()) {
    if (!Array.isArray(b) || b.length !== 2) throw bad(`blobs[${i}] is not a [hash, size] pair`, label);
    const [hash, size] = b as [unknown, unknown];
    if (!isHexHash(hash)) throw bad(`blobs[${i}] hash is not a lowercase hex SHA-256`, label);
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size <= 0) throw bad(`blobs[${i}] size is not a positive integer`, label);
    if (hash <= prev) throw bad(`blobs[${i}] is out of order or duplicated`, label);
    prev = hash;
    blobs.push({ hash, size });
  }
  return { version: MANIFEST_VERSION, snapshot: o.snapshot, host: parsed.host, time: parsed.time, blobs };
}

/** Refuse to download manifests larger than this (compressed): see MAX_MANIFEST_BYTES. */
const MAX_MANIFEST_OBJECT = 64 * 1024 * 1024;

/**
 * Downloads a whole keyless object (anyone's input) into memory, refusing more than `maxBytes`.
 * @returns undefined when it does not exist.
 * @throws what `tooLarge` makes past `maxBytes`; StorageError from the store.
 */
export async function readSmallObject(
  storage: Storage,
  key: string,
  maxBytes: number,
  tooLarge: () => Error,
  signal?: AbortSignal,
): Promise<Buffer | undefined> {
  let body;
  try {
    body = await storage.get(key, undefined, { signal });
  } catch (err) {
    if (isStorageError(err, 'not-found')) return undefined;
    throw err;
  }
  const parts: Buffer[] = [];
  let n = 0;
  for await (const b of body as AsyncIterable<Buffer>) {
    n += b.length;
    if (n > maxBytes) {
      body.destroy();
      throw tooLarge();
    }
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/**
 * Downloads and parses a manifest of snapshot `id` (keyless), checking that its bytes hash to its
 * name (a replaced manifest is refused).
 * @returns undefined when the manifest object does not exist: prune, verify and the snapshot
 *   listing each report a missing manifest in their own way.
 * @throws VaultikError (DATA) when it is invalid (see parseManifest) or not its name's hash;
 *   StorageError from the store.
 */
export async function readManifest(
  storage: Storage,
  object: { key: string; sha256: string },
  id: string,
  signal?: AbortSignal,
): Promise<Manifest | undefined> {
  const bytes = await readSmallObject(storage, object.key, MAX_MANIFEST_OBJECT, () => bad('object too large', id), signal);
  if (bytes === undefined) return undefined;
  if (createHash('sha256').update(bytes).digest('hex') !== object.sha256) throw bad(`${object.key} does not hash to its name (replaced or damaged)`, id);
  return parseManifest(bytes, id);
}

/**
 * How two blob lists (each sorted by hash) differ, for messages: undefined when they are equal,
 * else a summary naming up to three differences of each kind.
 */
export function blobListDifference(metadata: readonly BlobRef[], manifest: readonly BlobRef[]): string | undefined {
  const onlyMeta: string[] = [];
  const onlyManifest: string[] = [];
  const sizes: string[] = [];
  let i = 0;
  let j = 0;
  while (i < metadata.length || j < manifest.length) {
    const a = metadata[i];
    const b = manifest[j];
    if (a && (!b || a.hash < b.hash)) {
      onlyMeta.push(a.hash);
      i++;
    } else if (b && (!a || b.hash < a.hash)) {
      onlyManifest.push(b.hash);
      j++;
    } else if (a && b) {
      if (a.size !== b.size) sizes.push(`${a.hash} (${a.size} vs ${b.size} bytes)`);
      i++;
      j++;
    }
  }
  const parts: string[] = [];
  const few = (list: string[]): string => list.slice(0, 3).join(', ') + (list.length > 3 ? `, … (${list.length} in all)` : '');
  if (onlyMeta.length > 0) parts.push(`${onlyMeta.length} blob(s) in the metadata but not in the manifest: ${few(onlyMeta)}`);
  if (onlyManifest.length > 0) parts.push(`${onlyManifest.length} blob(s) in the manifest but not in the metadata: ${few(onlyManifest)}`);
  if (sizes.length > 0) parts.push(`${sizes.length} blob size(s) differ: ${few(sizes)}`);
  return parts.length > 0 ? parts.join('; ') : undefined;
}
