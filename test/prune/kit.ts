/**
 * Test kit for prune, forget and verify: builds real snapshots (real blobs: zstd frames in age
 * files named by their SHA-256; real metadata and manifests) without the backup engine, with
 * full control over what is shared between snapshots and when things are published, and reads
 * them back byte for byte without the restore engine.
 *
 * API
 *   const keys = newKeys();                                  identity + recipient
 *   const src = new Source(storage, keys, { host, tmpDir, chunkSize?, blobLimit? });
 *   const snap = await src.backup(time, files)               uploads new chunks and shards, publishes
 *   const run = await src.backup(time, files, { publish: false }); ... await run.publish()
 *   await readSnapshot(storage, id, identities, tmpDir)      Map<path, Buffer> of every file
 *   setMtime(root, key, date)                                age an object of a local store
 *   blobKeys(storage) / indexKeys(storage)                   listings
 *   sampleFiles(seed, names, size)                           deterministic file contents
 *
 * Chunking is fixed-size (chunkSize bytes), so equal content at equal offsets dedups across
 * snapshots. A Source dedups like vaultik's cache: against chunks it uploaded before (all of
 * them, unless `resetDedup()` is called).
 */
import { createHash } from 'node:crypto';
import { utimesSync } from 'node:fs';
import { join } from 'node:path';
import { BlobWriter, blobKey, readChunk, storageReadRange } from '../../src/blob/index.js';
import { compressFrame } from '../../src/compress/zstd.js';
import { AgeRandomAccess, Identity, generateKeyPair, parseIdentity, parseRecipient, type Recipient } from '../../src/crypto/index.js';
import {
  SnapshotWriter,
  makeSnapshotId,
  openSnapshot,
  type BlobRef,
  type ChunkLocation,
  type Entry,
} from '../../src/snapshot/index.js';
import type { Storage } from '../../src/storage/types.js';
import { listingOf, setStoreTime } from '../helpers/snapshots.js';

export const INDEX = 'index/';
export const DAY = 24 * 3600 * 1000;

export interface Keys {
  identity: Identity;
  recipient: Recipient;
  /** The AGE-SECRET-KEY-1… string (for VAULTIK_PRIVATE_KEY). */
  secret: string;
}

export function newKeys(): Keys {
  const kp = generateKeyPair();
  return { identity: parseIdentity(kp.identity), recipient: parseRecipient(kp.recipient), secret: kp.identity };
}

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

/** Deterministic pseudo-random bytes (xorshift), distinct per seed. */
export function pseudoRandom(seed: number, size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** name → content, each file `size` bytes from seed `seed + index`. */
export function sampleFiles(seed: number, names: readonly string[], size: number): Record<string, Buffer> {
  return Object.fromEntries(names.map((n, i) => [n, pseudoRandom(seed * 1000 + i, size)]));
}

export interface BackupRun {
  id: string;
  /** Blobs the snapshot references. */
  blobs: BlobRef[];
  /** Blobs this run uploaded: its new data blobs, then its shards. */
  uploaded: string[];
  /** The snapshot's shard blobs (all uploaded by this run: a Source reuses no shard). */
  shards: string[];
  /** Writes manifest then metadata (already done unless `publish: false`). */
  publish(): Promise<void>;
}

export class Source {
  private known = new Map<string, ChunkLocation>();
  readonly chunkSize: number;
  readonly blobLimit: number;

  constructor(
    readonly storage: Storage,
    readonly keys: Keys,
    readonly options: {
      host: string;
      tmpDir: string;
      chunkSize?: number;
      blobLimit?: number;
      recipients?: Recipient[];
      sourceDirs?: string[];
      /** Leave the store's time of the root as the store set it (a forger cannot choose it). */
      keepStoreTime?: boolean;
    },
  ) {
    this.chunkSize = options.chunkSize ?? 4096;
    this.blobLimit = options.blobLimit ?? 64 * 1024;
  }

  /** Forget what was uploaded: the next backup uploads everything again. */
  resetDedup(): void {
    this.known.clear();
  }

  /** Dedup against exactly these chunk locations (e.g. another source's). */
  get chunkIndex(): Map<string, ChunkLocation> {
    return this.known;
  }

  /**
   * Backs up `files` (path under "data/" → content) as a snapshot taken at `time`: new chunks
   * are packed into blobs of about blobLimit bytes and uploaded, then (unless publish is false)
   * the manifest and metadata are written.
   */
  async backup(time: Date, files: Record<string, Buffer>, options: { publish?: boolean } = {}): Promise<BackupRun> {
    const id = makeSnapshotId(this.options.host, time);
    const recipients = this.options.recipients ?? [this.keys.recipient];
    const fileChunks = new Map<string, Buffer[]>();
    const pending: { id: Buffer; offset: number; length: number; plainLength: number }[] = [];
    const uploaded: string[] = [];
    const sizes = new Map<string, number>();
    let writer: BlobWriter | undefined;
    const seal = async (): Promise<void> => {
      if (!writer) return;
      const blob = await writer.finish();
      await this.storage.put(blobKey(blob.hash), blob.body, { sha256: blob.sha256 });
      await blob.dispose();
      uploaded.push(blob.hash);
      sizes.set(blob.hash, blob.size);
      for (const p of pending.splice(0)) {
        this.known.set(p.id.toString('hex'), { id: p.id, blob: blob.hash, offset: p.offset, length: p.length, plainLength: p.plainLength });
      }
      writer = undefined;
    };
    for (const [name, content] of Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1))) {
      const ids: Buffer[] = [];
      for (let off = 0; off < content.length; off += this.chunkSize) {
        const chunk = content.subarray(off, off + this.chunkSize);
        const cid = sha256(chunk);
        ids.push(cid);
        const hex = cid.toString('hex');
        if (this.known.has(hex) || pending.some((p) => p.id.equals(cid))) continue;
        writer ??= new BlobWriter({ recipients, spoolDir: this.options.tmpDir });
        const frame = compressFrame(chunk, 3);
        const loc = writer.addFrame(frame, chunk.length);
        pending.push({ id: cid, offset: loc.offset, length: loc.length, plainLength: chunk.length });
        if (writer.plaintextSize >= this.blobLimit) await seal();
      }
      fileChunks.set(name, ids);
    }
    await seal();

    const dbPath = join(this.options.tmpDir, `${id}.db`);
    const w = new SnapshotWriter(dbPath);
    const entry = (path: string, type: Entry['type'], size = 0): Entry => ({
      path: Buffer.from(path),
      type,
      mode: type === 'dir' ? 0o755 : 0o644,
      uid: 1000,
      gid: 1000,
      mtimeNs: BigInt(time.getTime()) * 1_000_000n,
      size,
    });
    w.addEntry(entry('data', 'dir'));
    const blobs = new Map<string, number>();
    for (const [name, ids] of fileChunks) {
      w.addEntry(entry(`data/${name}`, 'file', files[name]!.length), ids);
      for (const cid of ids) {
        const loc = this.known.get(cid.toString('hex'))!;
        w.addChunk(loc);
        if (!blobs.has(loc.blob)) blobs.set(loc.blob, sizes.get(loc.blob) ?? (await this.storage.stat(blobKey(loc.blob))).size);
      }
    }
    for (const [hash, size] of blobs) w.addBlob(hash, size);
    const summary = {
      id,
      startTime: time,
      endTime: time,
      toolVersion: 'test',
      sourceDirs: this.options.sourceDirs ?? ['/data'],
      excludes: [],
      chunkSize: this.chunkSize,
      blobSizeLimit: this.blobLimit,
      compressionLevel: 3,
    };
    // Built now (its shards and blob list), published now or when the test says.
    const built = await w.publish(this.storage, summary, { indexPrefix: INDEX, recipients, holdRoot: true });
    const publish = async (): Promise<void> => {
      const published = await built.publishRoot();
      // The store records the root when the backup ends: a second after its start here.
      if (this.options.keepStoreTime) return;
      for (const key of [published.metadataKey, published.manifestKey]) setStoreTime(this.storage, key, new Date(time.getTime() + 1000));
    };
    if (options.publish !== false) await publish();
    const shards = built.shards.map((sh) => sh.hash);
    return { id, blobs: built.manifestBlobs, uploaded: [...uploaded, ...shards], shards, publish };
  }
}

/**
 * Every file of a snapshot, read back chunk by chunk (random access, chunk ids verified).
 * @throws whatever opening or reading fails with (missing blob, wrong key, corrupt data).
 */
export async function readSnapshot(storage: Storage, id: string, identities: readonly Identity[], tmpDir: string): Promise<Map<string, Buffer>> {
  const reader = await openSnapshot(storage, await listingOf(storage, INDEX, id), identities, tmpDir);
  try {
    const sizes = new Map(reader.blobs().map((b) => [b.hash, b.size]));
    const opened = new Map<string, AgeRandomAccess>();
    const out = new Map<string, Buffer>();
    for (const e of reader.entries()) {
      if (e.type !== 'file') continue;
      const parts: Buffer[] = [];
      for (const c of reader.fileChunks(e.path)) {
        let ra = opened.get(c.blob);
        if (!ra) {
          ra = await AgeRandomAccess.open(storageReadRange(storage, blobKey(c.blob)), sizes.get(c.blob)!, identities);
          opened.set(c.blob, ra);
        }
        parts.push(await readChunk(ra, c, c.id));
      }
      out.set(e.path.toString().replace(/^data\//, ''), Buffer.concat(parts));
    }
    return out;
  } finally {
    reader.close();
  }
}

/** Sets the mtime (the store timestamp) of an object of a local store rooted at `root`. */
export function setMtime(root: string, key: string, date: Date): void {
  utimesSync(join(root, ...key.split('/')), date, date);
}

/** Every key under `prefix`, sorted. */
export async function keysUnder(storage: Storage, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of storage.list(prefix)) keys.push(o.key);
  return keys.sort();
}

export const blobKeys = (storage: Storage): Promise<string[]> => keysUnder(storage, 'blobs/');
export const allKeys = (storage: Storage): Promise<string[]> => keysUnder(storage, '');
