/**
 * The restore engine: snapshot metadata → plan → fetch ranges → decrypt → decompress → verify →
 * write at offset → metadata. Used by `restore` (whole snapshot or a filtered part) and `fetch`
 * (one path, relocated).
 *
 * Passes (all stream from the snapshot DB; memory does not grow with the snapshot):
 * 1. Entries in path order: directories, symlinks, special files and empty files are created;
 *    regular files are only counted (they are created when their first chunk arrives).
 * 2. Chunk placements in (blob, offset) order, grouped into merged ranges (plan.ts); up to
 *    `concurrency` ranges are fetched at once, within a budget of bytes in flight. Every chunk
 *    is authenticated by age, decompressed and checked against its SHA-256 before a byte of it
 *    is written, at every (file, offset) that uses it. Ranges with enough data are fetched into
 *    reused shared memory and decrypted, decoded and verified by the decode workers
 *    (decodePool.ts), which also create and write the files that are one chunk (most files);
 *    this thread reads the metadata, fetches, and writes the rest. A chunk of at least
 *    `streamChunkSize` is streamed instead (runStreamed): memory stays within the budget
 *    whatever the chunk sizes.
 * 3. Hard links to the first restored name of each group; then directory metadata, deepest
 *    first (TargetWriter.finish).
 *
 * Failure policy: a missing or corrupt blob, or a chunk that fails verification, fails exactly
 * the files that need it (reported by path; a partly written file is removed, so no file ever
 * holds unauthenticated or wrong bytes); everything else is restored. Disk full, an unusable
 * store, or an interrupt stop the restore: partly written files are removed, complete ones kept.
 * A wrong key fails before the target is touched.
 */
import { tmpdir } from 'node:os';
import { decodeChunk, streamChunk } from '../blob/reader.js';
import { decryptRange, decryptSegments, type AgeFileInfo, type Identity } from '../crypto/index.js';
import { ExitCode, UsageError, VaultikError, errorMessage } from '../errors.js';
import { RestoreError, TargetWriter, utimesSeconds } from '../fs/restoreWriter.js';
import { displayPath } from '../fs/paths.js';
import type { AllowedSigner } from '../sign/index.js';
import { listSnapshots, openSnapshot, resolveSignedSnapshot, resolveSnapshotId, type SnapshotReader } from '../snapshot/index.js';
import type { ChunkPlacement } from '../snapshot/reader.js';
import type { Entry } from '../snapshot/types.js';
import type { Storage } from '../storage/types.js';
import { MAX_REPORTED, type FailedPath, type RestoreEvent, type RestoreProgress, type RestoreSummary, type RestoreTotals } from './events.js';
import { DecodePool, type BatchJob, type BatchResult } from './decodePool.js';
import { SharedBuffers } from './buffers.js';
import { BlobFetcher, isDataError } from './fetcher.js';
import { FileTable, diskFullError, isAllZero, isFatalWriteError } from './files.js';
import { cipherSpan, frameOffsetInRange, planRanges, segmentsOf, type ChunkJob, type ChunkUse, type PlanOptions, type RangePlan } from './plan.js';
import { SafetyPolicy, type RestoreSafety } from './safety.js';
import { Selector, relocator, type Relocation, type RestoreSelection } from './select.js';
import { ByteBudget, TaskWindow } from '../util/concurrency.js';

export interface RestoreOptions {
  storage: Storage;
  /** From VAULTIK_PRIVATE_KEY (crypto's loadIdentities). */
  identities: readonly Identity[];
  /** A snapshot id, or 'latest'. */
  snapshotId: string;
  /** Where snapshot metadata lives in the store (default 'index/'). */
  indexPrefix?: string;
  /** With 'latest': the newest snapshot of this host (default: of any host). */
  host?: string;
  /**
   * Require a valid snapshot signature by these signers (`--signers`): an unsigned or badly
   * signed snapshot is refused (DATA), and `latest` is the newest validly signed one.
   */
  signers?: readonly AllowedSigner[];
  /** Directory to restore into (created if missing). */
  target: string;
  select?: RestoreSelection;
  /** Fetch: put the subtree at `from` at `to` under the target. Needs `select.paths = [from]`. */
  relocate?: Relocation;
  /**
   * Restore into a non-empty target: entries found up to date (type, size, mtime; symlink
   * target) are left alone, differing ones replaced. Without it a non-empty target is refused.
   */
  overwrite?: boolean;
  /** Fetch: allow a non-empty target directory without replacing anything in it. */
  allowNonEmptyTarget?: boolean;
  /** What not to restore of an untrusted snapshot (--no-owner, --no-devices, ...: safety.ts). */
  safety?: RestoreSafety;
  signal?: AbortSignal;
  onEvent?: (event: RestoreEvent) => void;
  /** Where the decrypted metadata DB is kept while restoring (default os.tmpdir()). */
  tmpDir?: string;
  /** Ranges fetched at once (default 6). */
  concurrency?: number;
  /**
   * Bytes of range data held at once — each range counts its ciphertext, its plaintext and the
   * decompressed chunks it is writing — (default 32 MiB; a single larger range runs alone).
   */
  memoryBudget?: number;
  /**
   * Chunks of at least this many bytes are streamed: decrypted, decompressed, checked and
   * written in steps of 1 MiB, never held whole (default half the memory budget).
   */
  streamChunkSize?: number;
  plan?: PlanOptions;
}

/** Default byte budget of range data in flight (RestoreOptions.memoryBudget). */
const DEFAULT_BUDGET = 32 * 1024 * 1024;

/** Hard-link names remembered by pass 1 for pass 3 (about 100 bytes each). */
const MAX_FOLLOWERS = 10_000;

/** Chunk jobs of one range whose writes may be in flight at once. */
const WRITE_WINDOW = 16;

/** Chunk bytes per decode-worker message. */
const DECODE_BATCH_BYTES = 2 * 1024 * 1024;
/** Ranges with fewer chunk bytes are decoded on the main thread (no worker start-up for a small fetch). */
const DECODE_POOL_MIN = 256 * 1024;

const EMPTY = Buffer.alloc(0);

/** Budget a streamed chunk holds besides its zstd window: ciphertext, plaintext and output steps. */
const STREAM_HELD = 3 * 1024 * 1024;

/** What a decode worker returned for one batch. */
interface SubmittedBatch {
  results: BatchResult[];
  /** The batch's output buffer (from SharedBuffers): given back once its writes are done. */
  out: Buffer;
  /** Per job, the entry of the file the worker was asked to write. */
  entries: (Entry | undefined)[];
}

function chunkFailure(range: RangePlan, job: ChunkJob, message: string): string {
  return `chunk ${job.chunk.id.toString('hex').slice(0, 16)}… in blob ${range.blob}: ${message}`;
}

interface LinkGroup {
  /** Snapshot path of the first selected name (the one that gets the content). */
  first: Buffer;
  /** Its target path. */
  firstTarget: Buffer;
}

/** A range over just `jobs` (in frame-offset order) of `blob`. */
function narrowRange(blob: string, jobs: ChunkJob[]): RangePlan {
  let first = Infinity;
  let last = -1;
  let useCount = 0;
  for (const j of jobs) {
    const s = segmentsOf(j.chunk.offset, j.chunk.length);
    first = Math.min(first, s.first);
    last = Math.max(last, s.last);
    useCount += j.uses.length;
  }
  return { blob, firstSegment: first, lastSegment: last, chunks: jobs, useCount };
}

/** The entry with its path mapped into the target. */
function at(entry: Entry, path: Buffer): Entry {
  return path === entry.path ? entry : { ...entry, path };
}

/**
 * Restores (part of) a snapshot into `options.target`.
 * @returns the summary; `failed > 0` means some entries could not be restored (the CLI's exit code
 *   DATA, or FAILURE when every one of them failed in the target: `failedLocal`).
 * @throws UsageError for an unknown snapshot id (naming the closest ids), a selection path that
 *   is not in the snapshot, a non-empty target without overwrite; VaultikError NO_IDENTITY when
 *   the key does not match (nothing is written); DATA when the metadata is missing or invalid;
 *   StorageError when the store cannot be used; a "no space left" VaultikError on a full disk;
 *   the signal's reason when aborted.
 */
export async function runRestore(options: RestoreOptions): Promise<RestoreSummary> {
  const started = Date.now();
  const { storage, signal } = options;
  const emit = options.onEvent ?? (() => undefined);
  const indexPrefix = options.indexPrefix ?? 'index/';
  const selector = new Selector(options.select);
  if (options.relocate && !(selector.paths?.length === 1 && selector.paths[0]!.equals(options.relocate.from))) {
    throw new UsageError('a relocated restore selects exactly the relocated path');
  }
  const mapPath = relocator(options.relocate);

  signal?.throwIfAborted();
  const snapshots = await listSnapshots(storage, indexPrefix);
  const listing = options.signers
    ? await resolveSignedSnapshot(storage, snapshots, options.snapshotId, options.host, options.signers, signal)
    : resolveSnapshotId(snapshots, options.snapshotId, options.host);
  // One selected path (fetch, or restore of one subtree): only the shards that cover it are read.
  const under = selector.paths?.length === 1 ? selector.paths[0] : undefined;
  // A shard missing or damaged fails the entries of its range, not the whole restore.
  const reader = await openSnapshot(storage, listing, options.identities, options.tmpDir ?? tmpdir(), {
    signal,
    tolerateLostShards: true,
    ...(under ? { under } : {}),
  });
  try {
    const info = reader.info();
    emit({ type: 'snapshot', id: info.id, host: info.host, time: info.startTime, files: info.fileCount, bytes: info.totalSize });
    for (const p of selector.paths ?? []) {
      if (reader.entry(p)) continue;
      const lost = reader.lostShards.find((l) => Buffer.compare(l.ref.firstPath, p) <= 0 && Buffer.compare(p, l.ref.lastPath) <= 0);
      if (lost) throw new VaultikError(`${displayPath(p)} cannot be read: ${lost.message}`, ExitCode.DATA);
      throw new UsageError(`${displayPath(p)} is not in snapshot ${info.id} (\`vaultik ls\` lists its entries)`);
    }
    const run = new RestoreRun(options, reader, selector, mapPath, emit);
    const summary = await run.execute(started, info.id);
    reader.close();
    return summary;
  } catch (err) {
    try {
      reader.close();
    } catch {
      // Already failing: the first error is the one to report.
    }
    throw err;
  }
}

/** One restore in progress: the state shared by the passes. */
class RestoreRun {
  private readonly totals: RestoreTotals = { files: 0, bytes: 0, dirs: 0, symlinks: 0, specials: 0 };
  private readonly progress: RestoreProgress = { files: 0, bytes: 0, downloaded: 0, failed: 0 };
  private readonly failures: FailedPath[] = [];
  /** Of progress.failed, the entries that failed in the target (RestoreError), not the store. */
  private failedLocal = 0;
  private readonly groups = new Map<number, LinkGroup>();
  /** Groups whose first selected name is not the one carrying the content: group → that name. */
  private readonly orphans = new Map<number, Buffer>();
  private readonly madeDirs = new Set<string>();
  /**
   * Pass 1's directories still being prepared, by target path: an entry under one waits for it,
   * so that a name in the way (a symlink, a file; replaced with --overwrite) is a directory
   * before anything is created beneath it.
   */
  private readonly preparing = new Map<string, Promise<void>>();
  private counts = { files: 0, dirs: 0, symlinks: 0, specials: 0, hardLinks: 0, unchanged: 0, warnings: 0, followers: 0 };
  /**
   * The names that pass 3 links (in selection order), while there are at most MAX_FOLLOWERS of
   * them; past that pass 3 reads the entries again instead (memory stays bounded).
   */
  private followers: Entry[] | undefined = [];
  private readonly fetcher: BlobFetcher;
  private writer!: TargetWriter;
  private files!: FileTable;
  private blobSizes = new Map<string, number>();
  private lastProgress = 0;
  /** Started by the first range large enough to need it; closed after the content pass. */
  private pool: DecodePool | undefined;
  /** Ciphertext of pooled ranges and their decoded batches. */
  private readonly buffers: SharedBuffers;
  private readonly safety: SafetyPolicy;
  /** Chunks this large are streamed (runStreamed). */
  private readonly streamChunkSize: number;

  constructor(
    private readonly options: RestoreOptions,
    private readonly reader: SnapshotReader,
    private readonly selector: Selector,
    private readonly mapPath: (p: Buffer) => Buffer,
    private readonly emit: (e: RestoreEvent) => void,
  ) {
    this.fetcher = new BlobFetcher(options.storage, options.identities, options.signal);
    // In use is bounded by the budget (in size classes, up to twice it); what is free was in use once.
    this.buffers = new SharedBuffers(4 * (options.memoryBudget ?? DEFAULT_BUDGET));
    this.safety = new SafetyPolicy(options.safety);
    this.streamChunkSize = options.streamChunkSize ?? Math.floor((options.memoryBudget ?? DEFAULT_BUDGET) / 2);
  }

  /**
   * The entry as written: its path in the target, its mode as the safety options leave it. Every
   * entry reaches the writer (and the decode workers) through here.
   */
  private view(e: Entry): Entry {
    return this.safety.apply(at(e, this.mapPath(e.path)));
  }

  private get skipUnchanged(): boolean {
    return this.options.overwrite === true;
  }

  async execute(started: number, id: string): Promise<RestoreSummary> {
    const { options } = this;
    this.writer = await TargetWriter.open(options.target, {
      overwrite: options.overwrite === true || options.allowNonEmptyTarget === true,
      // undefined: as root only, the writer's default.
      owners: options.safety?.noOwner === true ? false : undefined,
      onWarning: (w) => {
        this.counts.warnings++;
        this.emit({ type: 'warning', path: w.path, message: w.message });
      },
    });
    this.files = new FileTable({
      writer: this.writer,
      lookup: (path) => {
        const e = this.reader.entry(path);
        return e ? this.view(e) : undefined;
      },
      skipUnchanged: this.skipUnchanged,
      onDone: (_entry, written) => {
        this.progress.files++;
        if (written) this.counts.files++;
        else this.counts.unchanged++;
      },
      onBytes: (n) => {
        this.progress.bytes += n;
      },
      onFailed: (path, message, local) => this.failed(path, message, 1, local),
    });
    try {
      for (const l of this.reader.lostShards) {
        const { ref } = l;
        // Every entry of its range counts as failed; one line names the range.
        this.failed(ref.firstPath, `${ref.entryCount} entries from ${displayPath(ref.firstPath)} to ${displayPath(ref.lastPath)} not restored: ${l.message}`, ref.entryCount);
      }
      await this.entriesPass();
      this.emit({ type: 'totals', totals: { ...this.totals } });
      await this.contentPass();
      await this.files.failIncomplete();
      if (this.counts.followers > 0) await this.linkPass();
      await this.writer.finish();
    } catch (err) {
      await this.files.abortAll();
      await this.writer.close();
      if (isFatalWriteError(err)) throw diskFullError(err as RestoreError, this.writer.root);
      throw err;
    }
    this.reportProgress(true);
    return {
      snapshotId: id,
      target: this.writer.root,
      files: this.counts.files,
      dirs: this.counts.dirs,
      symlinks: this.counts.symlinks,
      specials: this.counts.specials,
      hardLinks: this.counts.hardLinks,
      bytes: this.progress.bytes,
      unchanged: this.counts.unchanged,
      failed: this.progress.failed,
      failedLocal: this.failedLocal,
      failures: this.failures,
      warnings: this.counts.warnings,
      withheld: { ...this.safety.withheld },
      downloaded: this.fetcher.downloaded,
      requests: this.fetcher.requests,
      elapsedMs: Date.now() - started,
    };
  }

  /**
   * Records a failure: one path, or `count` entries that one message names; `local` when the
   * target, not the store, is the cause.
   */
  private failed(path: Buffer, message: string, count = 1, local = false): void {
    this.progress.failed += count;
    if (local) this.failedLocal += count;
    if (this.failures.length < MAX_REPORTED) this.failures.push({ path, message, ...(local ? { local } : {}) });
    this.emit({ type: 'failed', path, message, ...(local ? { local } : {}) });
  }

  private reportProgress(force = false): void {
    const now = Date.now();
    if (!force && now - this.lastProgress < 100) return;
    this.lastProgress = now;
    this.progress.downloaded = this.fetcher.downloaded;
    this.emit({ type: 'progress', progress: { ...this.progress }, totals: { ...this.totals } });
  }

  /** Selected entries in path order (each subtree of `paths`, or everything). */
  private *selectedEntries(): Generator<Entry> {
    const roots = this.selector.paths ?? [undefined];
    for (const under of roots) {
      for (const e of this.reader.entries(under ? { under } : {})) {
        if (!this.selector.hasPatterns || this.selector.selects(e.path, e.type === 'dir')) yield e;
      }
    }
  }

  /** Runs `fn` on one entry; a per-entry failure is reported and the restore goes on. */
  private async guarded(path: Buffer, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      if (isFatalWriteError(err) || !(err instanceof VaultikError) || err.exitCode === ExitCode.INTERRUPTED) throw err;
      if (err instanceof RestoreError || err.exitCode === ExitCode.DATA || err.exitCode === ExitCode.FAILURE) {
        this.failed(path, errorMessage(err), 1, err instanceof RestoreError);
        return;
      }
      throw err;
    }
  }

  /** Pass 1: everything but the contents of non-empty files. */
  private async entriesPass(): Promise<void> {
    // Entries are independent once their parents exist, and TargetWriter creates missing
    // parents itself, so a small window of them may run at once.
    const window = new TaskWindow(16);
    let n = 0;
    try {
      for (const e of this.selectedEntries()) {
        if (++n % 256 === 0) {
          this.options.signal?.throwIfAborted();
          this.reportProgress();
        }
        const task = this.startEntry(e);
        if (!task) continue;
        window.start(task);
        await window.room();
      }
      await window.drain();
    } finally {
      await window.settle();
    }
  }

  /** Starts the work of one entry, or returns undefined when it waits for a later pass. */
  private startEntry(e: Entry): Promise<void> | undefined {
    const target = this.view(e);
    const w = this.writer;
    const ancestors = this.selector.hasIncludes ? this.ensureAncestors(e.path) : undefined;
    const skipped = this.safety.skips(e);
    if (skipped) {
      this.totals.specials++;
      this.safety.countSkipped(skipped);
      return ancestors;
    }
    const slash = target.path.lastIndexOf(0x2f);
    const parent = slash > 0 ? this.preparing.get(target.path.toString('latin1', 0, slash)) : undefined;
    const after = (fn: () => Promise<void>): Promise<void> =>
      this.guarded(e.path, async () => {
        if (ancestors) await ancestors;
        if (parent) await parent;
        await fn();
      });
    switch (e.type) {
      case 'dir': {
        this.totals.dirs++;
        this.safety.count(e);
        if (this.selector.hasIncludes) this.madeDirs.add(e.path.toString('latin1'));
        const task = after(async () => {
          await w.prepareDir(target.path);
          await w.applyMetadata(target);
          this.counts.dirs++;
        });
        const key = target.path.toString('latin1');
        this.preparing.set(key, task);
        const done = (): void => {
          if (this.preparing.get(key) === task) this.preparing.delete(key);
        };
        task.then(done, done);
        return task;
      }
      case 'file': {
        this.totals.files++;
        if (e.linkGroup !== undefined) {
          if (this.groups.has(e.linkGroup)) {
            this.counts.followers++;
            if (this.followers && this.followers.length < MAX_FOLLOWERS) this.followers.push(e);
            else this.followers = undefined;
            return ancestors; // linked in pass 3
          }
          this.groups.set(e.linkGroup, { first: e.path, firstTarget: target.path });
          if (this.selector.paths || this.selector.hasPatterns) {
            // The group's content is carried by its first path in the whole snapshot: when that
            // path is not selected, pass 2 reads the content from there.
            if (e.size > 0 && !this.hasChunks(e.path)) this.orphans.set(e.linkGroup, e.path);
          }
        }
        this.safety.count(e); // once per file: not for the followers, other names of it
        this.totals.bytes += e.size;
        if (e.size > 0) return ancestors;
        return after(async () => {
          if (this.skipUnchanged && !(await w.needsWrite(target))) {
            await w.applyMetadata(target);
            this.counts.unchanged++;
          } else {
            const f = await w.createFile(target.path, 0);
            await f.finish(target);
            this.counts.files++;
          }
          this.progress.files++;
        });
      }
      case 'symlink':
        this.totals.symlinks++;
        this.safety.count(e);
        return after(async () => {
          if (this.skipUnchanged && !(await w.needsWrite(target))) {
            this.counts.unchanged++;
          } else {
            await w.createSymlink(target.path, e.target!);
            this.counts.symlinks++;
          }
          await w.applyMetadata(target);
        });
      default:
        this.totals.specials++;
        this.safety.count(e);
        return after(async () => {
          if (this.skipUnchanged && !(await w.needsWrite(target))) {
            this.counts.unchanged++;
          } else if (await w.createSpecial(target)) {
            this.counts.specials++;
          } else {
            return;
          }
          await w.applyMetadata(target);
        });
    }
  }

  private hasChunks(path: Buffer): boolean {
    const it = this.reader.chunkPlacements({ under: path })[Symbol.iterator]();
    try {
      return !it.next().done;
    } finally {
      it.return?.();
    }
  }

  /**
   * With include patterns, the directories above a selected entry may not be selected: restore
   * them (with their metadata) the first time an entry below needs them.
   */
  private async ensureAncestors(path: Buffer): Promise<void> {
    const floor = this.options.relocate?.from.length ?? 0;
    // Slashes at or after `floor` end the ancestors inside the relocated subtree (or all of them).
    for (let i = path.indexOf(0x2f, floor); i > 0; i = path.indexOf(0x2f, i + 1)) {
      const dir = path.subarray(0, i);
      const key = dir.toString('latin1');
      if (this.madeDirs.has(key)) continue;
      this.madeDirs.add(key);
      const e = this.reader.entry(Buffer.from(dir));
      if (e?.type !== 'dir') continue;
      this.safety.count(e);
      const target = this.view(e);
      await this.writer.prepareDir(target.path);
      await this.writer.applyMetadata(target);
      this.counts.dirs++;
    }
  }

  /** The placement streams of pass 2: the selection, then each orphaned link group's content. */
  private *placements(): Generator<Iterable<ChunkPlacement>> {
    const { reader, selector } = this;
    const roots = selector.paths ?? [undefined];
    for (const under of roots) {
      const stream = reader.chunkPlacements(under ? { under } : {});
      if (!selector.hasPatterns) {
        yield stream;
        continue;
      }
      yield (function* () {
        let lastPath: Buffer | undefined;
        let lastSelected = false;
        for (const p of stream) {
          if (!lastPath || !lastPath.equals(p.path)) {
            lastPath = p.path;
            lastSelected = selector.selects(p.path, false);
          }
          if (lastSelected) yield p;
        }
      })();
    }
    if (this.orphans.size === 0) return;
    // The content of each orphaned group lives under its first path in the snapshot.
    const carriers = new Map<number, Buffer>();
    for (const e of reader.entries()) {
      if (e.linkGroup !== undefined && this.orphans.has(e.linkGroup) && !carriers.has(e.linkGroup)) carriers.set(e.linkGroup, e.path);
    }
    for (const [group, member] of this.orphans) {
      const carrier = carriers.get(group);
      if (!carrier) continue;
      yield (function* () {
        for (const p of reader.chunkPlacements({ under: carrier })) yield { ...p, path: member };
      })();
    }
  }

  /** Pass 2: fetch, verify and write every chunk of the selected files. */
  private async contentPass(): Promise<void> {
    const { options } = this;
    for (const b of this.reader.blobs()) this.blobSizes.set(b.hash, b.size);
    const concurrency = options.concurrency ?? 6;
    const budget = new ByteBudget(options.memoryBudget ?? DEFAULT_BUDGET);
    const ranges = (function* (streams: Iterable<Iterable<ChunkPlacement>>, plan?: PlanOptions) {
      for (const s of streams) yield* planRanges(s, plan);
    })(this.placements(), options.plan);

    let fatal: unknown;
    const worker = async (): Promise<void> => {
      while (fatal === undefined) {
        options.signal?.throwIfAborted();
        const next = ranges.next();
        if (next.done) return;
        await this.runRange(next.value, budget);
        this.reportProgress();
      }
    };
    const workers = Array.from({ length: concurrency }, () =>
      worker().catch((err: unknown) => {
        fatal ??= err;
      }),
    );
    try {
      await Promise.all(workers);
    } finally {
      // Ends the open SQLite statements (the reader cannot close while one is open).
      ranges.return(undefined);
      await this.pool?.close();
      this.pool = undefined;
    }
    if (fatal !== undefined) throw fatal;
  }

  /** Fetches one range, decodes its chunks and writes them; data failures fail their files. */
  private async runRange(range: RangePlan, budget: ByteBudget): Promise<void> {
    const size = this.blobSizes.get(range.blob);
    if (size === undefined) return this.failJobs(range.chunks, `blob ${range.blob} is not listed in the snapshot`);
    let file: AgeFileInfo;
    try {
      file = await this.fetcher.open(range.blob, size);
    } catch (err) {
      if (!isDataError(err)) throw err;
      return this.failJobs(range.chunks, errorMessage(err));
    }
    if (range.chunks.some((j) => j.chunk.plainLength >= this.streamChunkSize)) {
      const rest: ChunkJob[] = [];
      for (const job of range.chunks) {
        if (job.chunk.plainLength >= this.streamChunkSize) await this.runStreamed(range, file, size, job, budget);
        else rest.push(job);
      }
      if (rest.length === 0) return;
      range = narrowRange(range.blob, rest);
    }
    const span = cipherSpan(range, file.headerLength, size);
    const spanBytes = span.end - span.start;
    let plainBytes = 0;
    let largest = 0;
    for (const j of range.chunks) {
      plainBytes += j.chunk.plainLength;
      largest = Math.max(largest, j.chunk.plainLength);
    }
    const pooled = plainBytes >= DECODE_POOL_MIN;
    // Held at once. Pooled: the ciphertext (decrypted in place), and up to three batches of
    // decoded chunks (one decoding, one being written, one whose last writes are settling). Here: the ciphertext,
    // its plaintext, and the decompressed chunks being written.
    const batchBytes = Math.max(largest, DECODE_BATCH_BYTES);
    const limitBytes = Math.max(largest, 1024 * 1024);
    let held = pooled ? spanBytes + Math.min(plainBytes, 3 * batchBytes) : 2 * spanBytes + limitBytes;
    await budget.acquire(held);
    const release = (): void => {
      budget.release(held);
      held = 0;
    };
    try {
      let cipher: Buffer | undefined = pooled ? this.buffers.take(spanBytes) : undefined;
      try {
        if (cipher) await this.fetcher.readInto(range.blob, span.start, span.end, cipher);
        else cipher = await this.fetcher.read(range.blob, span.start, span.end);
      } catch (err) {
        if (!isDataError(err)) throw err;
        if (range.chunks.length === 1) return await this.failJobs(range.chunks, errorMessage(err));
        // A truncated blob fails a read that reaches its end: read chunk by chunk instead, so the
        // chunks before the cut are still restored.
        release();
        for (const job of range.chunks) {
          const s = segmentsOf(job.chunk.offset, job.chunk.length);
          await this.runRange({ blob: range.blob, firstSegment: s.first, lastSegment: s.last, chunks: [job], useCount: job.uses.length }, budget);
        }
        return;
      }
      if (pooled) {
        await this.runPooled(range, file, cipher, batchBytes);
        // Every batch has settled: no worker uses it any more.
        this.buffers.give(cipher);
      } else {
        await this.runHere(range, file, cipher, span.start, limitBytes);
      }
    } finally {
      release();
    }
  }

  /**
   * A chunk of at least streamChunkSize bytes, never held whole: its segments come in with one
   * ranged GET, are decrypted 1 MiB at a time, decompressed in steps (FrameStream, which refuses
   * content beyond the declared size at once) and written at every use as they come, hashed on
   * the way. The files count the chunk only once its SHA-256 matched (FileTable.writePart, then
   * commit); a chunk that fails fails its files, which are removed like any partly written file.
   * Holds STREAM_HELD of the budget, and the zstd window the frame's header asks for.
   */
  private async runStreamed(range: RangePlan, file: AgeFileInfo, size: number, job: ChunkJob, budget: ByteBudget): Promise<void> {
    const { chunk } = job;
    const seg = segmentsOf(chunk.offset, chunk.length);
    const span = cipherSpan({ firstSegment: seg.first, lastSegment: seg.last }, file.headerLength, size);
    let held = STREAM_HELD;
    await budget.acquire(held);
    try {
      let live = job.uses;
      const checked = await streamChunk(file, this.fetcher.stream(range.blob, span.start, span.end), chunk, chunk.id, {
        onWindow: async (bytes) => {
          await budget.acquire(bytes, held);
          held += bytes;
        },
        onPiece: async (piece, pos) => {
          const zero = isAllZero(piece);
          const alive: ChunkUse[] = [];
          for (const u of live) if (await this.files.writePart(u.path, u.fileOffset + pos, piece, chunk.plainLength, zero)) alive.push(u);
          live = alive;
          // Every file it was for failed (and was reported): the rest is not needed.
          return live.length > 0;
        },
      });
      if (checked) for (const u of live) await this.files.commit(u.path, chunk.plainLength);
    } catch (err) {
      if (!isDataError(err)) throw err;
      await this.failJobs([job], chunkFailure(range, job, errorMessage(err)));
    } finally {
      budget.release(held);
    }
  }

  /**
   * A range with few chunk bytes (a fetch of a few small files, or one chunk of a damaged
   * range): decrypted, decoded and written here, with no worker start-up.
   */
  private async runHere(range: RangePlan, file: AgeFileInfo, fetched: Buffer, spanStart: number, limitBytes: number): Promise<void> {
    let cipher: Buffer | undefined = fetched;
    let plain: Buffer | undefined;
    try {
      plain = decryptSegments(file.payloadKey, range.firstSegment, cipher, file.segmentCount - 1);
      cipher = undefined; // not needed any more: let it go before the writes
    } catch {
      // Some segment is bad: decode chunk by chunk so only the chunks it holds fail.
      plain = undefined;
    }
    // Chunks are decoded in order; their writes overlap (small files are mostly file-system
    // round trips), up to WRITE_WINDOW jobs or `limitBytes` of chunks at a time.
    const writes = new TaskWindow(WRITE_WINDOW);
    const writeBytes = new ByteBudget(limitBytes);
    try {
      for (const job of range.chunks) {
        const { chunk } = job;
        let data: Buffer;
        try {
          const at = frameOffsetInRange(range, chunk);
          const frame = plain ? plain.subarray(at, at + chunk.length) : decryptRange(file, spanStart, cipher!, chunk.offset, chunk.length);
          data = decodeChunk(frame, chunk, chunk.id);
        } catch (err) {
          if (!isDataError(err) && !(err instanceof RangeError)) throw err;
          await this.failJobs([job], chunkFailure(range, job, errorMessage(err)));
          continue;
        }
        const size = data.length;
        await writeBytes.acquire(size);
        await writes.room();
        writes.start(this.writeUses(job, data).finally(() => writeBytes.release(size)));
      }
      await writes.drain();
    } finally {
      // Every write settles before the range's memory is released.
      await writes.settle();
    }
  }

  /**
   * A range whose ciphertext (a view of a shared buffer) is decrypted, decoded and verified by
   * the decode workers, in batches of about DECODE_BATCH_BYTES of chunks, the next batch
   * working while this thread handles the last one. Chunks that are whole small files are
   * written by the worker too; the others (larger files, chunks used more than once, and files
   * the worker could not write, redone here for the usual error handling) are written here.
   * Returns when every batch has settled and every write is done.
   */
  private async runPooled(range: RangePlan, file: AgeFileInfo, cipher: Buffer, batchBytes: number): Promise<void> {
    this.pool ??= new DecodePool();
    const pool = this.pool;
    // In place: from here on `cipher` holds the range's plaintext, segment by segment.
    const bad = await pool.decrypt({ data: cipher, key: file.payloadKey, firstSegment: range.firstSegment, finalSegment: file.segmentCount - 1 });
    const batches: ChunkJob[][] = [];
    let batch: ChunkJob[] = [];
    let bytes = 0;
    for (const job of range.chunks) {
      if (bad.size > 0) {
        const s = segmentsOf(job.chunk.offset, job.chunk.length);
        let why: string | undefined;
        for (let i = s.first; i <= s.last && why === undefined; i++) why = bad.get(i);
        if (why !== undefined) {
          await this.failJobs([job], chunkFailure(range, job, why));
          continue;
        }
      }
      if (batch.length > 0 && (bytes + job.chunk.plainLength > batchBytes || batch.length >= 512)) {
        batches.push(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(job);
      bytes += job.chunk.plainLength;
    }
    if (batch.length > 0) batches.push(batch);
    if (batches.length === 0) return;

    const pending = new TaskWindow(WRITE_WINDOW);
    let next: Promise<SubmittedBatch> | undefined = this.submitBatch(pool, range, cipher, batches[0]!);
    try {
      for (let b = 0; b < batches.length; b++) {
        const done: SubmittedBatch = await next!;
        next = b + 1 < batches.length ? this.submitBatch(pool, range, cipher, batches[b + 1]!) : undefined;
        const writes: Promise<void>[] = [];
        const jobs = batches[b]!;
        for (let i = 0; i < jobs.length; i++) {
          const job = jobs[i]!;
          const r = done.results[i]!;
          if ('error' in r) {
            await this.failJobs([job], chunkFailure(range, job, r.error));
            continue;
          }
          if (r.written) {
            this.files.wholeFileWritten(done.entries[i]!);
            continue;
          }
          await pending.room();
          const p = this.writeUses(job, r.chunk);
          pending.start(p);
          writes.push(p);
        }
        // The batch's chunks are reused once their writes are done.
        void Promise.allSettled(writes).then(() => this.buffers.give(done.out));
      }
      await pending.drain();
    } finally {
      // Nothing may still read the ciphertext or a batch's output when this returns.
      if (next) await next.catch(() => undefined);
      await pending.settle();
    }
  }

  /**
   * Sends one batch to the decode workers. A chunk that is the whole content of a small file
   * that has not been started gets a WholeFileWrite: the worker creates the file in its parent
   * directory, which is held open here (TargetWriter.parentOf) until the batch settles.
   */
  private async submitBatch(pool: DecodePool, range: RangePlan, plain: Buffer, jobs: ChunkJob[]): Promise<SubmittedBatch> {
    const entries: (Entry | undefined)[] = new Array<Entry | undefined>(jobs.length);
    const batchJobs: BatchJob[] = [];
    const releases: (() => void)[] = [];
    let parentPath: Buffer | undefined;
    let parent: { dirFd: number } | undefined;
    let total = 0;
    try {
      for (let i = 0; i < jobs.length; i++) {
        const { chunk, uses } = jobs[i]!;
        total += chunk.plainLength;
        const job: BatchJob = { offset: frameOffsetInRange(range, chunk), length: chunk.length, plainLength: chunk.plainLength, id: chunk.id };
        batchJobs.push(job);
        if (uses.length !== 1) continue;
        const entry = this.files.wholeFile(uses[0]!.path, uses[0]!.fileOffset, chunk.plainLength);
        if (!entry) continue;
        const slash = entry.path.lastIndexOf(0x2f);
        const dir = slash < 0 ? EMPTY : entry.path.subarray(0, slash);
        if (!parentPath || !parentPath.equals(dir)) {
          parentPath = dir;
          try {
            const p = await this.writer.parentOf(entry.path);
            releases.push(p.release);
            parent = p;
          } catch {
            // Left to this thread's write, which reports the problem with the path.
            parent = undefined;
          }
        }
        if (!parent) continue;
        entries[i] = entry;
        const t = utimesSeconds(entry.mtimeNs);
        job.write = {
          dirFd: parent.dirFd,
          name: entry.path.subarray(slash + 1).toString('latin1'),
          mode: entry.mode,
          uid: entry.uid,
          gid: entry.gid,
          owners: this.writer.restoresOwners,
          time: t,
        };
      }
      const out = this.buffers.take(total);
      const results = await pool.run({ data: plain, jobs: batchJobs, out });
      return { results, out, entries };
    } finally {
      for (const r of releases) r();
    }
  }

  private async writeUses(job: ChunkJob, data: Buffer): Promise<void> {
    const zero = isAllZero(data);
    if (job.uses.length === 1) return this.files.write(job.uses[0]!.path, job.uses[0]!.fileOffset, data, zero);
    // Different files (or positions) are independent: write a few at a time.
    for (let i = 0; i < job.uses.length; i += 32) {
      await Promise.all(job.uses.slice(i, i + 32).map((u) => this.files.write(u.path, u.fileOffset, data, zero)));
    }
  }

  private async failJobs(jobs: ChunkJob[], message: string): Promise<void> {
    for (const job of jobs) for (const u of job.uses) await this.files.fail(u.path, message);
  }

  /** The names pass 3 links: recorded by pass 1, or found by reading the entries again. */
  private *followerEntries(): Generator<Entry> {
    if (this.followers) {
      yield* this.followers;
      return;
    }
    const seen = new Set<number>();
    for (const e of this.selectedEntries()) {
      if (e.type !== 'file' || e.linkGroup === undefined) continue;
      if (!seen.has(e.linkGroup)) {
        seen.add(e.linkGroup); // the first selected name: restored with the content
        continue;
      }
      yield e;
    }
  }

  /** Pass 3: the other names of each hard-link group. */
  private async linkPass(): Promise<void> {
    for (const e of this.followerEntries()) {
      const group = this.groups.get(e.linkGroup!)!;
      const target = this.mapPath(e.path);
      await this.guarded(e.path, async () => {
        if (this.files.isFailed(group.first)) throw new VaultikError(`not linked: ${displayPath(group.first)} failed`, ExitCode.DATA);
        await this.writer.createHardLink(target, group.firstTarget);
        this.counts.files++;
        this.counts.hardLinks++;
        this.progress.files++;
      });
    }
  }
}
