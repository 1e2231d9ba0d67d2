/**
 * Test kit for src/restore.
 *
 * `snapshotTree` backs a real directory up into a store with the real format pieces — the
 * source walker, FastCDC, zstd frames, BlobWriter, SnapshotWriter — but none of
 * the backup engine's policy (no state cache, one blob at a time). It keeps these tests
 * independent of src/backup; the CLI round trip (roundtrip.test.ts) also runs the real
 * `vaultik backup` when it is available.
 *
 * Also: a key pair, forged stores for the hostile-restore tests, a Storage wrapper counting what
 * is downloaded, and helpers to run the CLI.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { BlobWriter, blobKey } from '../../src/blob/index.js';
import { chunkBuffer, chunkerOptions } from '../../src/chunker/index.js';
import { compressFrame } from '../../src/compress/zstd.js';
import { generateKeyPair, parseIdentity, parseRecipient, type Identity, type Recipient } from '../../src/crypto/index.js';
import { walk } from '../../src/fs/walk.js';
import { SnapshotWriter, makeSnapshotId, type ChunkLocation, type Entry, type ShardLimits } from '../../src/snapshot/index.js';
import { openStorage } from '../../src/storage/index.js';
import type { ByteRange, ObjectInfo, PutBody, PutOptions, Storage } from '../../src/storage/types.js';
import { runMain } from '../helpers/io.js';

export interface TestKey {
  identity: string;
  recipient: string;
  identities: Identity[];
  recipients: Recipient[];
  /** An age identity file written by `writeKeyFile`. */
  file?: string;
}

export function makeKey(): TestKey {
  const kp = generateKeyPair();
  return { ...kp, identities: [parseIdentity(kp.identity)], recipients: [parseRecipient(kp.recipient)] };
}

export function writeKeyFile(key: TestKey, path: string): string {
  writeFileSync(path, `${key.identity}\n`, { mode: 0o600 });
  key.file = path;
  return path;
}

export interface SnapshotTreeOptions {
  recipients: readonly Recipient[];
  /** Work directory for the metadata DB and blob spools. */
  tmp: string;
  host?: string;
  time?: Date;
  /** FastCDC average (default 16 KiB, so a few MiB make many chunks). */
  chunkSize?: number;
  /** Close a blob once its stored size passes this (default 1 GiB: one blob). */
  blobSizeLimit?: number;
  indexPrefix?: string;
  /** Called with each finished shard DB before it is published (tests that craft hostile metadata). */
  tamper?: (dbPath: string) => void;
  /** Where shards are cut (default: src/snapshot/shardCut.ts's, one shard for a small tree). */
  shardLimits?: ShardLimits;
  /**
   * Frames appended to the last data blob, used by no file: forged-metadata tests point chunks
   * at them from `tamper`. Each one's `location` is filled in before `tamper` runs.
   */
  extraFrames?: ExtraFrame[];
}

export interface ExtraFrame {
  frame: Buffer;
  plainLength: number;
  location?: { blob: string; offset: number; length: number };
}

export interface SnapshotTreeResult {
  id: string;
  /** The data blobs. */
  blobs: { hash: string; size: number }[];
  /** The shard blobs (its manifest lists them after the data blobs). */
  shards: { hash: string; size: number }[];
  /** Snapshot path (latin1) → its chunks, for tests that tamper with data. */
  chunksOf: Map<string, ChunkLocation[]>;
}

/** Ids a minute in the past, one millisecond apart: distinct and in order of creation. */
const BASE_TIME = Math.floor(Date.now() / 1000) * 1000 - 60_000;
let counter = 0;

/** Backs up `sourceDir` into `storage` (see the top of this file). */
export async function snapshotTree(storage: Storage, sourceDir: string, options: SnapshotTreeOptions): Promise<SnapshotTreeResult> {
  // Dated shortly before the store records it, as a real backup is (older ids are suspect).
  const time = options.time ?? new Date(BASE_TIME + counter++);
  const id = makeSnapshotId(options.host ?? 'testhost', time);
  const dbPath = join(options.tmp, `snap-${process.pid}-${counter++}.db`);
  const writer = new SnapshotWriter(dbPath);
  const chunker = chunkerOptions(options.chunkSize ?? 16 * 1024);
  const limit = options.blobSizeLimit ?? 1 << 30;
  const known = new Map<string, { offset: number; length: number; plainLength: number; blob?: string }>();
  const pending: { id: Buffer; offset: number; length: number; plainLength: number }[] = [];
  const blobs: { hash: string; size: number }[] = [];
  const chunksOf = new Map<string, ChunkLocation[]>();
  const fileChunkIds = new Map<string, Buffer[]>();
  let blob = new BlobWriter({ recipients: options.recipients, spoolDir: options.tmp });

  const seal = async (): Promise<void> => {
    if (blob.frameCount === 0) return;
    const done = await blob.finish();
    await storage.put(blobKey(done.hash), done.body, { sha256: done.sha256 });
    await done.dispose();
    writer.addBlob(done.hash, done.size);
    blobs.push({ hash: done.hash, size: done.size });
    for (const c of pending) {
      const loc = { id: c.id, blob: done.hash, offset: c.offset, length: c.length, plainLength: c.plainLength };
      writer.addChunk(loc);
      known.get(c.id.toString('hex'))!.blob = done.hash;
    }
    pending.length = 0;
    blob = new BlobWriter({ recipients: options.recipients, spoolDir: options.tmp });
  };

  const entries: Entry[] = [];
  for await (const w of walk([sourceDir], { onWarning: () => undefined })) {
    const e = w.entry;
    entries.push(e);
    if (e.type !== 'file' || e.size === 0 || w.hardLinkTo) {
      writer.addEntry(e);
      continue;
    }
    const data = readFileSync(w.absPath);
    const ids: Buffer[] = [];
    let pos = 0;
    for (const len of chunkBuffer(data, chunker)) {
      const chunk = data.subarray(pos, pos + len);
      pos += len;
      const cid = createHash('sha256').update(chunk).digest();
      ids.push(cid);
      const hex = cid.toString('hex');
      if (known.has(hex)) continue;
      const loc = blob.addFrame(compressFrame(chunk), len);
      known.set(hex, { ...loc, plainLength: len });
      pending.push({ id: cid, offset: loc.offset, length: loc.length, plainLength: len });
      if (blob.ciphertextSize >= limit) await seal();
    }
    writer.addEntry({ ...e, size: data.length }, ids);
    fileChunkIds.set(e.path.toString('latin1'), ids);
  }
  const extra = (options.extraFrames ?? []).map((f) => ({ f, at: blob.addFrame(f.frame, f.plainLength) }));
  await seal();
  for (const { f, at } of extra) f.location = { blob: blobs[blobs.length - 1]!.hash, ...at };
  for (const [path, ids] of fileChunkIds) {
    chunksOf.set(
      path,
      ids.map((cid) => {
        const k = known.get(cid.toString('hex'))!;
        return { id: cid, blob: k.blob!, offset: k.offset, length: k.length, plainLength: k.plainLength };
      }),
    );
  }
  const built = await writer.publish(
    storage,
    {
      id,
      startTime: time,
      endTime: new Date(time.getTime() + 1000),
      toolVersion: '0.0.0-test',
      sourceDirs: [sourceDir],
      excludes: [],
      chunkSize: chunker.avgSize,
      blobSizeLimit: limit,
      compressionLevel: 3,
    },
    {
      indexPrefix: options.indexPrefix ?? 'index/',
      recipients: options.recipients,
      ...(options.tamper ? { tamperShard: options.tamper } : {}),
      ...(options.shardLimits ? { limits: options.shardLimits } : {}),
    },
  );
  return { id, blobs, shards: built.shards.map((sh) => ({ hash: sh.hash, size: sh.size })), chunksOf };
}

/** The snapshot path of an absolute source path ('/a/b' → 'a/b'). */
export function snapPath(abs: string | Buffer): Buffer {
  const b = Buffer.from(abs);
  return b[0] === 0x2f ? b.subarray(1) : b;
}

export interface ForgedStore {
  /** The source tree under `dir` (its files are the snapshot's entries). */
  src: string;
  /** An empty directory next to the target: a restore must never write into it. */
  outside: string;
  /** Where to restore (not created). */
  target: string;
  storage: Storage;
}

/**
 * The fixture of the hostile-restore tests: writes `files` (paths relative to the source) under
 * `dir`/src, backs them up into a local store under `dir`, and lets `tamper` forge the finished
 * metadata DB before it is encrypted and published, as anyone with the public key can.
 * `tamper` gets the source's snapshot path (entries are below it); it runs on each shard DB
 * (one for a small tree, unless `shardLimits` cuts more).
 */
export async function forgedStore(
  dir: string,
  key: TestKey,
  files: Record<string, string | Buffer>,
  tamper?: (db: Database.Database, base: Buffer) => void,
  shardLimits?: ShardLimits,
): Promise<ForgedStore> {
  const src = join(dir, 'src');
  const outside = join(dir, 'outside');
  mkdirSync(outside, { recursive: true });
  for (const [name, data] of Object.entries(files)) {
    mkdirSync(dirname(join(src, name)), { recursive: true });
    writeFileSync(join(src, name), data);
  }
  mkdirSync(join(dir, 'store'), { recursive: true }); // vaultik never creates the store directory itself.
  const storage = openStorage({ type: 'local', path: join(dir, 'store'), prefix: '' });
  const forge = tamper
    ? (dbPath: string): void => {
        const db = new Database(dbPath);
        try {
          tamper(db, snapPath(src));
        } finally {
          db.close();
        }
      }
    : undefined;
  // One shard unless the test asks otherwise: with the default cut, a random temp path is a
  // shard boundary 1 time in 1024, and `tamper` would then miss the entries it edits.
  await snapshotTree(storage, src, { recipients: key.recipients, tmp: dir, tamper: forge, shardLimits: shardLimits ?? ONE_SHARD });
  return { src, outside, target: join(dir, 'target'), storage };
}

/** Limits that keep a small test tree in one shard (a boundary needs a path hash of 0). */
const ONE_SHARD: ShardLimits = { boundaryBits: 32, minEntries: 1, maxEntries: 8192, maxBytes: 2 ** 50 };

/** Wraps a Storage and counts ranged reads of blobs (requests and bytes asked for). */
export class CountingStorage implements Storage {
  readonly description: string;
  blobGets = 0;
  blobBytes = 0;
  readonly gets: { key: string; range?: ByteRange }[] = [];

  constructor(private readonly inner: Storage) {
    this.description = inner.description;
  }

  put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    return this.inner.put(key, body, options);
  }

  async get(key: string, range?: ByteRange, options?: { signal?: AbortSignal }): Promise<Readable> {
    this.gets.push({ key, range });
    const stream = await this.inner.get(key, range, options);
    if (!key.startsWith('blobs/')) return stream;
    this.blobGets++;
    stream.on('data', (c: Buffer) => {
      this.blobBytes += c.length;
    });
    return stream;
  }

  stat(key: string): Promise<ObjectInfo> {
    return this.inner.stat(key);
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix);
  }

  delete(keys: string[]): Promise<void> {
    return this.inner.delete(keys);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const CLI = new URL('../../src/cli/main.ts', import.meta.url).pathname;

/**
 * Runs the CLI (the TypeScript sources, transpiled on load by test/helpers/ts-hooks.mjs) in a
 * child process with exactly `env` (plus PATH).
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv, options: { cwd?: string; input?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...cliNodeArgs(), CLI, ...args], {
      env: { PATH: process.env.PATH, ...env },
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/** Starts the CLI (the sources) as a child with exactly `env` (plus PATH); stdout and stderr are piped. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv, cwd?: string): ChildProcessWithoutNullStreams {
  const child = spawn(process.execPath, [...cliNodeArgs(), CLI, ...args], { env: { PATH: process.env.PATH, ...env }, cwd, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end();
  return child;
}

/**
 * A new local store under `dir` (prefix 'pc/', host 'h') holding one snapshot of the tree `fill`
 * writes into `dir`/src; the key's identity is in a file, for VAULTIK_PRIVATE_KEY.
 */
export async function localSnapshot(dir: string, fill: (src: string) => void): Promise<{ src: string; store: string; keyFile: string }> {
  const key = makeKey();
  const keyFile = writeKeyFile(key, join(dir, 'key.txt'));
  const src = join(dir, 'src');
  const store = join(dir, 'store');
  mkdirSync(src);
  mkdirSync(store);
  fill(src);
  await snapshotTree(openStorage({ type: 'local', path: store, prefix: 'pc/' }), src, { recipients: key.recipients, tmp: dir, host: 'h' });
  return { src, store, keyFile };
}

/** Node flags that let a child run the .ts sources directly. */
export function cliNodeArgs(): string[] {
  return ['--no-warnings', '--import', new URL('../helpers/ts-register.mjs', import.meta.url).href];
}

export interface CliBackupOptions {
  src: string;
  /** The config's store block, e.g. `local: {path: /x, prefix: host1}` or an `s3: {...}` line. */
  storeYaml: string;
  recipient: string;
  /** Directory for the config file and the state cache. */
  work: string;
  chunkSize?: string;
  blobSizeLimit?: string;
  hostname?: string;
}

/**
 * Runs the real `vaultik backup <config.yaml> --json` (in this process, through the CLI's main)
 * and returns its exit code and output. The config's state cache lives under `work`.
 */
export async function cliBackup(options: CliBackupOptions): Promise<CliResult & { config: string }> {
  const config = join(options.work, `backup-${process.pid}-${counter++}.yaml`);
  writeFileSync(
    config,
    [
      `source_dirs: [${JSON.stringify(options.src)}]`,
      `age_recipient: ${options.recipient}`,
      options.storeYaml,
      `index_path: ${JSON.stringify(join(options.work, 'state', 'index.sqlite'))}`,
      `chunk_size: ${options.chunkSize ?? '64KiB'}`,
      `blob_size_limit: ${options.blobSizeLimit ?? '1MiB'}`,
      `hostname: ${options.hostname ?? 'testhost'}`,
    ].join('\n') + '\n',
  );
  return { ...(await runMain(['backup', config, '--json'], process.env)), config };
}

/** The summary line of `restore --json` / `fetch --json` output (JSON lines). */
export function jsonSummary(stdout: string): { failed: number; failures: { path: string; message: string }[]; [k: string]: unknown } {
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string });
  const summary = lines.find((l) => l.type === 'summary');
  if (!summary) throw new Error(`no summary line in ${stdout}`);
  return summary as unknown as ReturnType<typeof jsonSummary>;
}
