/**
 * `vaultik prune`: deletes the blobs no snapshot references. Plan, then execute (like restic's
 * PlanPrune/Execute): planPrune decides and changes nothing, so a dry run prints the plan;
 * executePrune carries it out.
 *
 * What is kept (docs/DESIGN.md promise 5, "nothing lost"):
 * - Every blob referenced by ANY snapshot that exists (not only the latest). References come
 *   from each snapshot's decrypted metadata, cross-checked against its keyless manifest; any
 *   disagreement, or any snapshot whose metadata cannot be read, stops prune before it deletes
 *   anything: then we cannot know what that snapshot needs.
 * - Every object younger than the grace period (by the store's own timestamp): it may belong to
 *   a backup still running on some source, whose snapshot does not exist yet. A backup only
 *   references blobs of its source's latest snapshot or blobs it uploaded itself, so the grace
 *   must exceed the longest backup run (default 24 h).
 * - Objects prune does not recognise (reported, never touched), and all snapshot metadata:
 *   prune never deletes a snapshot. Snapshots whose blobs are missing are reported loudly.
 *
 * What is deleted: unreferenced blobs older than the grace, orphan manifests (a manifest whose
 * metadata does not exist: a backup that died between the two writes, or an interrupted forget)
 * older than the grace, and incomplete multipart uploads older than the grace when the store
 * can list them.
 *
 * Races: executePrune lists the index again just before deleting. A snapshot that appeared after
 * the plan (a backup that finished meanwhile) is read, and its blobs and manifest are spared.
 *
 * Interruptions: deletes go in batches of 1000 keys; every key deleted is garbage whatever
 * happens next, so an interrupted prune leaves a consistent store and rerunning it finishes
 * the job.
 */
import { tmpdir } from 'node:os';
import { blobHashOf, blobKey } from '../blob/key.js';
import type { Identity } from '../crypto/index.js';
import { ExitCode, VaultikError } from '../errors.js';
import type { AllowedSigner } from '../sign/index.js';
import { parseIndexName } from '../snapshot/id.js';
import { checkSnapshotSignatures } from '../snapshot/signatures.js';
import { scanIndex, type IndexObject, type SnapshotListing } from '../snapshot/list.js';
import { blobListDifference, readManifest, type Manifest } from '../snapshot/manifest.js';
import type { BlobRef } from '../snapshot/types.js';
import { DeleteRefusedError, type ObjectInfo, type Storage } from '../storage/types.js';
import { DELETE_BATCH, deleteInBatches } from './forget.js';
import type { IncompleteUpload, MultipartJanitor } from './janitor.js';
import { ShardBlobs, forEachLimited, readMetadataBlobs, readSnapshotReferences } from './snapshots.js';

export const DEFAULT_GRACE_MS = 24 * 3600 * 1000;
/** Unknown keys listed by name in a plan; more are only counted. */
const MAX_LISTED = 100;

export interface PruneOptions {
  indexPrefix: string;
  /** Identities that decrypt the snapshots' metadata (VAULTIK_PRIVATE_KEY). */
  identities: readonly Identity[];
  /** Objects younger than this are never deleted (default 24 h). */
  graceMs?: number;
  /** The clock (tests inject one); compared with the store's object timestamps. */
  now?: () => Date;
  /** Where decrypted metadata is written while it is read (default os.tmpdir()). */
  tmpDir?: string;
  /** Snapshots decrypted at once (default 4). */
  concurrency?: number;
  /** Keys per delete request (default and maximum 1000, S3's limit; tests use fewer). */
  deleteBatch?: number;
  /** Incomplete multipart uploads are listed and aborted through this, when given. */
  janitor?: MultipartJanitor;
  /**
   * Snapshot ids to treat as already gone: a dry run of `prune --keep-latest` plans as if its
   * forget had run. Their metadata and manifests are neither read nor deleted here.
   */
  assumeForgotten?: ReadonlySet<string>;
  /**
   * Check snapshot signatures against these signers and note the snapshots without a valid one.
   * Their blobs are kept all the same: a forged snapshot can only make prune keep more.
   */
  signers?: readonly AllowedSigner[];
  signal?: AbortSignal;
  onEvent?: (event: PruneEvent) => void;
}

export type PruneEvent =
  | { type: 'phase'; phase: 'index' | 'snapshots' | 'blobs' | 'uploads' | 'recheck' | 'delete-blobs' | 'delete-manifests' | 'abort-uploads' }
  | { type: 'snapshot-read'; id: string; done: number; total: number }
  | { type: 'blobs-listed'; count: number }
  | { type: 'deleted'; what: 'blobs' | 'manifests' | 'uploads'; done: number; total: number }
  | { type: 'warning'; message: string };

export interface CountBytes {
  count: number;
  bytes: number;
}

export interface PrunePlan {
  indexPrefix: string;
  /** When the plan was made, and the grace cutoff: only objects at or before it are deleted. */
  createdAt: Date;
  graceMs: number;
  cutoff: Date;
  /** Ids of the snapshots whose references were read (assumeForgotten excluded). */
  snapshots: string[];
  /** Distinct blobs referenced by those snapshots. */
  referenced: CountBytes;
  /** Blobs in the store that are referenced: kept. */
  keep: CountBytes;
  /** Unreferenced blobs younger than the grace: kept, perhaps a backup in flight. */
  keepYoung: CountBytes;
  /** Unreferenced blobs older than the grace: deleted. */
  deleteBlobs: ObjectInfo[];
  deleteBlobBytes: number;
  /** Manifests without metadata, older than the grace: deleted. */
  deleteManifests: ObjectInfo[];
  /** Manifests without metadata, younger than the grace: kept. */
  keepYoungManifests: number;
  /** Incomplete multipart uploads older than the grace: aborted. */
  abortUploads: IncompleteUpload[];
  /** Snapshots that reference blobs the store does not hold (damaged; never deleted here). */
  damaged: { snapshot: string; missing: string[] }[];
  /** Referenced blobs whose stored size differs from the recorded one (corrupt). */
  sizeMismatches: { hash: string; expected: number; actual: number }[];
  /** Snapshots without a manifest (not cross-checked; their metadata is authoritative). */
  withoutManifest: string[];
  /** Keys under blobs/ or the index prefix that are not vaultik's: never touched. */
  unknownKeys: { count: number; first: string[] };
  /** Problems that make prune exit non-zero (damaged snapshots, corrupt sizes, missing manifests). */
  warnings: string[];
  /** Informational notes (no effect on the exit code). */
  notes: string[];
}

export interface PruneResult {
  deletedBlobs: number;
  freedBytes: number;
  deletedManifests: number;
  abortedUploads: number;
  /** Blobs of the plan spared because a snapshot that appeared since references them. */
  sparedBlobs: number;
  /** Snapshots found by the recheck that did not exist when the plan was made. */
  newSnapshots: string[];
  durationMs: number;
  warnings: string[];
}

/**
 * Raised when prune refuses to delete anything because it cannot trust what the snapshots
 * reference. Exit code DATA.
 */
export class PruneRefusedError extends VaultikError {
  constructor(readonly problems: string[]) {
    super(
      `prune stopped, nothing was deleted: ${problems.length} snapshot(s) cannot be trusted:\n  ${problems.join('\n  ')}\n` +
        'Run `vaultik verify --deep` to investigate; `vaultik forget <id>` removes a snapshot you do not need.',
      ExitCode.DATA,
    );
    this.name = 'PruneRefusedError';
  }
}

interface References {
  /** hash → recorded stored size, over every snapshot read. */
  blobs: Map<string, number>;
  withoutManifest: string[];
  /** host → the distinct source-dir sets of its snapshots (JSON), to spot shared host names. */
  sourcesByHost: Map<string, Set<string>>;
}

/**
 * Reads what `ids` reference: every snapshot's metadata blob list, cross-checked against its
 * manifest. Collects every untrustworthy snapshot before throwing.
 * @throws VaultikError NO_IDENTITY at once when the key does not open a snapshot;
 *   PruneRefusedError when any snapshot's metadata is unreadable or disagrees with its manifest;
 *   StorageError from the store.
 */
async function readReferences(storage: Storage, snapshots: readonly SnapshotListing[], options: PruneOptions, into: References): Promise<void> {
  const tmpDir = options.tmpDir ?? tmpdir();
  const problems: string[] = [];
  let done = 0;
  const shards = new ShardBlobs(storage, options.identities, tmpDir, options.signal);
  const readRootRefs = async (s: SnapshotListing, root: IndexObject): Promise<{ blobs: BlobRef[]; missingShards: string[] } | undefined> => {
    try {
      const refs = await readSnapshotReferences(storage, { id: s.id, root }, options.identities, tmpDir, options.signal, shards);
      const sources = into.sourcesByHost.get(s.host) ?? new Set<string>();
      sources.add(JSON.stringify([...refs.sourceDirs].sort()));
      into.sourcesByHost.set(s.host, sources);
      return refs;
    } catch (err) {
      if (err instanceof VaultikError && err.exitCode === ExitCode.DATA) {
        problems.push(`${s.id}: metadata unreadable${s.otherRoots.length > 0 ? ` (${root.key})` : ''}: ${err.message}`);
        return undefined;
      }
      if (err instanceof VaultikError && err.exitCode === ExitCode.NO_IDENTITY) {
        throw new VaultikError(`${err.message}: the private key does not open this store's snapshots; nothing was deleted`, ExitCode.NO_IDENTITY, { cause: err });
      }
      throw err;
    }
  };
  const readManifestOf = async (s: SnapshotListing, object: IndexObject): Promise<Manifest | null> => {
    try {
      return (await readManifest(storage, object, s.id, options.signal)) ?? null;
    } catch (err) {
      if (err instanceof VaultikError && err.exitCode === ExitCode.DATA) {
        problems.push(`${s.id}: manifest unreadable: ${err.message}`);
        return null;
      }
      throw err;
    }
  };
  await forEachLimited(snapshots, options.concurrency ?? 4, async (s) => {
    if (s.otherRoots.length > 0 || s.manifests.length > 1) {
      // Someone else wrote objects under this id: keep what every one of them references (forging
      // can only add), and refuse if any is unreadable — the operator forgets the id explicitly.
      for (const root of [s.root, ...s.otherRoots]) {
        const refs = await readRootRefs(s, root);
        for (const b of refs?.blobs ?? []) into.blobs.set(b.hash, b.size);
      }
      for (const object of s.manifests) {
        for (const b of (await readManifestOf(s, object))?.blobs ?? []) into.blobs.set(b.hash, b.size);
      }
      options.onEvent?.({ type: 'snapshot-read', id: s.id, done: ++done, total: snapshots.length });
      return;
    }
    const refs = await readRootRefs(s, s.root);
    if (!refs) return;
    let blobs = refs.blobs;
    const { missingShards } = refs;
    const manifest = s.manifests[0] ? await readManifestOf(s, s.manifests[0]) : undefined;
    if (manifest === null) return;
    if (missingShards.length > 0) {
      // A shard is gone: the data blobs only it references are unknown. The manifest still
      // names them; trust it when it holds everything the readable metadata references, keep
      // all it lists, and let the missing shard be reported as a missing blob (damaged).
      if (manifest === undefined) {
        problems.push(`${s.id}: metadata unreadable: shard(s) ${missingShards.join(', ')} missing, and no manifest`);
        return;
      }
      const listed = new Map(manifest.blobs.map((b) => [b.hash, b.size]));
      const unlisted = blobs.filter((b) => listed.get(b.hash) !== b.size);
      if (unlisted.length > 0) {
        problems.push(`${s.id}: manifest disagrees with the metadata: ${unlisted.length} blob(s) of its readable shards not in the manifest`);
        return;
      }
      blobs = manifest.blobs;
    } else if (manifest === undefined) {
      into.withoutManifest.push(s.id);
    } else {
      const diff = blobListDifference(blobs, manifest.blobs);
      if (diff !== undefined) {
        problems.push(`${s.id}: manifest disagrees with the metadata: ${diff}`);
        return;
      }
    }
    for (const b of blobs) into.blobs.set(b.hash, b.size);
    options.onEvent?.({ type: 'snapshot-read', id: s.id, done: ++done, total: snapshots.length });
  });
  if (problems.length > 0) throw new PruneRefusedError(problems.sort());
}

/**
 * Makes a prune plan; changes nothing in the store.
 * @throws VaultikError NO_IDENTITY (wrong key: nothing can be deleted safely); PruneRefusedError
 *   (DATA) when any snapshot cannot be trusted; StorageError from the store; the abort reason.
 */
export async function planPrune(storage: Storage, options: PruneOptions): Promise<PrunePlan> {
  const now = (options.now ?? (() => new Date()))();
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  if (!Number.isSafeInteger(graceMs) || graceMs < 0) throw new RangeError(`invalid grace period ${graceMs} ms`);
  const cutoff = new Date(now.getTime() - graceMs);
  const young = (info: { lastModified: Date }): boolean => info.lastModified.getTime() > cutoff.getTime();
  const emit = options.onEvent ?? ((): void => undefined);
  const warnings: string[] = [];
  const notes: string[] = [];
  const unknown: string[] = [];
  let unknownCount = 0;
  const addUnknown = (key: string): void => {
    if (unknownCount++ < MAX_LISTED) unknown.push(key);
  };
  const forgotten = options.assumeForgotten ?? new Set<string>();

  // 1. Snapshots first, blobs second: a blob uploaded after this listing is young, so the
  //    order never exposes a blob of a snapshot we did not read.
  emit({ type: 'phase', phase: 'index' });
  const index = await scanIndex(storage, options.indexPrefix);
  if (index.legacyRoots.length > 0) {
    // Their blobs would look unreferenced: deleting them would destroy those snapshots.
    throw new VaultikError(
      `prune stopped, nothing was deleted: ${index.legacyRoots.length} snapshot root(s) named as vaultik 0.2.0 named them (${index.legacyRoots[0]}${index.legacyRoots.length > 1 ? ', …' : ''}), ` +
        'which this version does not read; prune would take their blobs for garbage. Restore what you need from them with vaultik 0.2.0, or keep this store for it and start a new prefix.',
      ExitCode.DATA,
    );
  }
  index.unknownKeys.forEach(addUnknown);
  const snapshots = index.snapshots.filter((s) => !forgotten.has(s.id));

  emit({ type: 'phase', phase: 'snapshots' });
  const refs: References = { blobs: new Map(), withoutManifest: [], sourcesByHost: new Map() };
  await readReferences(storage, snapshots, options, refs);
  for (const [host, sets] of refs.sourcesByHost) {
    if (sets.size > 1) {
      notes.push(
        `host '${host}' has snapshots of ${sets.size} different sets of source directories: forget keeps only the newest snapshot ` +
          'per host name, and a source whose latest snapshot is forgotten may then reference pruned blobs; give each config its own `hostname:`',
      );
    }
  }
  for (const id of refs.withoutManifest.sort()) {
    warnings.push(`snapshot ${id} has no manifest: keyless verify cannot check it (its metadata was used)`);
  }
  let referencedBytes = 0;
  for (const size of refs.blobs.values()) referencedBytes += size;
  if (options.signers) {
    const statuses = await checkSnapshotSignatures(storage, snapshots, options.signers, options.signal ? { signal: options.signal } : {});
    for (const s of snapshots) {
      const st = statuses.get(s.id);
      if (st && st.state !== 'valid') notes.push(`snapshot ${s.id}: ${st.reason}; its blobs are kept like any snapshot's (\`vaultik forget --signers\` treats it as suspect)`);
    }
  }

  // 2. Orphan manifests and signatures (their snapshot has no root), by their own timestamps.
  const deleteManifests: ObjectInfo[] = [];
  let keepYoungManifests = 0;
  for (const info of [...index.orphanManifests, ...index.orphanSignatures]) {
    if (forgotten.has(parseIndexName(info.key.slice(options.indexPrefix.length))?.id ?? '')) continue;
    if (young(info)) keepYoungManifests++;
    else deleteManifests.push({ key: info.key, size: info.size, lastModified: info.lastModified });
  }

  // 3. Blobs.
  emit({ type: 'phase', phase: 'blobs' });
  const unseen = new Set(refs.blobs.keys());
  const keep: CountBytes = { count: 0, bytes: 0 };
  const keepYoung: CountBytes = { count: 0, bytes: 0 };
  const deleteBlobs: ObjectInfo[] = [];
  let deleteBlobBytes = 0;
  const sizeMismatches: PrunePlan['sizeMismatches'] = [];
  let listed = 0;
  for await (const info of storage.list('blobs/')) {
    if (++listed % 1000 === 0) {
      options.signal?.throwIfAborted();
      emit({ type: 'blobs-listed', count: listed });
    }
    const hash = blobHashOf(info.key);
    if (hash === null) {
      addUnknown(info.key);
      continue;
    }
    const expected = refs.blobs.get(hash);
    if (expected !== undefined) {
      unseen.delete(hash);
      keep.count++;
      keep.bytes += info.size;
      if (expected !== info.size) sizeMismatches.push({ hash, expected, actual: info.size });
    } else if (young(info)) {
      keepYoung.count++;
      keepYoung.bytes += info.size;
    } else {
      deleteBlobs.push({ key: info.key, size: info.size, lastModified: info.lastModified });
      deleteBlobBytes += info.size;
    }
  }
  emit({ type: 'blobs-listed', count: listed });
  for (const m of sizeMismatches) {
    warnings.push(`blob ${m.hash} has ${m.actual} bytes, its snapshots record ${m.expected}: it is corrupt (kept; run vaultik verify)`);
  }

  // 4. Missing blobs: attribute them to snapshots (a second, keyless pass over the manifests,
  //    which agree with the metadata; metadata for those without one). Rare, so not kept in memory.
  const damaged: PrunePlan['damaged'] = [];
  if (unseen.size > 0) {
    for (const s of snapshots) {
      const manifests = await Promise.all(s.manifests.map((m) => readManifest(storage, m, s.id, options.signal).catch(() => undefined)));
      const listed = manifests.flatMap((m) => m?.blobs ?? []);
      const blobs =
        listed.length > 0 ? listed : await readMetadataBlobs(storage, s, options.identities, options.tmpDir ?? tmpdir(), options.signal);
      const missing = blobs.filter((b) => unseen.has(b.hash)).map((b) => b.hash);
      if (missing.length > 0) damaged.push({ snapshot: s.id, missing });
    }
    for (const d of damaged) {
      warnings.push(
        `SNAPSHOT ${d.snapshot} IS DAMAGED: ${d.missing.length} blob(s) it needs are missing from the store ` +
          `(${d.missing.slice(0, 3).join(', ')}${d.missing.length > 3 ? ', …' : ''}). Its metadata is kept; ` +
          'restore will fail for the files in those blobs. Run `vaultik verify` and check the store.',
      );
    }
  }

  // 5. Incomplete multipart uploads.
  const abortUploads: IncompleteUpload[] = [];
  if (options.janitor) {
    emit({ type: 'phase', phase: 'uploads' });
    try {
      for await (const u of options.janitor.listIncompleteUploads()) {
        if (u.initiated.getTime() <= cutoff.getTime()) abortUploads.push(u);
      }
    } catch (err) {
      notes.push(
        `incomplete multipart uploads were not checked: ${err instanceof Error ? err.message : String(err)}; ` +
          "the bucket's lifecycle rule for incomplete uploads removes them (docs/S3.md)",
      );
    }
  }

  // Every existing store has a snapshot (forget always keeps each host's latest): none at all
  // means the wrong index prefix far more often than a store that is all garbage.
  if (snapshots.length === 0 && deleteBlobs.length > 0) {
    throw new VaultikError(
      `prune stopped, nothing was deleted: no snapshot under '${options.indexPrefix}' but ${deleteBlobs.length} blob(s) in the store; ` +
        'is the index prefix right (--index-prefix, index_prefix)? Delete the blobs/ prefix by hand if the store really is empty.',
      ExitCode.DATA,
    );
  }
  if (unknownCount > 0) notes.push(`${unknownCount} object(s) not written by vaultik were left alone (e.g. ${unknown[0]})`);
  if (graceMs === 0) notes.push('grace period 0: a blob uploaded by a backup running right now may be deleted, breaking its snapshot');
  for (const w of warnings) emit({ type: 'warning', message: w });

  return {
    indexPrefix: options.indexPrefix,
    createdAt: now,
    graceMs,
    cutoff,
    snapshots: snapshots.map((s) => s.id),
    referenced: { count: refs.blobs.size, bytes: referencedBytes },
    keep,
    keepYoung,
    deleteBlobs,
    deleteBlobBytes,
    deleteManifests,
    keepYoungManifests,
    abortUploads,
    damaged,
    sizeMismatches,
    withoutManifest: refs.withoutManifest,
    unknownKeys: { count: unknownCount, first: unknown },
    warnings,
    notes,
  };
}

/**
 * Carries out a plan: lists the index again and spares whatever a snapshot that appeared since
 * the plan references (reading it needs the key, as planning did), then deletes the blobs, the
 * orphan manifests and the stale multipart uploads, in batches of 1000.
 * Safe to interrupt and to rerun (see the file comment).
 * @throws VaultikError NO_IDENTITY / PruneRefusedError when a new snapshot cannot be read
 *   (nothing is deleted then); DeleteRefusedError (exit 6) at the end, when the store refused to
 *   delete some objects (Object Lock): everything else was done; StorageError from the store;
 *   the abort reason between batches.
 */
export async function executePrune(storage: Storage, plan: PrunePlan, options: PruneOptions): Promise<PruneResult> {
  const started = Date.now();
  const emit = options.onEvent ?? ((): void => undefined);
  const warnings: string[] = [];

  emit({ type: 'phase', phase: 'recheck' });
  const index = await scanIndex(storage, plan.indexPrefix);
  const known = new Set(plan.snapshots);
  const forgotten = options.assumeForgotten ?? new Set<string>();
  const fresh = index.snapshots.filter((s) => !known.has(s.id) && !forgotten.has(s.id));
  const spare: References = { blobs: new Map(), withoutManifest: [], sourcesByHost: new Map() };
  await readReferences(storage, fresh, { ...options, indexPrefix: plan.indexPrefix }, spare);
  const withMetadata = new Set(index.snapshots.map((s) => s.id));

  const blobs = plan.deleteBlobs.filter((b) => !spare.blobs.has(blobHashOf(b.key) ?? ''));
  const manifests = plan.deleteManifests.filter((m) => !withMetadata.has(parseIndexName(m.key.slice(plan.indexPrefix.length))?.id ?? ''));
  // Deleting a blob a snapshot references would be the one unforgivable bug: check again.
  for (const b of blobs) {
    if (b.key !== blobKey(blobHashOf(b.key) ?? '')) throw new VaultikError(`prune: refusing to delete unexpected key ${b.key}`);
  }

  const batch = Math.min(DELETE_BATCH, Math.max(1, options.deleteBatch ?? DELETE_BATCH));
  // Keys the store refuses to delete (Object Lock) stay, listed: go on, and say so at the end.
  const refused = new Set<string>();
  const deleter = {
    delete: (keys: string[]): Promise<void> =>
      storage.delete(keys).catch((err: unknown) => {
        if (!(err instanceof DeleteRefusedError)) throw err;
        for (const k of err.refused) refused.add(k);
      }),
  };
  emit({ type: 'phase', phase: 'delete-blobs' });
  let freedBytes = 0;
  await deleteInBatches(
    deleter,
    blobs.map((b) => b.key),
    (done) => emit({ type: 'deleted', what: 'blobs', done, total: blobs.length }),
    options.signal,
    batch,
  );
  for (const b of blobs) if (!refused.has(b.key)) freedBytes += b.size;

  emit({ type: 'phase', phase: 'delete-manifests' });
  await deleteInBatches(
    deleter,
    manifests.map((m) => m.key),
    (done) => emit({ type: 'deleted', what: 'manifests', done, total: manifests.length }),
    options.signal,
    batch,
  );

  let abortedUploads = 0;
  if (options.janitor && plan.abortUploads.length > 0) {
    emit({ type: 'phase', phase: 'abort-uploads' });
    for (const u of plan.abortUploads) {
      options.signal?.throwIfAborted();
      try {
        await options.janitor.abortIncompleteUpload(u);
        abortedUploads++;
      } catch (err) {
        warnings.push(`could not abort the incomplete upload of ${u.key} (${u.uploadId}): ${err instanceof Error ? err.message : String(err)}`);
      }
      emit({ type: 'deleted', what: 'uploads', done: abortedUploads, total: plan.abortUploads.length });
    }
  }

  if (refused.size > 0) {
    const deletedBlobs = blobs.filter((b) => !refused.has(b.key)).length;
    const keys = [...refused];
    throw new DeleteRefusedError(
      `the store refused to delete ${keys.length} object(s) (first: ${keys[0]}), locked by Object Lock retention or a legal hold; ` +
        `they stay in the store, and a later prune deletes them once the lock ends. Deleted ${deletedBlobs} of ${blobs.length} unreferenced blob(s), ` +
        `${manifests.filter((m) => !refused.has(m.key)).length} of ${manifests.length} orphan manifest(s); nothing any snapshot needs was touched`,
      keys,
    );
  }

  return {
    deletedBlobs: blobs.length,
    freedBytes,
    deletedManifests: manifests.length,
    abortedUploads,
    sparedBlobs: plan.deleteBlobs.length - blobs.length,
    newSnapshots: fresh.map((s) => s.id),
    durationMs: Date.now() - started,
    warnings,
  };
}
