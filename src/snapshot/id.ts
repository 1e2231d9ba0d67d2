/**
 * Snapshot ids and the object keys derived from them.
 *
 * Format: `<host>-<YYYYMMDD>T<HHMMSS>.<mmm>Z`, the UTC start time of the backup with millisecond
 * precision, e.g. `web1-20261127T031500.123Z`. The time part has a fixed width (20 characters)
 * and contains no '-', so an id is parsed from the right: hostnames may contain '-'
 * (`db-eu-1-20261127T031500.123Z` is host `db-eu-1`). Every character is in [A-Za-z0-9._-], so
 * ids are safe as file names and object keys. For one host, ids sort lexicographically in time
 * order; across hosts use `compareSnapshots` (time first).
 */
import { UsageError } from '../errors.js';

/** Allowed host part: starts with a letter or digit, then letters, digits, '.', '_' or '-'. */
const HOST_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const TIME_RE = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})\.(\d{3})Z$/;
const ID_RE = /^(.+)-(\d{8}T\d{6}\.\d{3}Z)$/;

/** Suffix of a snapshot's encrypted metadata object. */
export const METADATA_SUFFIX = '.db.zst.age';
/** Suffix of a snapshot's keyless manifest object. */
export const MANIFEST_SUFFIX = '.manifest.json.zst';
/** Suffix of a snapshot's signature object (optional, docs/FORMAT.md "Signatures"). */
export const SIGNATURE_SUFFIX = '.sig';
const INDEX_SUFFIXES: readonly (readonly ['root' | 'manifest' | 'signature', string])[] = [
  ['root', METADATA_SUFFIX],
  ['manifest', MANIFEST_SUFFIX],
  ['signature', SIGNATURE_SUFFIX],
];

export interface ParsedSnapshotId {
  host: string;
  time: Date;
}

/** True when `host` is usable as the host part of a snapshot id. */
export function isValidHost(host: string): boolean {
  return HOST_RE.test(host);
}

/**
 * Turns any hostname (os.hostname(), a config value) into a valid id host part: lowercased,
 * characters outside [a-z0-9._-] replaced by '-', leading punctuation dropped, at most 128
 * characters; 'host' when nothing is left.
 */
export function sanitizeHostname(raw: string): string {
  const s = raw
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, '-')
    .replace(/^[._-]+/, '')
    .slice(0, 128);
  return s === '' ? 'host' : s;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

/** The sortable time part of an id: `YYYYMMDDTHHMMSS.mmmZ` (UTC). */
export function formatSnapshotTime(date: Date): string {
  const t = date.getTime();
  if (!Number.isFinite(t)) throw new UsageError('invalid snapshot time');
  const y = date.getUTCFullYear();
  if (y < 0 || y > 9999) throw new UsageError(`snapshot time out of range: ${date.toISOString()}`);
  return (
    `${pad(y, 4)}${pad(date.getUTCMonth() + 1, 2)}${pad(date.getUTCDate(), 2)}` +
    `T${pad(date.getUTCHours(), 2)}${pad(date.getUTCMinutes(), 2)}${pad(date.getUTCSeconds(), 2)}` +
    `.${pad(date.getUTCMilliseconds(), 3)}Z`
  );
}

/**
 * Parses the time part of an id.
 * @returns undefined when `s` is not exactly `YYYYMMDDTHHMMSS.mmmZ` or names an impossible date.
 */
export function parseSnapshotTime(s: string): Date | undefined {
  const m = TIME_RE.exec(s);
  if (!m) return undefined;
  const [y, mo, d, h, mi, se, ms] = m.slice(1).map(Number) as [number, number, number, number, number, number, number];
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, se, ms);
  // Date.UTC silently rolls over (month 13, Feb 30): a round trip rejects those.
  return formatSnapshotTime(date) === s ? date : undefined;
}

/**
 * Builds a snapshot id.
 * @throws UsageError when `host` is not a valid host part (see sanitizeHostname) or the date is
 *   invalid or outside years 0000–9999.
 */
export function makeSnapshotId(host: string, date: Date): string {
  if (!isValidHost(host)) {
    throw new UsageError(`invalid host name for a snapshot id: '${host}' (allowed: letters, digits, '.', '_', '-')`);
  }
  return `${host}-${formatSnapshotTime(date)}`;
}

/**
 * Parses a snapshot id, splitting host and time from the right.
 * @returns undefined for anything that is not a well-formed id.
 */
export function tryParseSnapshotId(id: string): ParsedSnapshotId | undefined {
  const m = ID_RE.exec(id);
  if (!m) return undefined;
  const host = m[1]!;
  const time = parseSnapshotTime(m[2]!);
  if (!time || !isValidHost(host)) return undefined;
  return { host, time };
}

/**
 * Parses a snapshot id.
 * @throws UsageError naming the expected format when `id` is malformed.
 */
export function parseSnapshotId(id: string): ParsedSnapshotId {
  const parsed = tryParseSnapshotId(id);
  if (!parsed) {
    throw new UsageError(`malformed snapshot id '${id}' (expected <host>-YYYYMMDDTHHMMSS.mmmZ, e.g. web1-20261127T031500.123Z)`);
  }
  return parsed;
}

const HASH_RE = /^[0-9a-f]{64}$/;

function checkKeyParts(id: string, sha256: string): void {
  parseSnapshotId(id);
  if (!HASH_RE.test(sha256)) throw new UsageError(`not a SHA-256 in hex: '${sha256}'`);
}

/**
 * Key of a snapshot's encrypted root: `<indexPrefix><id>.<sha256>.db.zst.age`, named by the
 * SHA-256 of its stored bytes as blobs are, so a replaced root no longer matches its name
 * (docs/FORMAT.md "Object layout").
 * @throws UsageError for a malformed id or hash.
 */
export function metadataKey(indexPrefix: string, id: string, sha256: string): string {
  checkKeyParts(id, sha256);
  return `${indexPrefix}${id}.${sha256}${METADATA_SUFFIX}`;
}

/**
 * Key of a snapshot's keyless manifest: `<indexPrefix><id>.<sha256>.manifest.json.zst`.
 * @throws UsageError for a malformed id or hash.
 */
export function manifestKey(indexPrefix: string, id: string, sha256: string): string {
  checkKeyParts(id, sha256);
  return `${indexPrefix}${id}.${sha256}${MANIFEST_SUFFIX}`;
}

/**
 * Key of a snapshot's signature: `<indexPrefix><id>.<sha256 of the root>.sig` (it signs the
 * statement docs/FORMAT.md "Signatures" builds from the root's and the manifest's names).
 * @throws UsageError for a malformed id or hash.
 */
export function signatureKey(indexPrefix: string, id: string, rootSha256: string): string {
  checkKeyParts(id, rootSha256);
  return `${indexPrefix}${id}.${rootSha256}${SIGNATURE_SUFFIX}`;
}

export type IndexObjectKind = 'root' | 'manifest' | 'signature';

/**
 * Parses an object name under the index prefix (the part after the prefix).
 * @returns undefined for anything that is not `<id>.<sha256><suffix>` with a known suffix.
 */
export function parseIndexName(name: string): { kind: IndexObjectKind; id: string; sha256: string } | undefined {
  for (const [kind, suffix] of INDEX_SUFFIXES) {
    if (!name.endsWith(suffix)) continue;
    const stem = name.slice(0, -suffix.length);
    const dot = stem.length - 65;
    if (dot < 1 || stem[dot] !== '.') return undefined;
    const id = stem.slice(0, dot);
    const sha256 = stem.slice(dot + 1);
    if (!HASH_RE.test(sha256) || !tryParseSnapshotId(id)) return undefined;
    return { kind, id, sha256 };
  }
  return undefined;
}

/** Orders snapshots by time, then host, then id: the order of `listSnapshots`. */
export function compareSnapshots(a: { id: string; host: string; time: Date }, b: { id: string; host: string; time: Date }): number {
  const dt = a.time.getTime() - b.time.getTime();
  if (dt !== 0) return dt;
  if (a.host !== b.host) return a.host < b.host ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
