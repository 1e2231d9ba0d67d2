/**
 * The restore engine's table of regular files being written.
 *
 * Chunks arrive in blob order, not file order, so a file is written piecewise by whichever
 * ranges hold its chunks. A file is created when its first chunk arrives (so a file whose data
 * never arrives is never created), counts down the bytes still missing, and is finished — length,
 * owner, mode, mtime — the moment the last one is written. The table therefore holds only the
 * files that are partly written: with backups packing a file's chunks together, that is a few
 * files at a time, never one record per file of the snapshot. At most `maxOpen` descriptors stay
 * open; idle ones are closed and reopened on demand.
 *
 * A failed file (bad data, unsafe path, I/O error) is removed if it was created, remembered by
 * path so that its later chunks are dropped, and reported once. Disk full (ENOSPC, EDQUOT) is
 * not a per-file failure: it is rethrown so the engine stops, and `abortAll` removes every
 * partial file.
 */
import type { Entry } from '../snapshot/types.js';
import { RestoreError, WHOLE_FILE_MAX, type RestoreFile, type TargetWriter } from '../fs/restoreWriter.js';
import { VaultikError, errorMessage } from '../errors.js';

/** errno codes after which continuing is pointless: the target's disk is full. */
const FATAL_CODES = new Set(['ENOSPC', 'EDQUOT']);

/** True for a write failure that must stop the whole restore. */
export function isFatalWriteError(err: unknown): boolean {
  return err instanceof RestoreError && err.code !== undefined && FATAL_CODES.has(err.code);
}

const ZERO = Buffer.alloc(64 * 1024);

/** Whether every byte of `b` is zero (checked cheaply at the ends first). */
export function isAllZero(b: Buffer): boolean {
  if (b.length === 0 || b[0] !== 0 || b[b.length - 1] !== 0) return b.length === 0;
  for (let i = 0; i < b.length; i += ZERO.length) {
    const n = Math.min(ZERO.length, b.length - i);
    if (b.compare(ZERO, 0, n, i, i + n) !== 0) return false;
  }
  return true;
}

/** Zero chunks at least this large become holes instead of writes. */
export const HOLE_MIN = 4096;

interface FileState {
  /** The entry with its target path. */
  entry: Entry;
  remaining: number;
  /** Settles when the file exists (or is found up to date): its mode. */
  ready: Promise<'write' | 'skip'>;
  /** The open handle, when one is open. */
  file: RestoreFile | undefined;
  /** The latest handle, open or closed: abort() removes the file through it. */
  last: RestoreFile | undefined;
  opening: Promise<RestoreFile> | undefined;
  busy: number;
}

export interface FileTableDeps {
  writer: TargetWriter;
  /** The entry (with its target path) of the file at snapshot path `path`, or undefined. */
  lookup(path: Buffer): Entry | undefined;
  /** Overwrite mode: leave files that `needsWrite` finds up to date. */
  skipUnchanged: boolean;
  maxOpen?: number;
  /** A file is complete: written (`written`) or found up to date. */
  onDone(entry: Entry, written: boolean): void;
  /** Bytes of a file completed (written or skipped). */
  onBytes(n: number): void;
  /** `local`: the target failed (a RestoreError), not the data. */
  onFailed(path: Buffer, message: string, local: boolean): void;
}

export class FileTable {
  private readonly states = new Map<string, FileState>();
  private readonly failed = new Set<string>();
  private openCount = 0;
  private readonly maxOpen: number;

  constructor(private readonly deps: FileTableDeps) {
    this.maxOpen = deps.maxOpen ?? 128;
  }

  /** Whether the file at snapshot path `path` failed. */
  isFailed(path: Buffer): boolean {
    return this.failed.has(path.toString('latin1'));
  }

  /** Files partly written right now. */
  get pending(): number {
    return this.states.size;
  }

  /**
   * Writes one chunk at `offset` of the file at snapshot path `path`, creating the file on its
   * first chunk and finishing it after its last. `zero` says the chunk is all zeros (computed
   * once per chunk by the caller: see isAllZero); a large zero chunk is left as a hole.
   * @throws RestoreError only for fatal errors (isFatalWriteError); other failures are reported
   *   through onFailed and the file is dropped.
   */
  async write(path: Buffer, offset: number, data: Buffer, zero = false): Promise<void> {
    const key = path.toString('latin1');
    if (this.failed.has(key)) return;
    if (!this.states.has(key)) {
      const entry = this.deps.lookup(path);
      if (entry?.type === 'file' && offset === 0 && data.length === entry.size && data.length <= WHOLE_FILE_MAX && !this.deps.skipUnchanged) {
        // A small file in one chunk, the common case: created, written and finished in one call.
        try {
          await this.deps.writer.writeWholeFile(entry, data, zero && data.length >= HOLE_MIN);
        } catch (err) {
          await this.handleError(path, err);
          return;
        }
        this.deps.onBytes(data.length);
        this.deps.onDone(entry, true);
        return;
      }
    }
    const started = await this.started(path, data.length);
    if (!started || !(await this.put(path, started, offset, data, zero))) return;
    await this.countDown(path, started, data.length);
  }

  /**
   * Writes part of a chunk of `length` bytes (a large chunk decoded in steps) at `offset` of the
   * file, creating the file if needed, without counting it: the file cannot finish until
   * `commit` says the whole chunk checked out. A failure afterwards removes the file as usual.
   * @returns false when the file failed (or was failed before): drop the rest of its chunk.
   * @throws RestoreError only for fatal errors (isFatalWriteError).
   */
  async writePart(path: Buffer, offset: number, data: Buffer, length: number, zero = false): Promise<boolean> {
    const started = await this.started(path, length);
    return started !== undefined && (await this.put(path, started, offset, data, zero));
  }

  /**
   * The chunk of `length` bytes whose parts `writePart` wrote checked out: counts it, and
   * finishes the file when it was the last.
   * @throws RestoreError only for fatal errors (isFatalWriteError).
   */
  async commit(path: Buffer, length: number): Promise<void> {
    const started = await this.started(path, length);
    if (started) await this.countDown(path, started, length);
  }

  /**
   * The state of a file a chunk of `length` bytes is for, created on its first chunk; undefined
   * (reported) when the path is no regular file, the file could not be created, or failed.
   */
  private async started(path: Buffer, length: number): Promise<{ s: FileState; mode: 'write' | 'skip' } | undefined> {
    const key = path.toString('latin1');
    if (this.failed.has(key)) return undefined;
    let s = this.states.get(key);
    if (!s) {
      const entry = this.deps.lookup(path);
      if (!entry || entry.type !== 'file') {
        await this.fail(path, 'the snapshot lists chunks for this path but no regular file');
        return undefined;
      }
      const created: FileState = { entry, remaining: entry.size, ready: Promise.resolve('write'), file: undefined, last: undefined, opening: undefined, busy: 0 };
      created.ready = this.start(created);
      this.states.set(key, created);
      s = created;
    }
    let mode: 'write' | 'skip';
    try {
      mode = await s.ready;
    } catch (err) {
      await this.handleError(path, err);
      return undefined;
    }
    if (this.failed.has(key)) return undefined;
    if (length > s.remaining) {
      await this.fail(path, `chunks overlap or exceed the file size ${s.entry.size}`);
      return undefined;
    }
    return { s, mode };
  }

  /** Writes `data` at `offset` (nothing in skip mode); false when the file failed. */
  private async put(path: Buffer, { s, mode }: { s: FileState; mode: 'write' | 'skip' }, offset: number, data: Buffer, zero: boolean): Promise<boolean> {
    if (mode === 'write') {
      s.busy++;
      try {
        const file = await this.handle(s);
        if (zero && data.length >= HOLE_MIN) file.writeZeros(offset, data.length);
        else await file.write(data, offset);
      } catch (err) {
        await this.handleError(path, err);
        return false;
      } finally {
        s.busy--;
      }
    }
    return !this.failed.has(path.toString('latin1'));
  }

  /** `n` more bytes of the file are in place; finishes it after the last. */
  private async countDown(path: Buffer, { s, mode }: { s: FileState; mode: 'write' | 'skip' }, n: number): Promise<void> {
    const key = path.toString('latin1');
    s.remaining -= n;
    this.deps.onBytes(n);
    if (s.remaining > 0 || this.states.get(key) !== s) return;
    try {
      if (mode === 'write') {
        const file = await this.handle(s);
        this.openCount--;
        s.file = undefined;
        await file.finish(s.entry);
      }
      this.states.delete(key);
      this.deps.onDone(s.entry, mode === 'write');
    } catch (err) {
      await this.handleError(path, err);
    }
  }

  /**
   * The entry of the file at snapshot path `path` when the `length` bytes at `offset` are its
   * whole content and someone else may create and write it in one go (a decode worker): a small
   * file, not started, not failed, and not in overwrite mode (which checks what is there first).
   * Report the outcome with `wholeFileWritten`, or on failure hand the chunk to `write`, which
   * then creates the file here (and reports errors as usual).
   */
  wholeFile(path: Buffer, offset: number, length: number): Entry | undefined {
    if (offset !== 0 || length > WHOLE_FILE_MAX || this.deps.skipUnchanged) return undefined;
    const key = path.toString('latin1');
    if (this.failed.has(key) || this.states.has(key)) return undefined;
    const entry = this.deps.lookup(path);
    if (!entry || entry.type !== 'file' || entry.size !== length) return undefined;
    return entry;
  }

  /** A file from `wholeFile` was created and written completely, with its metadata. */
  wholeFileWritten(entry: Entry): void {
    this.deps.onBytes(entry.size);
    this.deps.onDone(entry, true);
  }

  /** Creates the file, or (overwrite mode) finds it up to date and applies its metadata. */
  private async start(s: FileState): Promise<'write' | 'skip'> {
    const { writer } = this.deps;
    if (this.deps.skipUnchanged && !(await writer.needsWrite(s.entry))) {
      await writer.applyMetadata(s.entry);
      return 'skip';
    }
    const file = await writer.createFile(s.entry.path, s.entry.size);
    s.file = file;
    s.last = file;
    this.openCount++;
    this.closeIdle(s);
    return 'write';
  }

  /** The open RestoreFile of a started file, reopening it if it was closed to save descriptors. */
  private handle(s: FileState): Promise<RestoreFile> {
    if (s.file) return Promise.resolve(s.file);
    if (!s.opening) {
      const opening = this.deps.writer.reopenFile(s.entry.path, s.entry.size);
      s.opening = opening;
      // Registered before any caller's await, so it runs first: the handle is counted once.
      opening.then(
        (f) => {
          s.file = f;
          s.last = f;
          s.opening = undefined;
          this.openCount++;
          this.closeIdle(s);
        },
        () => {
          s.opening = undefined;
        },
      );
    }
    return s.opening;
  }

  /** Closes the oldest idle descriptors beyond maxOpen (never `keep`'s). */
  private closeIdle(keep: FileState): void {
    if (this.openCount <= this.maxOpen) return;
    for (const s of this.states.values()) {
      if (this.openCount <= this.maxOpen) break;
      if (s === keep || !s.file || s.busy > 0 || s.opening) continue;
      const f = s.file;
      s.file = undefined;
      this.openCount--;
      void f.close().catch(() => undefined);
    }
  }

  private async handleError(path: Buffer, err: unknown): Promise<void> {
    if (isFatalWriteError(err)) throw err;
    await this.fail(path, errorMessage(err), err instanceof RestoreError);
  }

  /**
   * Marks the file at snapshot path `path` failed: removes what was written of it and reports
   * it (once). Later chunks for it are ignored.
   */
  async fail(path: Buffer, message: string, local = false): Promise<void> {
    const key = path.toString('latin1');
    if (this.failed.has(key)) return;
    this.failed.add(key);
    this.deps.onFailed(path, message, local);
    const s = this.states.get(key);
    this.states.delete(key);
    if (s) await this.discard(s);
  }

  /** Closes and removes a started file (RestoreFile.abort removes it only if it is still ours). */
  private async discard(s: FileState): Promise<void> {
    await s.ready.catch(() => undefined);
    await s.opening?.catch(() => undefined);
    if (s.file) this.openCount--;
    s.file = undefined;
    await s.last?.abort().catch(() => undefined);
  }

  /**
   * Files still partly written: called after the last range. A valid snapshot leaves none; any
   * left (a bug or crafted metadata) are failed and removed.
   */
  async failIncomplete(): Promise<void> {
    for (const [key, s] of [...this.states]) {
      await this.fail(Buffer.from(key, 'latin1'), `incomplete: ${s.remaining} of ${s.entry.size} bytes never arrived`);
    }
  }

  /** Removes every partly written file without reporting them (disk full, interrupt). */
  async abortAll(): Promise<void> {
    const all = [...this.states.values()];
    this.states.clear();
    for (const s of all) await this.discard(s);
  }
}

/** A VaultikError for "the disk is full", naming where. */
export function diskFullError(err: RestoreError, target: string): VaultikError {
  return new VaultikError(
    `no space left on the restore target ${target} (${err.message}); the partly written files were removed, complete ones kept`,
    err.exitCode,
    { cause: err },
  );
}
