/**
 * Test kit for src/snapshot: an in-memory Storage (keeps these tests independent of the storage
 * backends) and a sample snapshot holding every entry type, a non-UTF-8 name, a hard-link group,
 * multi-chunk, empty and deduplicated files.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { StorageError, type ByteRange, type ObjectInfo, type PutBody, type Storage } from '../../src/storage/types.js';
import { ShardWriter, SnapshotWriter, makeSnapshotId, type ChunkLocation, type Entry, type FinishedShard, type SnapshotSummary } from '../../src/snapshot/index.js';

export class MemoryStorage implements Storage {
  readonly description = 'memory://test/';
  readonly objects = new Map<string, { data: Buffer; lastModified: Date }>();
  readonly calls: string[] = [];

  async put(key: string, body: PutBody): Promise<void> {
    this.calls.push(`put ${key}`);
    let data: Buffer;
    if (Buffer.isBuffer(body)) data = body;
    else {
      const parts: Buffer[] = [];
      for await (const b of body.open()) parts.push(b as Buffer);
      data = Buffer.concat(parts);
      if (data.length !== body.size) throw new Error(`put ${key}: body of ${data.length} bytes, size says ${body.size}`);
    }
    this.objects.set(key, { data, lastModified: new Date() });
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    this.calls.push(`get ${key}`);
    const o = this.objects.get(key);
    if (!o) throw new StorageError(`${key} not found`, 'not-found', key);
    const data = range ? o.data.subarray(range.offset, range.offset + range.length) : o.data;
    // Several small chunks, so stream consumers see more than one 'data' event.
    const parts: Buffer[] = [];
    for (let i = 0; i < data.length; i += 1000) parts.push(data.subarray(i, i + 1000));
    return Readable.from(parts, { objectMode: false });
  }

  async stat(key: string): Promise<ObjectInfo> {
    const o = this.objects.get(key);
    if (!o) throw new StorageError(`${key} not found`, 'not-found', key);
    return { key, size: o.data.length, lastModified: o.lastModified };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.calls.push(`list ${prefix}`);
    for (const key of [...this.objects.keys()].sort()) {
      if (key.startsWith(prefix)) yield { key, size: this.objects.get(key)!.data.length, lastModified: this.objects.get(key)!.lastModified };
    }
  }

  async delete(keys: string[]): Promise<void> {
    for (const k of keys) this.objects.delete(k);
  }

  async close(): Promise<void> {}
}

export const sha256 = (b: Buffer | string): Buffer => createHash('sha256').update(b).digest();

export const T0 = new Date('2026-11-27T03:15:00.123Z');
export const SAMPLE_ID = makeSnapshotId('web-eu-1', T0);

export function entry(path: string | Buffer, type: Entry['type'], extra: Partial<Entry> = {}): Entry {
  return {
    path: typeof path === 'string' ? Buffer.from(path) : path,
    type,
    mode: type === 'dir' ? 0o755 : type === 'symlink' ? 0o777 : 0o644,
    uid: 1000,
    gid: 1000,
    mtimeNs: 1_700_000_000_123_456_789n,
    size: 0,
    ...extra,
  };
}

/** The non-UTF-8 file name of the sample ("café" in Latin-1). */
export const LATIN1_NAME = Buffer.concat([Buffer.from('home/u/data/caf'), Buffer.from([0xe9])]);

export interface Sample {
  /** The sample as one finished shard. */
  finished: FinishedShard;
  /** A snapshot summary for it. */
  summary: SnapshotSummary;
  entries: Entry[];
  /** path (latin1 string) → chunk ids. */
  chunksOf: Map<string, Buffer[]>;
  locations: Map<string, ChunkLocation>;
  blobs: { hash: string; size: number }[];
}

/**
 * Writes the sample snapshot to `dir/sample.db`. Contents of chunk i are `chunk-<i>` repeated; two
 * blobs; one chunk shared by two files.
 */
export function writeSample(dir: string, id = SAMPLE_ID): Sample {
  const w = new ShardWriter(join(dir, 'sample.db'), { batchSize: 3 });
  const rows = addSample(w);
  const finished = w.finish();
  return { ...rows, finished, summary: sampleSummary(id) };
}

/** The sample's rows in a SnapshotWriter (a whole snapshot, cut into shards on publish). */
export function stageSample(dir: string): Omit<Sample, 'finished' | 'summary'> & { writer: SnapshotWriter; summary: SnapshotSummary } {
  const writer = new SnapshotWriter(join(dir, `staged-${Math.random().toString(36).slice(2)}.db`));
  return { ...addSample(writer), writer, summary: sampleSummary(SAMPLE_ID) };
}

function sampleSummary(id: string): SnapshotSummary {
  return {
    id,
    startTime: T0,
    endTime: new Date(T0.getTime() + 60_000),
    toolVersion: '0.1.0-test',
    sourceDirs: ['/home/u/data'],
    excludes: ['*.log'],
    chunkSize: 1 << 20,
    blobSizeLimit: 1 << 30,
    compressionLevel: 3,
  };
}

/** Adds the sample's rows to a writer. */
function addSample(w: Pick<ShardWriter, 'addEntry' | 'addChunk' | 'addBlob'>): Omit<Sample, 'finished' | 'summary'> {
  const blobA = randomBytes(32).toString('hex');
  const blobB = randomBytes(32).toString('hex');
  const blobs = [
    { hash: blobA, size: 100_000 },
    { hash: blobB, size: 50_000 },
  ];
  const locations = new Map<string, ChunkLocation>();
  const chunk = (n: number, plainLength: number, blob: string, offset: number): Buffer => {
    const id = sha256(`chunk-${n}`);
    locations.set(id.toString('hex'), { id, blob, offset, length: 100 + n, plainLength });
    return id;
  };
  const c0 = chunk(0, 5, blobA, 0);
  const c1 = chunk(1, 4000, blobA, 200);
  const c2 = chunk(2, 3000, blobB, 0);
  const c3 = chunk(3, 1234, blobA, 500);
  const c4 = chunk(4, 10, blobB, 400);
  const entries: Entry[] = [
    entry('home', 'dir'),
    entry('home/u', 'dir', { mode: 0o700, uid: 0, gid: 0 }),
    entry('home/u/data', 'dir'),
    entry('home/u/data/a.txt', 'file', { size: 5 }),
    entry('home/u/data/big.bin', 'file', { size: 4000 + 3000 + 1234, mode: 0o4755 }),
    entry('home/u/data/copy-of-a.txt', 'file', { size: 5 }),
    entry('home/u/data/empty', 'file'),
    entry(LATIN1_NAME, 'file', { size: 10, mtimeNs: -1_000_000_001n }),
    entry('home/u/data/link', 'symlink', { target: Buffer.from('../../etc/passwd') }),
    entry('home/u/data/fifo', 'fifo'),
    entry('home/u/data/sock', 'socket'),
    entry('home/u/data/tty', 'chardev', { rdev: 0x0501 }),
    entry('home/u/data/sda', 'blockdev', { rdev: 0x0800 }),
    entry('home/u/data/h1', 'file', { size: 1234, linkGroup: 7 }),
    entry('home/u/data/h2', 'file', { size: 1234, linkGroup: 7 }),
    entry('home/u/data/sub', 'dir', { mode: 0o1777 }),
    entry('home/u/data/sub/x', 'file', { size: 5 }),
  ];
  const chunksOf = new Map<string, Buffer[]>([
    ['home/u/data/a.txt', [c0]],
    ['home/u/data/big.bin', [c1, c2, c3]],
    ['home/u/data/copy-of-a.txt', [c0]],
    [LATIN1_NAME.toString('latin1'), [c4]],
    ['home/u/data/h1', [c3]],
    ['home/u/data/sub/x', [c0]],
  ]);
  // Walk order is not path order; chunks and blobs arrive after the entries, as after uploads.
  for (const e of [...entries].reverse()) w.addEntry(e, chunksOf.get(e.path.toString('latin1')));
  for (const loc of locations.values()) w.addChunk(loc);
  w.addChunk(locations.get(c0.toString('hex'))!);
  for (const b of blobs) w.addBlob(b.hash, b.size);
  return { entries, chunksOf, locations, blobs };
}
