/**
 * Listing snapshots from object names and the store's timestamps alone: no key needed, nothing
 * downloaded. A snapshot exists once its root exists (it is written last); a manifest without a
 * root is the leftover of a backup that stopped between the two writes.
 *
 * Every index object is named `<id>.<sha256 of its bytes><suffix>`, so one id may have several
 * roots or manifests only if someone other than vaultik wrote them: such a snapshot is *suspect*,
 * as is one whose id time and store time disagree (docs/SECURITY.md "Forged snapshots and the
 * store's clock").
 */
import { UsageError } from '../errors.js';
import type { Storage } from '../storage/types.js';
import { compareSnapshots, METADATA_SUFFIX, parseIndexName, tryParseSnapshotId } from './id.js';
import { editDistance } from '../util/editDistance.js';

/** One object under the index prefix: a root, a manifest or a signature. */
export interface IndexObject {
  key: string;
  /** SHA-256 of its stored bytes, as its name says (readers check it). */
  sha256: string;
  size: number;
  /** The store's own timestamp (S3 LastModified, file mtime). */
  lastModified: Date;
}

export interface SnapshotListing {
  id: string;
  host: string;
  /** Start time of the backup, from the id: what the writer claims. */
  time: Date;
  /** The root (of several, the one the store recorded first). */
  root: IndexObject;
  /** Further roots with this id: only someone else writes those. Normally empty. */
  otherRoots: IndexObject[];
  /** Its manifests (normally one; none after an interrupted forget). */
  manifests: IndexObject[];
  /** Its signatures (of any of its roots). */
  signatures: IndexObject[];
  /** When the store recorded the root: what retention judges by. */
  storeTime: Date;
  /** Why the snapshot is suspect (see judgeSnapshot); empty when it is not. */
  suspect: string[];
  /** Size in bytes of the root. */
  metadataSize: number;
  /** Same as storeTime (when the snapshot was completed). */
  metadataModified: Date;
  /** Whether a keyless manifest exists. */
  hasManifest: boolean;
}

/**
 * How far an id's time may be from the store's time for its root before the snapshot is
 * suspect. An honest root is stored after its backup started (the id time) and at most one
 * backup run later; clocks may differ by `toleranceMs` (S3 itself refuses requests signed more
 * than 15 minutes off its clock, hence the default).
 */
export interface ClockRules {
  toleranceMs: number;
  /** The longest a backup run may take, start to root upload. */
  maxRunMs: number;
}

export const DEFAULT_CLOCK_RULES: ClockRules = { toleranceMs: 15 * 60_000, maxRunMs: 7 * 86_400_000 };

export interface IndexScan {
  /** Snapshots (a root present), sorted by compareSnapshots. */
  snapshots: SnapshotListing[];
  /** Manifests whose id has no root (leftovers of an interrupted backup or forget), by key. */
  orphanManifests: IndexObject[];
  /** Signatures whose id has no root, by key. */
  orphanSignatures: IndexObject[];
  /** Keys under the index prefix that are none of these (reported, never touched). */
  unknownKeys: string[];
  /**
   * Of unknownKeys, the roots named as vaultik 0.2.0 named them (`<id>.db.zst.age`, no hash):
   * snapshots this version does not read, whose blobs prune must not take for garbage.
   */
  legacyRoots: string[];
}

const MINUTE = 60_000;

function span(ms: number): string {
  const m = Math.round(ms / MINUTE);
  if (m < 120) return `${m} min`;
  if (m < 48 * 60) return `${Math.round(m / 60)} h`;
  return `${Math.round(m / 1440)} d`;
}

/**
 * Why a snapshot is suspect by its names and times alone, or an empty list: its id is dated
 * after the store recorded it (a future-dated id), or longer before than a backup run takes (a
 * backdated id), or it has several roots or manifests (vaultik writes one of each).
 */
export function judgeSnapshot(s: Pick<SnapshotListing, 'time' | 'storeTime' | 'otherRoots' | 'manifests'>, rules: ClockRules = DEFAULT_CLOCK_RULES): string[] {
  const reasons: string[] = [];
  const ahead = s.time.getTime() - s.storeTime.getTime();
  if (ahead > rules.toleranceMs) reasons.push(`id time is ${span(ahead)} after the store recorded it`);
  if (-ahead > rules.maxRunMs + rules.toleranceMs) reasons.push(`stored ${span(-ahead)} after its id time, longer than a backup run (${span(rules.maxRunMs)})`);
  if (s.otherRoots.length > 0) reasons.push(`${s.otherRoots.length + 1} root objects share its id`);
  if (s.manifests.length > 1) reasons.push(`${s.manifests.length} manifests share its id`);
  return reasons;
}

const byKey = (a: IndexObject, b: IndexObject): number => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/**
 * Lists every object under `indexPrefix` and sorts them into snapshots, orphan manifests and
 * signatures, and unknown keys (keys in sub-"directories" of the prefix are unknown keys).
 * Snapshots are judged by `rules` (see judgeSnapshot).
 * @throws StorageError from `storage.list`.
 */
export async function scanIndex(storage: Storage, indexPrefix: string, rules: ClockRules = DEFAULT_CLOCK_RULES): Promise<IndexScan> {
  const byId = new Map<string, Record<'root' | 'manifest' | 'signature', IndexObject[]>>();
  const unknownKeys: string[] = [];
  for await (const obj of storage.list(indexPrefix)) {
    const parsed = parseIndexName(obj.key.slice(indexPrefix.length));
    if (!parsed) {
      unknownKeys.push(obj.key);
      continue;
    }
    let group = byId.get(parsed.id);
    if (!group) byId.set(parsed.id, (group = { root: [], manifest: [], signature: [] }));
    group[parsed.kind].push({ key: obj.key, sha256: parsed.sha256, size: obj.size, lastModified: obj.lastModified });
  }
  const snapshots: SnapshotListing[] = [];
  const orphanManifests: IndexObject[] = [];
  const orphanSignatures: IndexObject[] = [];
  for (const [id, group] of byId) {
    const [root, ...otherRoots] = group.root.sort((a, b) => a.lastModified.getTime() - b.lastModified.getTime() || byKey(a, b));
    if (!root) {
      orphanManifests.push(...group.manifest);
      orphanSignatures.push(...group.signature);
      continue;
    }
    const { host, time } = tryParseSnapshotId(id)!;
    const listing: SnapshotListing = {
      id,
      host,
      time,
      root,
      otherRoots,
      manifests: group.manifest.sort(byKey),
      signatures: group.signature.sort(byKey),
      storeTime: root.lastModified,
      suspect: [],
      metadataSize: root.size,
      metadataModified: root.lastModified,
      hasManifest: group.manifest.length > 0,
    };
    listing.suspect = judgeSnapshot(listing, rules);
    snapshots.push(listing);
  }
  snapshots.sort(compareSnapshots);
  const legacyRoots = unknownKeys.filter((k) => k.endsWith(METADATA_SUFFIX) && tryParseSnapshotId(k.slice(indexPrefix.length, -METADATA_SUFFIX.length)) !== undefined);
  return { snapshots, orphanManifests: orphanManifests.sort(byKey), orphanSignatures: orphanSignatures.sort(byKey), unknownKeys, legacyRoots };
}

/**
 * Every snapshot in the store, oldest first (time, then host), from object names only.
 * @throws StorageError from `storage.list`.
 */
export async function listSnapshots(storage: Storage, indexPrefix: string, rules?: ClockRules): Promise<SnapshotListing[]> {
  return (await scanIndex(storage, indexPrefix, rules)).snapshots;
}

/** The `count` ids closest to `wanted` by edit distance (ties: newest first). */
export function closestSnapshotIds(list: readonly { id: string; time: Date }[], wanted: string, count = 3): string[] {
  return list
    .map((s) => ({ id: s.id, t: s.time.getTime(), d: editDistance(wanted, s.id) }))
    .sort((x, y) => x.d - y.d || y.t - x.t)
    .slice(0, count)
    .map((x) => x.id);
}

/**
 * Resolves a snapshot argument. `latest` is the newest snapshot (by the time in its id) of
 * `host` when given, else the newest of all hosts, leaving out suspect snapshots: a forged,
 * future-dated id must not become what `restore latest` restores. Any other value must be an
 * exact id (a suspect one is returned; callers warn).
 * @throws UsageError when there is no snapshot (for that host), or the id is unknown: the
 *   message lists the closest existing ids.
 */
export function resolveSnapshotId(list: readonly SnapshotListing[], idOrLatest: string, host?: string): SnapshotListing {
  const candidates = host === undefined ? list : list.filter((s) => s.host === host);
  if (idOrLatest === 'latest') {
    const trusted = candidates.filter((s) => s.suspect.length === 0).sort(compareSnapshots);
    const latest = trusted[trusted.length - 1];
    if (!latest) {
      const what = host === undefined ? 'in this store' : `of host '${host}' in this store`;
      if (candidates.length > 0) throw new UsageError(`no snapshot ${what} is above suspicion (see \`vaultik snapshots\`); name one by its id`);
      throw new UsageError(host === undefined ? 'no snapshots in this store' : `no snapshots of host '${host}' in this store`);
    }
    return latest;
  }
  const found = candidates.find((s) => s.id === idOrLatest);
  if (found) return found;
  const close = closestSnapshotIds(candidates, idOrLatest);
  const hint = close.length > 0 ? `; closest: ${close.join(', ')}` : '; the store has no snapshots';
  throw new UsageError(`unknown snapshot '${idOrLatest}'${hint}`);
}
