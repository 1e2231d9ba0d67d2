/**
 * YAML config file → validated `Config`.
 *
 * Validation is strict, because a typo in a backup config otherwise shows up only on the day a
 * restore is needed: unknown keys (with the closest known key suggested), wrong types, bad sizes
 * and durations, relative paths, bad or missing recipients, a store that is not exactly one of
 * `s3:`/`local:`, YAML syntax errors and duplicate keys are all errors naming the file, the line
 * and the key (src/config/error.ts). The file is only read; nothing else on disk or in the store
 * is touched, except an `age_recipients_file`, which is read too. Whether source dirs exist is
 * checked by the backup, not here: a config may be written before its disk is mounted.
 *
 * Every key, default and rule is documented in docs/CONFIG.md; keep the two in step.
 */
import { readFileSync } from 'node:fs';
import { homedir as osHomedir, hostname as osHostname } from 'node:os';
import { dirname, isAbsolute, join, posix, resolve } from 'node:path';
import { LineCounter, isAlias, isMap, isNode, isScalar, isSeq, parseDocument, visit, type Document, type Node } from 'yaml';
import type { S3StorageSpec, StorageSpec } from '../storage/types.js';
import { ConfigError, type ConfigIssue } from './error.js';
import { ExcludePatternError, compileExcludes } from './exclude.js';
import { checkRecipient, checkRecipientsFile } from './recipient.js';
import { formatSize, parseDuration, parseSize } from './size.js';
import { editDistance } from '../util/editDistance.js';
import { MONITORING_KEYS, readMonitoring, type MonitoringConfig } from './monitoring.js';

/** A validated config. Sizes are bytes, durations milliseconds, paths absolute and normalized. */
export interface Config {
  /** Absolute, normalized directories to back up (no trailing '/', none inside another). */
  sourceDirs: string[];
  /** Exclude patterns as written (src/config/exclude.ts); see `excludeMatcherFor`. */
  exclude: string[];
  /**
   * Do not descend into directories on another file system than their source dir
   * (`one_file_system`; src/fs/mounts.ts). parseConfig always sets it; absent means false.
   */
  oneFileSystem?: boolean;
  /** Age X25519 recipients (`age1…`, lower case, deduplicated), in the order given. */
  recipients: string[];
  storage: StorageSpec;
  /** Daemon: back up this often (ms). */
  backupInterval: number;
  /** Daemon: full stat scan this often (ms). */
  fullScanInterval: number;
  /** Daemon: never start a run sooner than this after the last one (ms). */
  minTimeBetweenRun: number;
  /** Absolute path of the local state cache (SQLite). */
  indexPath: string;
  /** Average chunk size for FastCDC (bytes). */
  chunkSize: number;
  /** A blob is closed before it would exceed this many stored bytes. */
  blobSizeLimit: number;
  /** Key prefix of snapshot metadata objects in the store ('…/', never '' nor under blobs/). */
  indexPrefix: string;
  /** zstd level, 1–19. */
  compressionLevel: number;
  /** First part of snapshot ids: [A-Za-z0-9._-], starting with a letter or digit. */
  hostname: string;
  /**
   * Absolute path of the OpenSSH Ed25519 private key that signs each snapshot (opt-in;
   * docs/FORMAT.md "Signatures"). Only the path: the backup loads the key when it starts.
   */
  signingKey?: string;
  /**
   * Absolute path of an ssh-keygen allowed_signers file: the commands that read the store with
   * `--config` then require valid snapshot signatures, as with `--signers`.
   */
  allowedSigners?: string;
  /** Metrics, hooks and health-check pings (docs/MONITORING.md); absent when no such key is set. */
  monitoring?: MonitoringConfig;
  /** Absolute path of the file this config came from (or the name given to parseConfig). */
  sourcePath: string;
}

/** Defaults of the optional keys (docs/CONFIG.md). `index_path` depends on the user: see `defaultIndexPath`. */
export const CONFIG_DEFAULTS = {
  exclude: [] as readonly string[],
  backupInterval: 60 * 60 * 1000, // 1h
  fullScanInterval: 24 * 60 * 60 * 1000, // 24h
  minTimeBetweenRun: 15 * 60 * 1000, // 15m
  chunkSize: 10_000_000, // 10MB
  blobSizeLimit: 10_000_000_000, // 10GB
  indexPrefix: 'index/',
  compressionLevel: 3,
} as const;

/** `chunk_size` bounds: smaller chunks bloat the metadata, larger ones make dedup useless and cost memory per worker. */
export const CHUNK_SIZE_MIN = 64 * 1024;
export const CHUNK_SIZE_MAX = 64 * 1024 * 1024;
/**
 * The chunker's maximum chunk is at most this multiple of `chunk_size` (FastCDC's usual
 * min = avg/4, max = avg·4). `blob_size_limit` must hold at least one maximal chunk.
 */
export const MAX_CHUNK_FACTOR = 4;
/** S3's largest object; no store can hold a bigger blob. */
export const BLOB_SIZE_LIMIT_MAX = 5 * 1024 ** 4;
/** S3's smallest multipart part (except the last) and largest part. */
const PART_SIZE_MIN = 5 * 1024 * 1024;
const PART_SIZE_MAX = 5 * 1024 ** 3;

/** The maximum chunk size the config allows the chunker to produce for `chunkSize`. */
export function maxChunkSize(chunkSize: number): number {
  return chunkSize * MAX_CHUNK_FACTOR;
}

/** Injectable environment, so tests do not depend on who runs them. */
export interface ParseConfigOptions {
  /** Directory that a relative `age_recipients_file` is resolved against (default: the config file's directory). */
  baseDir?: string;
  /** What `Config.sourcePath` is set to (default: `sourceName`). */
  sourcePath?: string;
  /** Default: process.env (XDG_STATE_HOME for the non-root `index_path` default). */
  env?: NodeJS.ProcessEnv;
  /** Default: process.getuid(); 0 selects the system-wide `index_path` default. */
  uid?: number;
  /** Default: os.homedir(). */
  homedir?: string;
  /** Default: os.hostname(), used when the config has no `hostname:`. */
  hostname?: string;
  /** Reads an `age_recipients_file` (default: fs.readFileSync as UTF-8). */
  readFile?: (path: string) => string;
}

/**
 * The default `index_path`: /var/lib/vaultik/index.sqlite for root (the system backup the
 * design describes), otherwise $XDG_STATE_HOME/vaultik/index.sqlite, falling back to
 * ~/.local/state/vaultik/index.sqlite, because a normal user cannot write to /var/lib.
 */
export function defaultIndexPath(options: Pick<ParseConfigOptions, 'env' | 'uid' | 'homedir'> = {}): string {
  const uid = options.uid ?? process.getuid?.() ?? 0;
  if (uid === 0) return '/var/lib/vaultik/index.sqlite';
  const env = options.env ?? process.env;
  const state = env.XDG_STATE_HOME;
  // The XDG spec says relative values are invalid and must be ignored.
  const base = state !== undefined && isAbsolute(state) ? state : join(options.homedir ?? osHomedir(), '.local', 'state');
  return join(base, 'vaultik', 'index.sqlite');
}

const TOP_KEYS = [
  'source_dirs',
  'exclude',
  'one_file_system',
  'age_recipient',
  'age_recipients',
  'age_recipients_file',
  's3',
  'local',
  'backup_interval',
  'full_scan_interval',
  'min_time_between_run',
  'index_path',
  'chunk_size',
  'blob_size_limit',
  'index_prefix',
  'compression_level',
  'hostname',
  'signing_key',
  'allowed_signers',
  ...MONITORING_KEYS,
] as const;
const S3_KEYS = [
  'endpoint',
  'bucket',
  'prefix',
  'access_key_id',
  'secret_access_key',
  'session_token',
  'region',
  'force_path_style',
  'conditional_writes',
  'object_lock',
  'multipart_threshold',
  'part_size',
  'concurrency',
] as const;
const LOCAL_KEYS = ['path', 'prefix'] as const;
const OBJECT_LOCK_KEYS = ['mode', 'days'] as const;

/** Names people reach for that are too far from ours for the edit-distance suggestion. */
const ALIASES: ReadonlyMap<string, string> = new Map([
  ['recipient', 'age_recipient'],
  ['recipients', 'age_recipients'],
  ['recipients_file', 'age_recipients_file'],
  ['age_recipient_file', 'age_recipients_file'],
  ['excludes', 'exclude'],
  ['exclude_patterns', 'exclude'],
  ['ignore', 'exclude'],
  ['sources', 'source_dirs'],
  ['paths', 'source_dirs'],
  ['directories', 'source_dirs'],
  ['interval', 'backup_interval'],
  ['cache_path', 'index_path'],
  ['state_path', 'index_path'],
  ['compression', 'compression_level'],
  ['blob_size', 'blob_size_limit'],
  ['host', 'hostname'],
  ['access_key', 'access_key_id'],
  ['secret_key', 'secret_access_key'],
  ['secret_access_key_id', 'secret_access_key'],
  ['url', 'endpoint'],
  ['endpoint_url', 'endpoint'],
  ['path_style', 'force_path_style'],
  ['lock', 'object_lock'],
  ['dir', 'path'],
  ['directory', 'path'],
  ['retention', 'days'],
]);

/** The mapping a key sits in, for messages. */
export type Block = 'top' | 's3' | 'local' | 'object_lock' | 'hooks';

/** "did you mean …?" for an unknown key, or where the key belongs if it is in the wrong block. */
function unknownKeyHint(key: string, known: readonly string[], block: Block): string {
  const lower = key.toLowerCase().replace(/-/g, '_');
  const alias = ALIASES.get(lower);
  if (alias !== undefined && known.includes(alias)) return `; did you mean ${alias}?`;
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = editDistance(lower, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  if (best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3))) return `; did you mean ${best}?`;
  if (block === 'top' && (S3_KEYS as readonly string[]).includes(lower)) return `; it belongs inside the s3: block`;
  if (block === 'top' && lower === 'path') return `; it belongs inside the local: block`;
  if (block !== 'top' && (TOP_KEYS as readonly string[]).includes(lower)) return `; it is a top-level key, not part of ${block}:`;
  return `; known keys: ${known.join(', ')}`;
}

/** A key/value pair of a mapping, with the nodes for line numbers. */
export interface Entry {
  /** Dotted path for messages ("s3.bucket"). */
  path: string;
  keyNode: Node;
  /** The value node (aliases resolved); a null Scalar when the key has no value. */
  value: unknown;
}

/** Walks the YAML tree, collecting issues; getters return undefined after recording a problem. */
export class Reader {
  readonly issues: ConfigIssue[] = [];

  constructor(
    readonly source: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  lineOf(node: unknown): number | undefined {
    if (!isNode(node) || !node.range) return undefined;
    return this.lines.linePos(node.range[0]).line;
  }

  /** Line of an entry's value, or of its key when the value is empty (an empty value has no place of its own). */
  entryLine(e: Entry): number | undefined {
    if (isScalar(e.value) && (e.value.value === null || e.value.value === undefined)) return this.lineOf(e.keyNode);
    return this.lineOf(e.value) ?? this.lineOf(e.keyNode);
  }

  add(key: string | undefined, line: number | undefined, message: string): void {
    this.issues.push({ source: this.source, line, key, message });
  }

  fail(e: Entry, message: string, node?: unknown): void {
    this.add(e.path, node !== undefined ? (this.lineOf(node) ?? this.entryLine(e)) : this.entryLine(e), message);
  }

  deref(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  describe(node: unknown): string {
    if (isScalar(node)) {
      const v = node.value;
      if (v === null || v === undefined) return 'nothing';
      if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
      if (typeof v === 'number' || typeof v === 'boolean') return node.source ?? String(v);
      return `a ${typeof v} (tag ${node.tag ?? '?'})`;
    }
    if (isSeq(node)) return 'a list';
    if (isMap(node)) return 'a mapping';
    return 'an unsupported value';
  }

  /**
   * The entries of a mapping node, reporting duplicate and unknown keys.
   * Returns undefined (after an issue) when `node` is not a mapping.
   */
  map(node: unknown, path: string | undefined, known: readonly string[], block: Block, line?: number): Map<string, Entry> | undefined {
    node = this.deref(node);
    if (!isMap(node)) {
      const keys = path === undefined ? 'source_dirs:, age_recipient:, s3: ...' : known.join(', ');
      const empty = isScalar(node) && (node.value === null || node.value === undefined);
      // An empty block's null value sits on the next line; its key's line is the useful one.
      this.add(path, empty ? line : (this.lineOf(node) ?? line), `expected a mapping of keys (${keys}), got ${this.describe(node)}`);
      return undefined;
    }
    const entries = new Map<string, Entry>();
    const firstLine = new Map<string, number | undefined>();
    for (const pair of node.items) {
      const keyNode = this.deref(pair.key);
      if (!isScalar(keyNode) || typeof keyNode.value !== 'string') {
        this.add(path, this.lineOf(keyNode) ?? this.lineOf(node), `keys must be plain names, got ${this.describe(keyNode)}`);
        continue;
      }
      const key = keyNode.value;
      const full = path === undefined ? key : `${path}.${key}`;
      if (firstLine.has(key)) {
        const first = firstLine.get(key);
        this.add(full, this.lineOf(keyNode), `duplicate key${first !== undefined ? ` (first set on line ${first})` : ''}`);
        continue;
      }
      firstLine.set(key, this.lineOf(keyNode));
      if (!known.includes(key)) {
        this.add(full, this.lineOf(keyNode), `unknown key${unknownKeyHint(key, known, block)}`);
        continue;
      }
      entries.set(key, { path: full, keyNode: keyNode, value: this.deref(pair.value) });
    }
    return entries;
  }

  /** A non-empty value is present, else an issue. */
  present(e: Entry): boolean {
    if (isScalar(e.value) && (e.value.value === null || e.value.value === undefined)) {
      this.fail(e, 'has no value (remove the key to use the default, if it has one)');
      return false;
    }
    return true;
  }

  string(e: Entry, what = 'a string'): string | undefined {
    if (!this.present(e)) return undefined;
    if (isScalar(e.value) && typeof e.value.value === 'string') {
      if (e.value.value === '') {
        this.fail(e, `expected ${what}, got an empty string`);
        return undefined;
      }
      return e.value.value;
    }
    this.fail(e, `expected ${what}, got ${this.describe(e.value)}`);
    return undefined;
  }

  /** A string that may be empty (prefixes). */
  stringOrEmpty(e: Entry): string | undefined {
    if (isScalar(e.value) && e.value.value === '') return '';
    return this.string(e);
  }

  boolean(e: Entry): boolean | undefined {
    if (!this.present(e)) return undefined;
    if (isScalar(e.value) && typeof e.value.value === 'boolean') return e.value.value;
    this.fail(e, `expected true or false, got ${this.describe(e.value)}`);
    return undefined;
  }

  integer(e: Entry, min: number, max: number): number | undefined {
    if (!this.present(e)) return undefined;
    if (isScalar(e.value) && typeof e.value.value === 'number' && Number.isInteger(e.value.value)) {
      const n = e.value.value;
      if (n >= min && n <= max) return n;
      this.fail(e, `${this.describe(e.value)} is out of range (${min}–${max})`);
      return undefined;
    }
    this.fail(e, `expected a whole number from ${min} to ${max}, got ${this.describe(e.value)}`);
    return undefined;
  }

  size(e: Entry): number | undefined {
    if (!this.present(e)) return undefined;
    const v = isScalar(e.value) ? e.value.value : undefined;
    if (typeof v !== 'string' && typeof v !== 'number') {
      this.fail(e, `expected a size like "10MB" or "512KiB", got ${this.describe(e.value)}`);
      return undefined;
    }
    try {
      return parseSize(v);
    } catch (err) {
      this.fail(e, (err as Error).message);
      return undefined;
    }
  }

  duration(e: Entry): number | undefined {
    if (!this.present(e)) return undefined;
    const v = isScalar(e.value) ? e.value.value : undefined;
    if (typeof v !== 'string' && typeof v !== 'number') {
      this.fail(e, `expected a duration like "15m", "1h" or "1h30m", got ${this.describe(e.value)}`);
      return undefined;
    }
    try {
      return parseDuration(v);
    } catch (err) {
      this.fail(e, (err as Error).message);
      return undefined;
    }
  }

  /** A list of strings: each item with its node (for per-item lines), or undefined after an issue. */
  stringList(e: Entry, what: string): { value: string; node: unknown }[] | undefined {
    if (!this.present(e)) return undefined;
    if (!isSeq(e.value)) {
      const hint = isScalar(e.value) && typeof e.value.value === 'string' ? ` (write [${JSON.stringify(e.value.value)}] for one)` : '';
      this.fail(e, `expected a list of ${what}, got ${this.describe(e.value)}${hint}`);
      return undefined;
    }
    const out: { value: string; node: unknown }[] = [];
    let ok = true;
    for (const raw of e.value.items) {
      const item = this.deref(raw);
      if (isScalar(item) && typeof item.value === 'string' && item.value !== '') {
        out.push({ value: item.value, node: item });
      } else {
        this.fail(e, `expected ${what} in the list, got ${isScalar(item) && item.value === '' ? 'an empty string' : this.describe(item)}`, item);
        ok = false;
      }
    }
    return ok ? out : undefined;
  }
}

/** Absolute, normalized, without trailing '/': or an error message. */
function absolutePath(p: string): string | { error: string } {
  if (p.includes('\0')) return { error: 'contains a NUL character' };
  if (p.startsWith('~')) return { error: `${JSON.stringify(p)}: "~" is not expanded; write the full path` };
  if (!posix.isAbsolute(p)) return { error: `${JSON.stringify(p)} is not an absolute path` };
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

/** A key prefix normalized to '' or ending in '/'; or an error message. */
function keyPrefix(p: string): string | { error: string } {
  if (p === '') return '';
  if (p.startsWith('/')) return { error: `${JSON.stringify(p)} must not start with "/" (prefixes are relative to the bucket or store root)` };
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(p)) return { error: `${JSON.stringify(p)} contains a control character` };
  const trimmed = p.endsWith('/') ? p.slice(0, -1) : p;
  const segments = trimmed.split('/');
  if (segments.some((s) => s === '')) return { error: `${JSON.stringify(p)} contains an empty segment ("//")` };
  if (segments.some((s) => s === '.' || s === '..')) return { error: `${JSON.stringify(p)} must not contain "." or ".." segments` };
  return `${trimmed}/`;
}

/** Valid in a snapshot id and an object key, and unambiguous when the id is split at its last '-' + time. */
const HOSTNAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

function readStorage(r: Reader, top: Map<string, Entry>): StorageSpec | undefined {
  const s3 = top.get('s3');
  const local = top.get('local');
  if (s3 && local) {
    const later = (r.lineOf(s3.keyNode) ?? 0) > (r.lineOf(local.keyNode) ?? 0) ? s3 : local;
    r.add(later.path, r.lineOf(later.keyNode), 'both s3: and local: are set; a config writes to exactly one store');
    return undefined;
  }
  if (!s3 && !local) {
    r.add(undefined, undefined, 'no store: add an s3: block (bucket, endpoint, ...) or a local: block (path)');
    return undefined;
  }
  if (local) {
    const keys = r.map(local.value, 'local', LOCAL_KEYS, 'local', r.lineOf(local.keyNode));
    if (!keys) return undefined;
    const pathEntry = keys.get('path');
    let path: string | undefined;
    if (!pathEntry) r.add('local.path', r.lineOf(local.keyNode), 'missing (the absolute directory of the store)');
    else {
      const p = r.string(pathEntry, 'an absolute path');
      if (p !== undefined) {
        const abs = absolutePath(p);
        if (typeof abs === 'string') path = abs;
        else r.fail(pathEntry, abs.error);
      }
    }
    const prefix = readPrefix(r, keys.get('prefix'));
    if (path === undefined || prefix === undefined) return undefined;
    return { type: 'local', path, prefix };
  }
  const block = s3!;
  const keys = r.map(block.value, 's3', S3_KEYS, 's3', r.lineOf(block.keyNode));
  if (!keys) return undefined;
  let ok = true;
  const spec: S3StorageSpec = { type: 's3', bucket: '', prefix: '' };

  const bucketEntry = keys.get('bucket');
  if (!bucketEntry) {
    r.add('s3.bucket', r.lineOf(block.keyNode), 'missing (the bucket name)');
    ok = false;
  } else {
    const b = r.string(bucketEntry, 'a bucket name');
    if (b === undefined) ok = false;
    else if (/^s3:\/\//i.test(b)) {
      r.fail(bucketEntry, `${JSON.stringify(b)}: write the bare bucket name, and the key prefix under prefix:`);
      ok = false;
    } else if (/[/\s]/.test(b)) {
      r.fail(bucketEntry, `${JSON.stringify(b)} is not a bucket name (no "/" or spaces; put a key prefix under prefix:)`);
      ok = false;
    } else spec.bucket = b;
  }

  const prefix = readPrefix(r, keys.get('prefix'));
  if (prefix === undefined) ok = false;
  else spec.prefix = prefix;

  const endpointEntry = keys.get('endpoint');
  if (endpointEntry) {
    const e = r.string(endpointEntry, 'a URL');
    let url: URL | undefined;
    try {
      url = e === undefined ? undefined : new URL(e);
    } catch {
      url = undefined;
    }
    if (e === undefined) ok = false;
    else if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      r.fail(endpointEntry, `${JSON.stringify(e)} is not an http:// or https:// URL`);
      ok = false;
    } else spec.endpoint = e;
  }

  for (const [key, field] of [
    ['region', 'region'],
    ['access_key_id', 'accessKeyId'],
    ['secret_access_key', 'secretAccessKey'],
    ['session_token', 'sessionToken'],
  ] as const) {
    const entry = keys.get(key);
    if (!entry) continue;
    const v = r.string(entry);
    if (v === undefined) ok = false;
    else spec[field] = v;
  }
  // Judged on the keys present, not on their values, so a bad value is not also reported as missing.
  if (keys.has('access_key_id') !== keys.has('secret_access_key')) {
    const missing = keys.has('access_key_id') ? 'secret_access_key' : 'access_key_id';
    r.add(`s3.${missing}`, r.lineOf(block.keyNode), 'missing: access_key_id and secret_access_key go together (or omit both to use AWS_* variables or a profile)');
    ok = false;
  } else if (keys.has('session_token') && !keys.has('access_key_id')) {
    r.add('s3.session_token', r.lineOf(keys.get('session_token')!.keyNode), 'needs access_key_id and secret_access_key in the config too (or set AWS_SESSION_TOKEN with the other AWS_* variables)');
    ok = false;
  }

  const pathStyle = keys.get('force_path_style');
  if (pathStyle) {
    const v = r.boolean(pathStyle);
    if (v === undefined) ok = false;
    else spec.forcePathStyle = v;
  }

  const conditional = keys.get('conditional_writes');
  if (conditional) {
    // YAML gives true/false as booleans and auto as a string.
    const v = conditional.value;
    if (isScalar(v) && (v.value === true || v.value === false)) spec.conditionalWrites = v.value;
    else if (isScalar(v) && typeof v.value === 'string' && v.value.toLowerCase() === 'auto') spec.conditionalWrites = 'auto';
    else if (r.present(conditional)) {
      r.fail(conditional, `expected auto, true or false, got ${r.describe(v)}`);
      ok = false;
    } else ok = false;
  }

  const lockEntry = keys.get('object_lock');
  if (lockEntry) {
    const lock = r.map(lockEntry.value, 's3.object_lock', OBJECT_LOCK_KEYS, 'object_lock', r.lineOf(lockEntry.keyNode));
    if (!lock) ok = false;
    else {
      const modeEntry = lock.get('mode');
      const daysEntry = lock.get('days');
      let mode: 'governance' | 'compliance' | undefined;
      if (!modeEntry) r.add('s3.object_lock.mode', r.lineOf(lockEntry.keyNode), 'missing (governance or compliance)');
      else {
        const m = r.string(modeEntry, 'governance or compliance');
        const lower = m?.toLowerCase();
        if (lower === 'governance' || lower === 'compliance') mode = lower;
        else if (m !== undefined) r.fail(modeEntry, `expected governance or compliance, got ${JSON.stringify(m)}`);
      }
      let days: number | undefined;
      if (!daysEntry) r.add('s3.object_lock.days', r.lineOf(lockEntry.keyNode), 'missing (retention in days, e.g. 30)');
      else days = r.integer(daysEntry, 1, 36500);
      if (mode === undefined || days === undefined) ok = false;
      else spec.objectLock = { mode, days };
    }
  }

  const threshold = keys.get('multipart_threshold');
  if (threshold) {
    const v = r.size(threshold);
    if (v !== undefined && v < PART_SIZE_MIN) {
      r.fail(threshold, `${formatSize(v)} is below S3's minimum part size (5 MiB)`);
      ok = false;
    } else if (v === undefined) ok = false;
    else spec.multipartThreshold = v;
  }
  const partSize = keys.get('part_size');
  if (partSize) {
    const v = r.size(partSize);
    if (v !== undefined && (v < PART_SIZE_MIN || v > PART_SIZE_MAX)) {
      r.fail(partSize, `${formatSize(v)} is outside S3's part size range (5 MiB–5 GiB)`);
      ok = false;
    } else if (v === undefined) ok = false;
    else spec.partSize = v;
  }
  const concurrency = keys.get('concurrency');
  if (concurrency) {
    const v = r.integer(concurrency, 1, 256);
    if (v === undefined) ok = false;
    else spec.concurrency = v;
  }
  return ok ? spec : undefined;
}

function readPrefix(r: Reader, entry: Entry | undefined): string | undefined {
  if (!entry) return '';
  const p = r.stringOrEmpty(entry);
  if (p === undefined) return undefined;
  const n = keyPrefix(p);
  if (typeof n === 'string') return n;
  r.fail(entry, n.error);
  return undefined;
}

function readSourceDirs(r: Reader, entry: Entry | undefined): string[] | undefined {
  if (!entry) {
    r.add('source_dirs', undefined, 'missing (the list of absolute directories to back up)');
    return undefined;
  }
  const items = r.stringList(entry, 'absolute directory paths');
  if (!items) return undefined;
  if (items.length === 0) {
    r.fail(entry, 'is empty: list at least one directory to back up');
    return undefined;
  }
  const dirs: { dir: string; node: unknown }[] = [];
  let ok = true;
  for (const { value, node } of items) {
    const abs = absolutePath(value);
    if (typeof abs !== 'string') {
      r.fail(entry, abs.error, node);
      ok = false;
      continue;
    }
    const clash = dirs.find((d) => d.dir === abs);
    if (clash) {
      r.fail(entry, `${JSON.stringify(value)} is listed twice (first on line ${r.lineOf(clash.node) ?? '?'})`, node);
      ok = false;
      continue;
    }
    dirs.push({ dir: abs, node });
  }
  // Nested source dirs would put the same files into one snapshot twice, under one path.
  for (const inner of dirs) {
    const outer = dirs.find((o) => o !== inner && (o.dir === '/' || inner.dir.startsWith(`${o.dir}/`)));
    if (outer) {
      r.fail(entry, `${JSON.stringify(inner.dir)} is inside ${JSON.stringify(outer.dir)}, which is also listed; list only one (use exclude: to leave parts out)`, inner.node);
      ok = false;
    }
  }
  return ok ? dirs.map((d) => d.dir) : undefined;
}

function readExcludes(r: Reader, entry: Entry | undefined, sourceDirs: readonly string[] | undefined): string[] | undefined {
  if (!entry) return [...CONFIG_DEFAULTS.exclude];
  const items = r.stringList(entry, 'patterns');
  if (!items) return undefined;
  let ok = true;
  for (const { value, node } of items) {
    try {
      compileExcludes([value]);
    } catch (err) {
      if (!(err instanceof ExcludePatternError)) throw err;
      r.fail(entry, err.message, node);
      ok = false;
      continue;
    }
    const body = value.startsWith('!') ? value.slice(1) : value;
    const whole = sourceDirs?.find((d) => d !== '/' && (body === d || body === `${d}/`));
    if (whole !== undefined) {
      // Without this check "/etc" would silently be read as "etc" under every source dir.
      r.fail(entry, `${JSON.stringify(value)} names the whole source dir ${whole}; remove it from source_dirs instead`, node);
      ok = false;
    }
  }
  return ok ? items.map((i) => i.value) : undefined;
}

/**
 * A file path key (`signing_key`, `allowed_signers`): a relative path is relative to the config
 * file's directory, like `age_recipients_file`. The file is not read here.
 */
function readFilePath(r: Reader, entry: Entry | undefined, baseDir: string, what: string): string | undefined {
  if (!entry) return undefined;
  const p = r.string(entry, what);
  if (p === undefined) return undefined;
  if (p.includes('\0')) {
    r.fail(entry, 'contains a NUL character');
    return undefined;
  }
  if (p.startsWith('~')) {
    r.fail(entry, `${JSON.stringify(p)}: "~" is not expanded; write the full path or one relative to the config file`);
    return undefined;
  }
  return resolve(baseDir, p);
}

function readRecipients(r: Reader, top: Map<string, Entry>, baseDir: string, readFile: (path: string) => string): string[] | undefined {
  const found: string[] = [];
  let ok = true;
  const add = (entry: Entry, text: string, node?: unknown): void => {
    try {
      found.push(checkRecipient(text));
    } catch (err) {
      r.fail(entry, (err as Error).message, node);
      ok = false;
    }
  };

  const single = top.get('age_recipient');
  if (single) {
    if (isSeq(single.value)) {
      r.fail(single, 'expected one recipient; for several, use age_recipients: [age1..., age1...]');
      ok = false;
    } else {
      const s = r.string(single, 'an age recipient (age1...)');
      if (s === undefined) ok = false;
      else add(single, s);
    }
  }

  const list = top.get('age_recipients');
  if (list) {
    const items = r.stringList(list, 'age recipients (age1...)');
    if (!items) ok = false;
    else if (items.length === 0) {
      r.fail(list, 'is empty');
      ok = false;
    } else for (const { value, node } of items) add(list, value, node);
  }

  const fileEntry = top.get('age_recipients_file');
  if (fileEntry) {
    const p = r.string(fileEntry, 'a file path');
    if (p === undefined) ok = false;
    else if (p.startsWith('~')) {
      r.fail(fileEntry, `${JSON.stringify(p)}: "~" is not expanded; write the full path or one relative to the config file`);
      ok = false;
    } else {
      const file = resolve(baseDir, p);
      let text: string | undefined;
      try {
        text = readFile(file);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
        r.fail(fileEntry, `cannot read ${file}: ${why}`);
        ok = false;
      }
      if (text !== undefined) {
        const { recipients, problems } = checkRecipientsFile(text);
        for (const problem of problems) {
          r.issues.push({ source: file, line: problem.line > 0 ? problem.line : undefined, message: problem.message });
        }
        if (problems.length > 0) {
          r.fail(fileEntry, `${file} has ${problems.length === 1 ? 'a problem' : `${problems.length} problems`} (listed with its name)`);
          ok = false;
        }
        found.push(...recipients);
      }
    }
  }

  if (!single && !list && !fileEntry) {
    r.add('age_recipient', undefined, 'missing: set age_recipient (one age1... public key), age_recipients (a list) or age_recipients_file');
    return undefined;
  }
  return ok ? [...new Set(found)] : undefined;
}

/**
 * Parses and validates a config file's text.
 *
 * `sourceName` is how messages name the file (as the user wrote it). A relative
 * `age_recipients_file` is resolved against `options.baseDir`, by default the directory of
 * `sourceName`. Secrets left out of the `s3:` block stay undefined: the S3 store then takes them
 * from the AWS SDK's default chain (AWS_* environment variables, profiles, instance roles).
 *
 * @throws ConfigError (exit code 2) listing every problem found, each as
 *   `<file>:<line>: <key>: <message>`.
 */
export function parseConfig(text: string, sourceName: string, options: ParseConfigOptions = {}): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false, keepSourceTokens: true });
  const yamlProblems = [...doc.errors, ...doc.warnings];
  if (yamlProblems.length > 0) {
    // One mistake often yields several parser errors on one line; the first is the telling one.
    const seen = new Set<number>();
    throw new ConfigError(
      yamlProblems.flatMap((e) => {
        const at = lines.linePos(e.pos[0]).line;
        const opened = openedBefore(doc, e.pos[0]);
        const openLine = opened === undefined ? at : lines.linePos(opened).line;
        if (seen.has(openLine)) return [];
        seen.add(openLine);
        return [{
          source: sourceName,
          line: openLine,
          message: `YAML syntax error: ${e.message.split('\n')[0]!}${openLine < at ? ` (opened on line ${openLine}, still open on line ${at})` : ''}`,
        }];
      }),
    );
  }
  const r = new Reader(sourceName, doc, lines);
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    throw new ConfigError([{ source: sourceName, message: 'the file is empty; it needs at least source_dirs, age_recipient and an s3: or local: block' }]);
  }
  const top = r.map(doc.contents, undefined, TOP_KEYS, 'top');
  if (!top) throw new ConfigError(r.issues);

  const sourceDirs = readSourceDirs(r, top.get('source_dirs'));
  const exclude = readExcludes(r, top.get('exclude'), sourceDirs);
  const oneFsEntry = top.get('one_file_system');
  const oneFileSystem = oneFsEntry ? r.boolean(oneFsEntry) : false;
  const baseDir = options.baseDir ?? dirname(resolve(sourceName));
  const recipients = readRecipients(r, top, baseDir, options.readFile ?? ((p) => readFileSync(p, 'utf8')));
  const storage = readStorage(r, top);

  const duration = (key: string, fallback: number, min: number): number | undefined => {
    const e = top.get(key);
    if (!e) return fallback;
    const v = r.duration(e);
    if (v !== undefined && v < min) {
      r.fail(e, `must be at least ${min / 1000}s`);
      return undefined;
    }
    return v;
  };
  const backupInterval = duration('backup_interval', CONFIG_DEFAULTS.backupInterval, 1000);
  const fullScanInterval = duration('full_scan_interval', CONFIG_DEFAULTS.fullScanInterval, 1000);
  const minTimeBetweenRun = duration('min_time_between_run', CONFIG_DEFAULTS.minTimeBetweenRun, 0);

  let indexPath: string | undefined = defaultIndexPath(options);
  const indexEntry = top.get('index_path');
  if (indexEntry) {
    const p = r.string(indexEntry, 'an absolute file path');
    const abs = p === undefined ? undefined : absolutePath(p);
    if (typeof abs === 'string' && abs === '/') {
      r.fail(indexEntry, 'must name a file, not "/"');
      indexPath = undefined;
    } else if (abs !== undefined && typeof abs !== 'string') {
      r.fail(indexEntry, abs.error);
      indexPath = undefined;
    } else indexPath = abs;
  }

  let chunkSize: number | undefined = CONFIG_DEFAULTS.chunkSize;
  const chunkEntry = top.get('chunk_size');
  if (chunkEntry) {
    chunkSize = r.size(chunkEntry);
    if (chunkSize !== undefined && (chunkSize < CHUNK_SIZE_MIN || chunkSize > CHUNK_SIZE_MAX)) {
      r.fail(chunkEntry, `${formatSize(chunkSize)} is outside the supported range (${formatSize(CHUNK_SIZE_MIN)}–${formatSize(CHUNK_SIZE_MAX)})`);
      chunkSize = undefined;
    }
  }
  let blobSizeLimit: number | undefined = CONFIG_DEFAULTS.blobSizeLimit;
  const blobEntry = top.get('blob_size_limit');
  if (blobEntry) {
    blobSizeLimit = r.size(blobEntry);
    if (blobSizeLimit !== undefined && blobSizeLimit > BLOB_SIZE_LIMIT_MAX) {
      r.fail(blobEntry, `${formatSize(blobSizeLimit)} is more than S3's largest object (5 TiB)`);
      blobSizeLimit = undefined;
    }
  }
  if (chunkSize !== undefined && blobSizeLimit !== undefined && blobSizeLimit < maxChunkSize(chunkSize)) {
    const at = blobEntry ?? chunkEntry!;
    r.fail(at, `blob_size_limit (${formatSize(blobSizeLimit)}) must hold the largest chunk, ${MAX_CHUNK_FACTOR} × chunk_size = ${formatSize(maxChunkSize(chunkSize))}`);
    blobSizeLimit = undefined;
  }

  let indexPrefix: string | undefined = CONFIG_DEFAULTS.indexPrefix;
  const prefixEntry = top.get('index_prefix');
  if (prefixEntry) {
    const p = r.string(prefixEntry, 'a key prefix like "index/"');
    const n = p === undefined ? undefined : keyPrefix(p);
    if (n !== undefined && typeof n !== 'string') {
      r.fail(prefixEntry, n.error);
      indexPrefix = undefined;
    } else if (n === 'blobs/' || n?.startsWith('blobs/')) {
      // prune deletes unreferenced objects under blobs/: snapshot metadata there would be lost.
      r.fail(prefixEntry, `${JSON.stringify(p)} is inside blobs/, where prune deletes unreferenced objects`);
      indexPrefix = undefined;
    } else indexPrefix = n;
  }

  let compressionLevel: number | undefined = CONFIG_DEFAULTS.compressionLevel;
  const levelEntry = top.get('compression_level');
  if (levelEntry) compressionLevel = r.integer(levelEntry, 1, 19);

  let hostname: string | undefined;
  const hostEntry = top.get('hostname');
  if (hostEntry) {
    const h = r.string(hostEntry, 'a host name');
    if (h !== undefined && !HOSTNAME_RE.test(h)) {
      r.fail(hostEntry, `${JSON.stringify(h)} cannot be used in snapshot ids: use letters, digits, ".", "_" and "-", starting with a letter or digit`);
    } else hostname = h;
  } else {
    const h = options.hostname ?? osHostname();
    if (HOSTNAME_RE.test(h)) hostname = h;
    else r.add('hostname', undefined, `this machine's host name ${JSON.stringify(h)} cannot be used in snapshot ids; set hostname: in the config`);
  }

  const signingKey = readFilePath(r, top.get('signing_key'), baseDir, 'the path of an SSH Ed25519 private key');
  const allowedSigners = readFilePath(r, top.get('allowed_signers'), baseDir, 'the path of an allowed_signers file');
  const monitoring = readMonitoring(r, top, absolutePath);

  if (r.issues.length > 0) throw new ConfigError(sortIssues(r.issues, sourceName));
  return {
    sourceDirs: sourceDirs!,
    exclude: exclude!,
    oneFileSystem: oneFileSystem!,
    recipients: recipients!,
    storage: storage!,
    backupInterval: backupInterval!,
    fullScanInterval: fullScanInterval!,
    minTimeBetweenRun: minTimeBetweenRun!,
    indexPath: indexPath!,
    chunkSize: chunkSize!,
    blobSizeLimit: blobSizeLimit!,
    indexPrefix: indexPrefix!,
    compressionLevel: compressionLevel!,
    hostname: hostname!,
    ...(signingKey !== undefined ? { signingKey } : {}),
    ...(allowedSigners !== undefined ? { allowedSigners } : {}),
    ...(monitoring !== undefined ? { monitoring } : {}),
    sourcePath: options.sourcePath ?? sourceName,
  };
}

/**
 * Where the innermost quoted string or flow collection ('[', '{') that is still open at `pos`
 * began: YAML notices a missing closing quote or bracket only lines later (often at the end of
 * the file), but the line to fix is the one where it was opened.
 */
function openedBefore(doc: Document, pos: number): number | undefined {
  let start: number | undefined;
  visit(doc, (_key, node) => {
    if (!isNode(node) || !node.range) return;
    const quoted = isScalar(node) && (node.type === 'QUOTE_DOUBLE' || node.type === 'QUOTE_SINGLE');
    const flow = (isMap(node) || isSeq(node)) && node.flow === true;
    if ((quoted || flow) && node.range[0] < pos && node.range[1] >= pos && (start === undefined || node.range[0] > start)) {
      start = node.range[0];
    }
  });
  return start;
}

/** The config file's issues in line order (placeless ones last), then those of other files. */
function sortIssues(issues: readonly ConfigIssue[], sourceName: string): ConfigIssue[] {
  const own = issues.filter((i) => i.source === sourceName);
  const other = issues.filter((i) => i.source !== sourceName);
  own.sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
  return [...own, ...other];
}

/**
 * Reads and validates a config file. Messages name the file as `path` was given;
 * `Config.sourcePath` is its absolute path.
 *
 * @throws ConfigError (exit code 2) when the file cannot be read or is not a valid config.
 */
export function loadConfig(path: string, options: ParseConfigOptions = {}): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : (err as Error).message;
    throw new ConfigError([{ source: path, message: `cannot read the config file: ${why}` }], { cause: err });
  }
  return parseConfig(text, path, { sourcePath: resolve(path), ...options });
}
