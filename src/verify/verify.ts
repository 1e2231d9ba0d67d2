/**
 * `vaultik verify`: checks a store's integrity.
 *
 * Keyless (the default), from what anyone with read access can check (docs/DESIGN.md promise 3):
 * - every blob's SHA-256 equals its name (each object is streamed through the hash: memory stays
 *   bounded by the number of blobs checked at once, never by blob size);
 * - every blob named by a snapshot's manifest exists, with the size the manifest records;
 * - every snapshot has a valid manifest;
 * - with allowed signers (`--signers`), every snapshot has a valid signature (its root and
 *   manifest, by a key allowed for its host: src/snapshot/signatures.ts).
 * It reports missing and corrupt blobs as problems, and unreferenced blobs (prune's garbage, or
 * a backup in flight), orphan manifests and foreign objects as information.
 * `sample` checks the content of a random subset of the blobs; existence and sizes of all are
 * still checked (they come from the listing).
 *
 * Deep (with the key), in addition: decrypts every snapshot's root and each distinct shard once
 * (however many snapshots share it), checks that each manifest lists exactly the blobs and shards
 * its snapshot references, and decrypts every referenced chunk (only the STREAM segments holding
 * chunks, fetched in merged ranges), checking each chunk's SHA-256 against the metadata. Each
 * distinct chunk location is checked once: the shards' chunk lists are merged in (blob, offset)
 * order.
 */
import { tmpdir } from 'node:os';
import { blobHashOf, blobKey, chunkFromFetched, storageReadRange, streamChunk } from '../blob/index.js';
import { AgeError, openAgeFile, segmentRange, type AgeFileInfo, type Identity } from '../crypto/index.js';
import { ExitCode, VaultikError, errorMessage } from '../errors.js';
import { scanIndex, type SnapshotListing } from '../snapshot/list.js';
import { blobListDifference, readManifest } from '../snapshot/manifest.js';
import { openShard, readRoot } from '../snapshot/open.js';
import type { AllowedSigner } from '../sign/index.js';
import { checkSnapshotSignatures } from '../snapshot/signatures.js';
import type { MetadataReader } from '../snapshot/reader.js';
import { shardRefKey, snapshotReferences } from '../snapshot/references.js';
import type { BlobRef, ChunkLocation, ShardRef } from '../snapshot/types.js';
import { hashObject } from '../storage/streams.js';
import { isStorageError, type Storage } from '../storage/types.js';
import { TaskWindow } from '../util/concurrency.js';

/** Ciphertext fetched at once when checking neighbouring chunks of a blob. */
const MAX_FETCH = 8 * 1024 * 1024;
/** Names listed in the report per category; more are only counted. */
const MAX_LISTED = 100;
/** Bad chunks reported one by one per blob; the rest are counted in one problem. */
const MAX_BAD_CHUNKS_PER_BLOB = 5;

export interface VerifyOptions {
  indexPrefix: string;
  /** Fraction of blobs whose content is checked, in (0, 1] (default 1: all). */
  sample?: number;
  /** Random source for sampling (tests make it deterministic). */
  random?: () => number;
  /** Blobs checked at once (default 4). */
  concurrency?: number;
  /** Deep verification with these identities; tmpDir receives decrypted metadata while it runs. */
  deep?: { identities: readonly Identity[]; tmpDir?: string };
  /** Check every snapshot's signature against these signers; each failure is a problem. */
  signers?: readonly AllowedSigner[];
  signal?: AbortSignal;
  onEvent?: (event: VerifyEvent) => void;
}

export type VerifyEvent =
  | { type: 'phase'; phase: 'index' | 'manifests' | 'metadata' | 'blobs' | 'chunks' }
  | { type: 'progress'; phase: 'blobs' | 'chunks'; done: number; bytes: number; total?: number }
  | { type: 'problem'; problem: VerifyProblem };

export type VerifyProblem =
  | { kind: 'corrupt-blob'; hash: string; message: string }
  | { kind: 'missing-blob'; hash: string; snapshots: string[] }
  | { kind: 'bad-manifest'; snapshot: string; message: string }
  | { kind: 'no-manifest'; snapshot: string }
  | { kind: 'bad-metadata'; snapshot: string; message: string }
  | { kind: 'manifest-mismatch'; snapshot: string; message: string }
  | { kind: 'bad-chunk'; hash: string; offset: number; message: string }
  | { kind: 'suspect'; snapshot: string; reasons: string[] }
  | { kind: 'bad-root'; snapshot: string; key: string; message: string }
  | { kind: 'signature'; snapshot: string; message: string };

export interface VerifyReport {
  deep: boolean;
  sample: number;
  snapshots: number;
  /** Blobs in the store. */
  blobs: { count: number; bytes: number };
  /** Blobs whose SHA-256 was checked. */
  hashed: { count: number; bytes: number };
  /** Distinct blobs referenced by the snapshots (manifests; and metadata when deep). */
  referenced: number;
  /** Blobs no snapshot references (prune's job, or a backup in flight): not a problem. */
  unreferenced: { count: number; bytes: number; first: string[] };
  /** Chunks decrypted and checked (deep). */
  chunks: { count: number; bytes: number };
  /** Manifests and signatures whose snapshot has no root. */
  orphanManifests: string[];
  /** With signers: snapshots whose signature is valid. */
  validSignatures?: number;
  unknownKeys: { count: number; first: string[] };
  problems: VerifyProblem[];
  durationMs: number;
}

/** One-line description of a problem, for text output. */
export function describeProblem(p: VerifyProblem): string {
  switch (p.kind) {
    case 'corrupt-blob':
      return `corrupt blob ${p.hash}: ${p.message}`;
    case 'missing-blob':
      return `missing blob ${p.hash}, needed by ${p.snapshots.join(', ') || 'a snapshot'}`;
    case 'bad-manifest':
      return `snapshot ${p.snapshot}: invalid manifest: ${p.message}`;
    case 'no-manifest':
      return `snapshot ${p.snapshot}: no manifest (its blobs cannot be checked without the key)`;
    case 'bad-metadata':
      return `snapshot ${p.snapshot}: unreadable metadata: ${p.message}`;
    case 'manifest-mismatch':
      return `snapshot ${p.snapshot}: the manifest does not match the metadata: ${p.message}`;
    case 'bad-chunk':
      return `blob ${p.hash}, chunk at offset ${p.offset}: ${p.message}`;
    case 'suspect':
      return `snapshot ${p.snapshot} is suspect: ${p.reasons.join('; ')}`;
    case 'bad-root':
      return `snapshot ${p.snapshot}: root ${p.key}: ${p.message}`;
    case 'signature':
      return `snapshot ${p.snapshot}: ${p.message}`;
  }
}

/**
 * Verifies the store (see the file comment). Problems are collected in the report, not thrown.
 * @throws VaultikError NO_IDENTITY (deep, when the key opens no snapshot); UsageError-like
 *   RangeError for a bad sample; StorageError when the store fails (not for a missing object);
 *   the abort reason.
 */
export async function verifyStore(storage: Storage, options: VerifyOptions): Promise<VerifyReport> {
  const started = Date.now();
  const sample = options.sample ?? 1;
  if (!(sample > 0 && sample <= 1)) throw new RangeError(`sample must be in (0, 1], got ${sample}`);
  const random = options.random ?? Math.random;
  const concurrency = Math.max(1, options.concurrency ?? 4);
  const emit = options.onEvent ?? ((): void => undefined);
  const problems: VerifyProblem[] = [];
  const problem = (p: VerifyProblem): void => {
    problems.push(p);
    emit({ type: 'problem', problem: p });
  };
  const unknown = { count: 0, first: [] as string[] };
  const addUnknown = (key: string): void => {
    if (unknown.count++ < MAX_LISTED) unknown.first.push(key);
  };

  emit({ type: 'phase', phase: 'index' });
  const index = await scanIndex(storage, options.indexPrefix);
  index.unknownKeys.forEach(addUnknown);
  let validSignatures: number | undefined;
  if (options.signers) {
    const statuses = await checkSnapshotSignatures(storage, index.snapshots, options.signers, options.signal ? { signal: options.signal } : {});
    validSignatures = 0;
    for (const s of index.snapshots) {
      const st = statuses.get(s.id)!;
      if (st.state === 'valid') validSignatures++;
      else problem({ kind: 'signature', snapshot: s.id, message: st.reason });
    }
  }

  // Referenced blobs: hash → recorded size (the first recorded; a disagreement is reported).
  const referenced = new Map<string, number>();
  emit({ type: 'phase', phase: 'manifests' });
  const manifests = new Map<string, { hash: string; size: number }[]>();
  for (const s of index.snapshots) {
    options.signal?.throwIfAborted();
    if (s.suspect.length > 0) problem({ kind: 'suspect', snapshot: s.id, reasons: s.suspect });
    // Each root must hash to its name: a replaced one is found without the key.
    for (const root of [s.root, ...s.otherRoots]) {
      const got = await hashObject(storage, root.key, options.signal);
      if (got === undefined) continue; // gone since the listing (a concurrent forget)
      if (got.hash !== root.sha256) problem({ kind: 'bad-root', snapshot: s.id, key: root.key, message: `its bytes hash to ${got.hash}: replaced or damaged` });
    }
    if (!s.hasManifest) {
      problem({ kind: 'no-manifest', snapshot: s.id });
      continue;
    }
    for (const object of s.manifests) {
      try {
        const m = await readManifest(storage, object, s.id, options.signal);
        if (!m) {
          problem({ kind: 'no-manifest', snapshot: s.id });
          continue;
        }
        for (const b of m.blobs) if (!referenced.has(b.hash)) referenced.set(b.hash, b.size);
        // Kept only when deep (compared with the metadata below); a keyless run drops it.
        if (options.deep && s.manifests.length === 1) manifests.set(s.id, m.blobs);
      } catch (err) {
        if (!(err instanceof VaultikError) || err.exitCode !== ExitCode.DATA) throw err;
        problem({ kind: 'bad-manifest', snapshot: s.id, message: err.message });
      }
    }
  }

  const readers: ShardOpened[] = [];
  try {
    if (options.deep) {
      emit({ type: 'phase', phase: 'metadata' });
      await openAll(storage, index.snapshots, options, readers, manifests, referenced, problem);
    }

    // Blobs: existence and size of all, content of the sample.
    emit({ type: 'phase', phase: 'blobs' });
    const present = new Map<string, number>();
    const sampled = sample < 1 ? new Set<string>() : undefined;
    const blobs = { count: 0, bytes: 0 };
    const hashed = { count: 0, bytes: 0 };
    const unreferenced = { count: 0, bytes: 0, first: [] as string[] };
    // Blobs hashed at once; the first failure is rethrown by add() or drain().
    const pool = new TaskWindow(concurrency);
    for await (const info of storage.list('blobs/')) {
      options.signal?.throwIfAborted();
      const hash = blobHashOf(info.key);
      if (hash === null) {
        addUnknown(info.key);
        continue;
      }
      blobs.count++;
      blobs.bytes += info.size;
      present.set(hash, info.size);
      const expected = referenced.get(hash);
      if (expected === undefined) {
        unreferenced.count++;
        unreferenced.bytes += info.size;
        if (unreferenced.first.length < MAX_LISTED) unreferenced.first.push(hash);
      } else if (expected !== info.size) {
        problem({ kind: 'corrupt-blob', hash, message: `${info.size} bytes stored, ${expected} recorded (truncated or replaced)` });
      }
      if (sampled && random() >= sample) continue;
      sampled?.add(hash);
      await pool.add(async () => {
        const result = await hashObject(storage, info.key, options.signal);
        if (result === undefined) {
          present.delete(hash); // deleted since the listing
          return;
        }
        hashed.count++;
        hashed.bytes += result.size;
        if (result.hash !== hash) problem({ kind: 'corrupt-blob', hash, message: `its content hashes to ${result.hash}` });
        emit({ type: 'progress', phase: 'blobs', done: hashed.count, bytes: hashed.bytes });
      });
    }
    await pool.drain();

    // Missing blobs, attributed to the snapshots that need them.
    const missing = [...referenced.keys()].filter((h) => !present.has(h)).sort();
    if (missing.length > 0) {
      const needs = await attributeMissing(storage, index.snapshots, new Set(missing), options, readers);
      for (const hash of missing) problem({ kind: 'missing-blob', hash, snapshots: needs.get(hash) ?? [] });
    }

    const chunks = { count: 0, bytes: 0 };
    if (options.deep && readers.length > 0) {
      emit({ type: 'phase', phase: 'chunks' });
      await checkChunks(storage, readers, present, sampled, options, chunks, problem, concurrency);
    }

    return {
      deep: options.deep !== undefined,
      sample,
      snapshots: index.snapshots.length,
      blobs,
      hashed,
      referenced: referenced.size,
      unreferenced,
      chunks,
      orphanManifests: [...index.orphanManifests, ...index.orphanSignatures].map((o) => o.key),
      ...(validSignatures !== undefined ? { validSignatures } : {}),
      unknownKeys: unknown,
      problems,
      durationMs: Date.now() - started,
    };
  } finally {
    for (const r of readers) r.reader.close();
  }
}

/** A shard open for the chunk check, and the snapshots that reference it. */
interface ShardOpened {
  ids: string[];
  reader: MetadataReader;
}

/**
 * Opens every snapshot's root (deep) and each distinct shard once, compares each snapshot's blobs
 * and shards with its manifest, and adds them to `referenced`.
 */
async function openAll(
  storage: Storage,
  snapshots: readonly SnapshotListing[],
  options: VerifyOptions,
  readers: ShardOpened[],
  manifests: Map<string, { hash: string; size: number }[]>,
  referenced: Map<string, number>,
  problem: (p: VerifyProblem) => void,
): Promise<void> {
  const deep = options.deep!;
  const tmpDir = deep.tmpDir ?? tmpdir();
  const opts = options.signal ? { signal: options.signal } : {};
  // Each distinct shard is opened once (shardRefKey: by everything its root says of it).
  const byKey = new Map<string, ShardOpened | Error>();
  for (const s of snapshots) {
    options.signal?.throwIfAborted();
    let refs;
    try {
      const root = await readRoot(storage, s, deep.identities, tmpDir, opts);
      const read: { ref: ShardRef; blobs: BlobRef[] }[] = [];
      for (const ref of root.shards) {
        const key = shardRefKey(ref);
        let opened = byKey.get(key);
        if (opened === undefined) {
          try {
            opened = { ids: [], reader: await openShard(storage, ref, deep.identities, tmpDir, opts) };
            readers.push(opened);
          } catch (err) {
            if (!(err instanceof VaultikError) || err.exitCode !== ExitCode.DATA) throw err;
            opened = err;
          }
          byKey.set(key, opened);
        }
        if (opened instanceof Error) throw opened;
        opened.ids.push(s.id);
        read.push({ ref, blobs: opened.reader.blobs() });
      }
      refs = snapshotReferences(root.info, read);
    } catch (err) {
      if (err instanceof VaultikError && err.exitCode === ExitCode.DATA) {
        problem({ kind: 'bad-metadata', snapshot: s.id, message: err.message });
        continue;
      }
      throw err;
    }
    for (const message of refs.problems) problem({ kind: 'bad-metadata', snapshot: s.id, message });
    const manifest = manifests.get(s.id);
    if (manifest) {
      const diff = blobListDifference(refs.blobs, manifest);
      if (diff !== undefined) problem({ kind: 'manifest-mismatch', snapshot: s.id, message: diff });
    }
    for (const b of refs.blobs) if (!referenced.has(b.hash)) referenced.set(b.hash, b.size);
  }
}

/** Which snapshots reference each missing blob: manifests (keyless), plus metadata when open. */
async function attributeMissing(
  storage: Storage,
  snapshots: readonly SnapshotListing[],
  missing: ReadonlySet<string>,
  options: VerifyOptions,
  readers: readonly ShardOpened[],
): Promise<Map<string, string[]>> {
  const needs = new Map<string, Set<string>>();
  const add = (hash: string, id: string): void => {
    if (!missing.has(hash)) return;
    const set = needs.get(hash) ?? new Set<string>();
    set.add(id);
    needs.set(hash, set);
  };
  for (const s of snapshots) {
    for (const object of s.manifests) {
      const m = await readManifest(storage, object, s.id, options.signal).catch(() => undefined);
      for (const b of m?.blobs ?? []) add(b.hash, s.id);
    }
  }
  for (const r of readers) for (const b of r.reader.blobs()) for (const id of r.ids) add(b.hash, id);
  return new Map([...needs].map(([h, ids]) => [h, [...ids].sort()]));
}

const chunkOrder = (a: ChunkLocation, b: ChunkLocation): number =>
  a.blob < b.blob ? -1 : a.blob > b.blob ? 1 : a.offset - b.offset || Buffer.compare(a.id, b.id) || a.length - b.length;

/**
 * Merges the readers' chunk lists (each in (blob, offset, id) order) into one list without
 * repeats, grouped by blob. k-way merge by linear scan of the heads: k is the number of
 * snapshots, small next to the number of chunks.
 */
function* chunksByBlob(readers: readonly MetadataReader[]): Generator<{ blob: string; chunks: ChunkLocation[] }> {
  const its = readers.map((r) => r.chunksByBlob()[Symbol.iterator]());
  const heads = its.map((it) => it.next());
  let group: { blob: string; chunks: ChunkLocation[] } | undefined;
  let prev: ChunkLocation | undefined;
  for (;;) {
    let best = -1;
    for (let i = 0; i < heads.length; i++) {
      const h = heads[i]!;
      if (!h.done && (best < 0 || chunkOrder(h.value, (heads[best] as IteratorYieldResult<ChunkLocation>).value) < 0)) best = i;
    }
    if (best < 0) break;
    const c = (heads[best] as IteratorYieldResult<ChunkLocation>).value;
    heads[best] = its[best]!.next();
    if (prev && chunkOrder(prev, c) === 0 && prev.plainLength === c.plainLength) continue;
    prev = c;
    if (!group || group.blob !== c.blob) {
      if (group) yield group;
      group = { blob: c.blob, chunks: [] };
    }
    group.chunks.push(c);
  }
  if (group) yield group;
}

/** Decrypts every referenced chunk of the (sampled, present) blobs and checks its SHA-256. */
async function checkChunks(
  storage: Storage,
  readers: readonly ShardOpened[],
  present: ReadonlyMap<string, number>,
  sampled: ReadonlySet<string> | undefined,
  options: VerifyOptions,
  totals: { count: number; bytes: number },
  problem: (p: VerifyProblem) => void,
  concurrency: number,
): Promise<void> {
  const identities = options.deep!.identities;
  const pool = new TaskWindow(concurrency);
  for (const group of chunksByBlob(readers.map((r) => r.reader))) {
    options.signal?.throwIfAborted();
    const size = present.get(group.blob);
    // Missing blobs are already reported; unsampled ones are skipped on purpose.
    if (size === undefined || (sampled && !sampled.has(group.blob))) continue;
    await pool.add(async () => {
      const bad = await checkBlobChunks(storage, group.blob, size, group.chunks, identities, options.signal, totals);
      for (const b of bad.slice(0, MAX_BAD_CHUNKS_PER_BLOB)) problem({ kind: 'bad-chunk', hash: group.blob, offset: b.offset, message: b.message });
      if (bad.length > MAX_BAD_CHUNKS_PER_BLOB) {
        problem({ kind: 'corrupt-blob', hash: group.blob, message: `${bad.length} of its ${group.chunks.length} referenced chunks fail their check` });
      }
      options.onEvent?.({ type: 'progress', phase: 'chunks', done: totals.count, bytes: totals.bytes });
    });
  }
  await pool.drain();
}

/**
 * Checks one blob's chunks: opens the age header once, then fetches runs of neighbouring chunks
 * (up to MAX_FETCH of ciphertext per request) and decodes each chunk against its id.
 * @returns the failures; a header that does not open fails every chunk at once.
 * @throws StorageError when the store fails; the abort reason.
 */
async function checkBlobChunks(
  storage: Storage,
  hash: string,
  size: number,
  chunks: readonly ChunkLocation[],
  identities: readonly Identity[],
  signal: AbortSignal | undefined,
  totals: { count: number; bytes: number },
): Promise<{ offset: number; message: string }[]> {
  const read = storageReadRange(storage, blobKey(hash), signal);
  let file: AgeFileInfo;
  try {
    file = await openAgeFile(read, size, identities);
  } catch (err) {
    if (err instanceof AgeError || isStorageError(err, 'not-found') || isStorageError(err, 'permanent')) {
      const why = err instanceof AgeError && err.kind === 'no-match' ? 'no identity opens this blob (encrypted to another key?)' : errorMessage(err);
      return chunks.map((c) => ({ offset: c.offset, message: why }));
    }
    throw err;
  }
  const bad: { offset: number; message: string }[] = [];
  let i = 0;
  while (i < chunks.length) {
    // A run: chunks whose segment ranges, merged, stay within MAX_FETCH.
    const plans: { chunk: ChunkLocation; start: number; end: number }[] = [];
    let runStart = -1;
    let runEnd = -1;
    for (; i < chunks.length; i++) {
      const c = chunks[i]!;
      if (c.plainLength > MAX_FETCH) {
        // A large chunk is checked as it streams in, never held whole; after the run so far.
        if (plans.length > 0) break;
        i++;
        const problem = await streamCheck(storage, hash, file, c, signal);
        if (problem === undefined) {
          totals.count++;
          totals.bytes += c.plainLength;
        } else {
          bad.push({ offset: c.offset, message: problem });
        }
        break;
      }
      let plan;
      try {
        plan = segmentRange(file.headerLength, file.ciphertextSize, c.offset, c.length);
      } catch (err) {
        if (plans.length > 0) break;
        bad.push({ offset: c.offset, message: errorMessage(err) });
        continue;
      }
      if (plans.length > 0 && (plan.cipherStart > runEnd || plan.cipherEnd - runStart > MAX_FETCH)) break;
      if (plans.length === 0) runStart = plan.cipherStart;
      runEnd = Math.max(runEnd, plan.cipherEnd);
      plans.push({ chunk: c, start: plan.cipherStart, end: plan.cipherEnd });
    }
    if (plans.length === 0) continue;
    let fetched: Buffer;
    try {
      fetched = await read(runStart, runEnd);
      if (fetched.length !== runEnd - runStart) throw new VaultikError(`short read: ${fetched.length} of ${runEnd - runStart} bytes`, ExitCode.DATA);
    } catch (err) {
      if (err instanceof VaultikError && !isStorageError(err, 'transient') && !isStorageError(err, 'permission')) {
        for (const p of plans) bad.push({ offset: p.chunk.offset, message: errorMessage(err) });
        continue;
      }
      throw err;
    }
    for (const p of plans) {
      try {
        chunkFromFetched(file, runStart, fetched, p.chunk, p.chunk.id);
        totals.count++;
        totals.bytes += p.chunk.plainLength;
      } catch (err) {
        bad.push({ offset: p.chunk.offset, message: errorMessage(err) });
      }
    }
  }
  return bad;
}

/**
 * Checks one chunk larger than MAX_FETCH without holding it (blob/reader.ts streamChunk).
 * @returns why it fails, or undefined when it checks out.
 * @throws StorageError when the store fails (not for a missing or short object); the abort reason.
 */
async function streamCheck(storage: Storage, hash: string, file: AgeFileInfo, c: ChunkLocation, signal: AbortSignal | undefined): Promise<string | undefined> {
  try {
    const plan = segmentRange(file.headerLength, file.ciphertextSize, c.offset, c.length);
    const stream = await storage.get(blobKey(hash), { offset: plan.cipherStart, length: plan.cipherEnd - plan.cipherStart }, signal ? { signal } : undefined);
    try {
      await streamChunk(file, stream as AsyncIterable<Buffer>, c, c.id, { onPiece: () => Promise.resolve(true) });
    } finally {
      stream.destroy();
    }
    return undefined;
  } catch (err) {
    if (err instanceof VaultikError && !isStorageError(err, 'transient') && !isStorageError(err, 'permission')) return errorMessage(err);
    throw err;
  }
}
