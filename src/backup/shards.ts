/**
 * ShardAssembler: turns the walk's entries into the snapshot's shards (docs/DESIGN.md, "Snapshot
 * metadata: shards"), writing rows only for shards that changed.
 *
 * Each entry the walk yields takes a slot, in walk (path) order, and the cut rule
 * (snapshot/shardCut.ts) assigns it to a shard there and then: it depends on the paths alone.
 * Slots are filled as the engine settles each entry (at once for a directory or an unchanged
 * file, when its last chunk is placed for a file that is read), possibly out of order. When every
 * slot of a shard is settled, the digest of its rows (entries and chunk ids, nothing the store
 * decides) is looked up in the state cache: a stored shard with the same rows is referenced as it
 * is, and its rows are never written. Only a shard that differs is written to a local DB, and
 * finished (chunk locations, indexes) and uploaded once every blob is packed.
 *
 * Memory: the slots of the shards not yet settled, at most a few shards' worth (a shard waits
 * only for its own files being read); rows of changed shards go to disk at once.
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { StateCache } from '../cache/index.js';
import type { Recipient } from '../crypto/index.js';
import { VaultikError } from '../errors.js';
import {
  putShard,
  ShardCutter,
  ShardWriter,
  SNAPSHOT_FORMAT_VERSION,
  type BlobRef,
  type ChunkLocation,
  type Entry,
  type ShardLimits,
  type ShardRef,
} from '../snapshot/index.js';
import type { StoreWriter } from '../storage/types.js';
import { TaskWindow } from '../util/concurrency.js';
import type { BlobSizes } from './blobSizes.js';

/**
 * Shard uploads in flight at the end of a run, while the next shard is finished. One: four at
 * once saved another 0.25 s of the 1.8 s metadata phase of a 100,000-file first backup, but a
 * SIGKILL then caught several small puts at their very start, and s3rver (unlike S3 and radosgw)
 * keeps such a put as an empty object (the crash suite's s3rver rounds).
 */
const SHARD_UPLOADS = 1;

/** One entry's place in its shard. */
export interface ShardSlot {
  readonly shard: number;
  readonly index: number;
}

interface SlotContent {
  entry: Entry;
  /** Chunk ids of the content (for a hard-link member: the group's). */
  chunks: readonly Buffer[];
  /**
   * Locations of chunks found in the state cache, as far as known; the others are looked up when
   * the shard is written (the cache, then the run's spool).
   */
  locations: readonly ChunkLocation[];
}

interface OpenShard {
  slots: (SlotContent | null | undefined)[];
  /** Slots not settled yet. */
  unsettled: number;
  /** The walk has passed its last entry. */
  closed: boolean;
}

/** A shard written in this run, waiting for its chunk locations. */
interface WrittenShard {
  path: string;
  digest: Buffer;
}

type Settled = { kind: 'reused'; ref: ShardRef; digest: Buffer; blobs: readonly string[] } | { kind: 'written'; shard: WrittenShard };

export interface AssembledShards {
  /** In path order. */
  shards: ShardRef[];
  /** Digests of their rows (the cache's key), in the same order. */
  digests: Buffer[];
  /** Distinct data blobs the shards reference, sorted by hash. */
  blobs: BlobRef[];
  /** Sum of file sizes, each hard-link group once. */
  totalSize: number;
  reused: number;
  written: number;
  /** Stored bytes of the shards written. */
  writtenBytes: number;
}

export interface ShardAssemblerOptions {
  workDir: string;
  cache: StateCache;
  blobSizes: BlobSizes;
  limits?: ShardLimits;
}

/** 48 bits of SHA-256 of a group's first path: the same group gets the same number in every
 *  snapshot, so a hard link does not change the shards around it. */
function stableGroupId(path: Buffer): number {
  return createHash('sha256').update(path).digest().readUIntBE(0, 6);
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n);
  return b;
}

export class ShardAssembler {
  private readonly cutter: ShardCutter;
  private readonly open = new Map<number, OpenShard>();
  private readonly settled = new Map<number, Settled>();
  private current = 0;
  private currentSize = 0;
  /** The walk's group numbers → stable ids, while a group may still get members. */
  private readonly groupIds = new Map<number, number>();
  private readonly usedGroupIds = new Set<number>();
  private totalSize = 0;

  constructor(private readonly options: ShardAssemblerOptions) {
    this.cutter = new ShardCutter(options.limits);
  }

  /**
   * Takes the next slot, in walk order. A hard-link group's first member (`leader`) fixes the
   * group's number.
   */
  reserve(entry: Entry, leader = false): ShardSlot {
    let shard = this.open.get(this.current);
    if (!shard) {
      shard = { slots: [], unsettled: 0, closed: false };
      this.open.set(this.current, shard);
    }
    const slot = { shard: this.current, index: shard.slots.length };
    shard.slots.push(undefined);
    shard.unsettled++;
    this.currentSize++;
    if (entry.linkGroup !== undefined && leader) {
      let id = stableGroupId(entry.path);
      while (this.usedGroupIds.has(id)) id = (id + 1) % 2 ** 48;
      this.usedGroupIds.add(id);
      this.groupIds.set(entry.linkGroup, id);
    }
    if (this.cutter.add(entry.path, entry.size)) this.closeCurrent();
    return slot;
  }

  /** The walk's group number `group` will get no more members. */
  endGroup(group: number): void {
    this.groupIds.delete(group);
  }

  /** Settles a slot with its entry. `chunks` for a file (a hard-link member: its group's). */
  fill(slot: ShardSlot, entry: Entry, chunks: readonly Buffer[] = [], locations: readonly ChunkLocation[] = []): void {
    let e = entry;
    if (e.linkGroup !== undefined) {
      const id = this.groupIds.get(e.linkGroup);
      if (id === undefined) throw new VaultikError(`internal error: hard-link group ${e.linkGroup} has no number`);
      e = { ...e, linkGroup: id };
    }
    this.settle(slot, { entry: e, chunks, locations });
  }

  /** Settles a slot whose entry is left out of the snapshot. */
  skip(slot: ShardSlot): void {
    this.settle(slot, null);
  }

  /** The walk is over: the last shard is complete once its slots are settled. */
  endWalk(): void {
    if (this.currentSize > 0) this.closeCurrent();
  }

  private closeCurrent(): void {
    const shard = this.open.get(this.current);
    this.current++;
    this.currentSize = 0;
    if (!shard) return;
    shard.closed = true;
    if (shard.unsettled === 0) this.complete(this.current - 1, shard);
  }

  private settle(slot: ShardSlot, content: SlotContent | null): void {
    const shard = this.open.get(slot.shard);
    if (!shard || shard.slots[slot.index] !== undefined) throw new VaultikError(`internal error: shard slot ${slot.shard}/${slot.index} settled twice`);
    shard.slots[slot.index] = content;
    shard.unsettled--;
    if (content?.entry.type === 'file') {
      const g = content.entry.linkGroup;
      // A group's size counts once, at whichever member settles first (all carry the leader's size).
      if (g === undefined || !this.countedGroups.has(g)) this.totalSize += content.entry.size;
      if (g !== undefined) this.countedGroups.add(g);
    }
    if (shard.closed && shard.unsettled === 0) this.complete(slot.shard, shard);
  }

  private readonly countedGroups = new Set<number>();

  /** Every slot of a shard is settled: reuse the stored shard with the same rows, or write it. */
  private complete(index: number, shard: OpenShard): void {
    this.open.delete(index);
    const contents = shard.slots.filter((c): c is SlotContent => c !== null && c !== undefined);
    if (contents.length === 0) return;
    // In each shard, the first member of a hard-link group carries the content.
    const carried = new Set<number>();
    const rows = contents.map((c) => {
      const g = c.entry.linkGroup;
      if (g === undefined) return c;
      if (carried.has(g)) return { ...c, chunks: [], locations: [] };
      carried.add(g);
      return c;
    });
    const digest = rowsDigest(rows);
    const cached = this.options.cache.findShard(digest);
    if (cached) {
      this.settled.set(index, { kind: 'reused', ref: cached.ref, digest, blobs: cached.blobs });
      return;
    }
    const path = join(this.options.workDir, `shard-${index}.db`);
    const w = new ShardWriter(path);
    const add = (loc: ChunkLocation): void => {
      w.addChunk(loc);
      w.addBlob(loc.blob, this.options.blobSizes.get(loc.blob));
    };
    try {
      for (const r of rows) {
        w.addEntry(r.entry, r.chunks);
        for (const loc of r.locations) add(loc);
        if (r.locations.length < r.chunks.length) {
          // Unchanged files whose locations were not looked up (cache.ts isUsableBlob): now. A
          // chunk the cache does not have was packed in this run: finish takes it from the spool.
          const known = new Set(r.locations.map((l) => l.id.toString('latin1')));
          for (const id of r.chunks) {
            if (known.has(id.toString('latin1'))) continue;
            const loc = this.options.cache.findChunk(id);
            if (loc) add(loc);
          }
        }
      }
      w.suspend();
    } catch (err) {
      w.abort();
      throw err;
    }
    this.settled.set(index, { kind: 'written', shard: { path, digest } });
  }

  /**
   * After every blob is packed and uploaded: finishes each written shard with the chunk
   * locations from `locations` (the run's LocationSpool), uploads it, records it in the cache,
   * and returns every shard of the snapshot in path order.
   * @throws VaultikError when a slot was never settled (a bug); StorageError from the upload.
   */
  async finish(storage: StoreWriter, recipients: readonly Recipient[], locations: string, signal: AbortSignal): Promise<AssembledShards> {
    if (this.open.size > 0) throw new VaultikError(`internal error: ${this.open.size} shard(s) still have unsettled entries`);
    const out: AssembledShards = { shards: [], digests: [], blobs: [], totalSize: this.totalSize, reused: 0, written: 0, writtenBytes: 0 };
    const blobs = new Map<string, number>();
    // A shard is finished on this thread (SQLite) while the one before it is packed and
    // uploaded: one after the other, the 113 shards of a 100,000-file first backup took 2.9 s.
    const uploads = new TaskWindow(SHARD_UPLOADS);
    const refs = new Map<number, ShardRef>();
    const indexes = [...this.settled.keys()].sort((a, b) => a - b);
    for (const index of indexes) {
      const s = this.settled.get(index)!;
      if (s.kind === 'reused') continue;
      await uploads.room(signal);
      const finished = ShardWriter.reopen(s.shard.path).finish(locations);
      for (const b of finished.blobs) blobs.set(b.hash, b.size);
      uploads.start(
        (async () => {
          const ref = await putShard(storage, finished, recipients, { signal, spoolDir: this.options.workDir });
          rmSync(s.shard.path, { force: true });
          this.options.cache.recordShard(s.shard.digest, ref, finished.blobs.map((b) => b.hash));
          refs.set(index, ref);
        })(),
      );
    }
    await uploads.drain();
    for (const index of indexes) {
      const s = this.settled.get(index)!;
      if (s.kind === 'reused') {
        out.shards.push(s.ref);
        out.digests.push(s.digest);
        for (const h of s.blobs) if (!blobs.has(h)) blobs.set(h, this.options.blobSizes.get(h));
        out.reused++;
        continue;
      }
      const ref = refs.get(index)!;
      out.shards.push(ref);
      out.digests.push(s.shard.digest);
      out.written++;
      out.writtenBytes += ref.size;
    }
    out.blobs = [...blobs].map(([hash, size]) => ({ hash, size })).sort((a, b) => (a.hash < b.hash ? -1 : a.hash > b.hash ? 1 : 0));
    return out;
  }
}

/**
 * SHA-256 over a shard's rows in a fixed encoding: every entry column and the chunk ids of each
 * file, in path order. Two shards with the same digest have the same rows, whatever blobs their
 * chunks were found in (any stored copy of a chunk is as good as another).
 */
function rowsDigest(rows: readonly SlotContent[]): Buffer {
  const h = createHash('sha256');
  h.update(`vaultik shard rows v${SNAPSHOT_FORMAT_VERSION}\n`);
  const fixed = Buffer.alloc(8 * 8);
  for (const { entry: e, chunks } of rows) {
    h.update(u32(e.path.length));
    h.update(e.path);
    h.update(e.type);
    fixed.writeUInt32BE(e.mode, 0);
    fixed.writeUInt32BE(e.uid, 4);
    fixed.writeUInt32BE(e.gid, 8);
    fixed.writeBigInt64BE(e.mtimeNs, 12);
    fixed.writeDoubleBE(e.size, 20);
    fixed.writeDoubleBE(e.rdev ?? -1, 28);
    fixed.writeDoubleBE(e.linkGroup ?? -1, 36);
    fixed.writeUInt32BE(chunks.length, 44);
    fixed.writeUInt32BE(e.target?.length ?? 0xffffffff, 48);
    h.update(fixed.subarray(0, 52));
    if (e.target) h.update(e.target);
    for (const c of chunks) h.update(c);
  }
  return h.digest();
}
