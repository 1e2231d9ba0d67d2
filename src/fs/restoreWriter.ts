/**
 * The restore target writer: the only code that creates files during restore and fetch.
 *
 * Safety contract (issue 5 "Safety", issue 9 "symlink swap races"):
 *
 * - Every entry path is validated again here (`splitEntryPath`): no '..', '.', empty
 *   components, absolute paths or NUL bytes, whatever the snapshot reader already checked.
 * - **No symlink is ever followed while writing.** Paths are never resolved as strings. Each
 *   directory under the target is opened component by component with O_DIRECTORY|O_NOFOLLOW,
 *   starting from a descriptor of the target, and every create/link/metadata call addresses its
 *   final name relative to the parent's descriptor through `/proc/self/fd/<fd>/<name>` (Node
 *   has no openat/mkdirat; the magic link gives the same semantics: the name is looked up in the
 *   directory we opened and verified, even if someone renamed or replaced path components
 *   since). A symlink in the middle of a path — restored from the snapshot ("a" → "/etc", then
 *   "a/passwd") or planted in the target — is refused, never traversed: a RestoreError, a
 *   problem of the target (the snapshot reader already refuses entries under a snapshot's
 *   non-directory). In overwrite mode `prepareDir` replaces a symlink where the snapshot has a
 *   directory; the restore engine prepares a directory before it writes anything under it.
 *   Final components are created with O_CREAT|O_EXCL|O_NOFOLLOW (files), mkdir/symlink/link
 *   (which never follow a final symlink), and metadata goes through the open descriptor or
 *   lchown/lutimes. `parentOf` hands such a verified parent descriptor to the restore's decode
 *   workers, which create one-chunk files through it with the same flags. The one exception is chmod of FIFOs and device nodes (Node has no lchmod on
 *   Linux): it runs right after an lstat check, so only a process that can write into the
 *   target directory can race it. This needs Linux's /proc.
 * - A non-empty target is refused unless `overwrite`. With `overwrite`, an existing name is
 *   unlinked (or removed recursively, if it is a directory in the way) and created anew —
 *   never opened and truncated, so a planted hard link or symlink cannot redirect the write.
 *   `needsWrite` tells the restorer which entries are already up to date; names in the target
 *   that the snapshot does not have are left alone (like restic, there is no --delete).
 *
 * Ordering contract: call `prepareDir` for directories, create files, links and special files,
 * write contents, then `applyMetadata` for non-files (files get theirs in `RestoreFile.finish`),
 * and `finish()` last: directory modes, owners and mtimes are applied there, deepest first,
 * after all their contents, so creating children cannot bump a restored mtime and a read-only
 * directory mode cannot block its own restore.
 *
 * Precision: Node's utimes API takes seconds as a double, so restored mtimes are exact to the
 * microsecond and the nanosecond remainder is lost. Node 22's libuv truncates to the microsecond;
 * Node 24's keeps what the double holds (~240 ns steps), so there the sub-microsecond part is
 * near the middle of the microsecond instead of 0 (see utimesSeconds).
 * atime is set equal to mtime (the snapshot has no atime). Ownership is restored only when
 * running as root (the `owners` option), like tar.
 *
 * Memory: one small record per directory (for `finish`), plus a bounded cache of open
 * directory descriptors.
 */
import { constants } from 'node:fs';
import { chmod, lchown, link, lstat, lutimes, mkdir, open, readdir, readlink, realpath, rmdir, symlink, unlink, type FileHandle } from 'node:fs/promises';
import { closeSync, existsSync, fchmodSync, fchownSync, fstatSync, ftruncateSync, futimesSync, lstatSync, open as openCallback, unlinkSync, writeSync, type BigIntStats, type Stats } from 'node:fs';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import type { Entry } from '../snapshot/types.js';
import { ExitCode, UsageError, VaultikError, errorMessage } from '../errors.js';
import { displayPath, splitEntryPath } from './paths.js';
import { entryTypeOf } from './walk.js';

const execFileAsync = promisify(execFile);
/** fs.open without a FileHandle: a plain descriptor for the synchronous calls that follow. */
const openFd = promisify(openCallback);

/** Largest file restored by one synchronous writeWholeFile (larger ones use async positional writes). */
export const WHOLE_FILE_MAX = 1024 * 1024;

/** Open directory descriptors kept for reuse (entries arrive in path order, so hits dominate). */
const DIR_CACHE_LIMIT = 64;

/** Creates a regular file: a new name only, never through a final symlink. */
export const CREATE_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const OPEN_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
/** For metadata and reopening: never follow, never block on a FIFO swapped in. */
const OPEN_EXISTING = constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** A failure writing one entry; carries the entry path. ENOSPC reads "no space left on device". */
export class RestoreError extends VaultikError {
  constructor(
    readonly path: Buffer,
    /** errno code of the underlying failure, when there is one. */
    readonly code: string | undefined,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, ExitCode.FAILURE, options);
    this.name = 'RestoreError';
  }
}

export interface RestoreWarning {
  path: Buffer;
  message: string;
}

export interface TargetWriterOptions {
  /** Restore into a non-empty target, replacing entries that differ (default false: refuse). */
  overwrite?: boolean;
  /** Restore uid/gid (default: only when running as root, the only case where chown can work). */
  owners?: boolean;
  /** Entries that cannot be recreated here (sockets, devices when not root) are reported here. */
  onWarning?: (warning: RestoreWarning) => void;
}

/**
 * µs-exact seconds for utimes: aims at the middle of the microsecond, so that neither Node 22
 * (which truncates to whole microseconds) nor Node 24 (which truncates to the double's ~240 ns
 * steps) lands in the microsecond before.
 */
export function utimesSeconds(mtimeNs: bigint): number {
  let us = mtimeNs / 1000n;
  if (mtimeNs < 0n && mtimeNs % 1000n !== 0n) us -= 1n; // floor, not truncation
  let sec = us / 1_000_000n;
  let frac = us % 1_000_000n;
  if (frac < 0n) {
    sec -= 1n;
    frac += 1_000_000n;
  }
  return Number(sec) + (Number(frac) + 0.5) / 1e6;
}

/** A whole file's metadata: an entry's owner, mode and mtime (as utimesSeconds). */
export interface WholeFileMetadata {
  mode: number;
  uid: number;
  gid: number;
  /** Restore uid and gid (TargetWriterOptions.owners). */
  owners: boolean;
  /** utimesSeconds(mtimeNs), for atime and mtime. */
  time: number;
}

/**
 * Gives the regular file just created at `p` (CREATE_FILE, mode `meta.mode & 0o777`), open as
 * `fd`, its whole content — `data`, or with `hole` (all zeros) a hole of `data.length` bytes —
 * and its metadata, and closes `fd`. Created with its permission bits, the file then needs no
 * fchmod and, unless restored to another owner, no fchown: two of the seven calls per file
 * (nothing is exposed that the final mode does not expose, the content comes right away).
 * Synchronous, as writeWholeFile explains; the restore's decode workers call it too.
 * @throws the failing call's error, after closing and removing the file (if `p` is still it).
 */
export function fillNewFile(p: Buffer, fd: number, data: Uint8Array, hole: boolean, meta: WholeFileMetadata): void {
  let closed = false;
  let st: Stats | undefined;
  try {
    st = fstatSync(fd);
    if (hole) ftruncateSync(fd, data.length);
    else for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, done);
    // Owner, then mode (chown clears setuid bits), then times.
    if (meta.owners && (st.uid !== meta.uid || st.gid !== meta.gid)) {
      fchownSync(fd, meta.uid, meta.gid);
      fchmodSync(fd, meta.mode);
    } else if ((st.mode & 0o7777) !== meta.mode) {
      fchmodSync(fd, meta.mode);
    }
    futimesSync(fd, meta.time, meta.time);
    closed = true;
    closeSync(fd);
  } catch (err) {
    if (!closed) {
      try {
        closeSync(fd);
      } catch {
        // Already failing: the first error is the one to report.
      }
    }
    if (st) {
      try {
        const now = lstatSync(p);
        if (now.ino === st.ino && now.dev === st.dev) unlinkSync(p);
      } catch {
        // Gone or replaced: nothing of ours to remove.
      }
    }
    throw err;
  }
}

/** `name` in the directory open as `fd`, looked up there and nowhere else (see the module comment). */
export function procPath(fd: number, name: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`/proc/self/fd/${fd}/`), name]);
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** Wraps an fs failure with the entry path; VaultikErrors (already explained) pass through. */
function failure(path: Buffer, action: string, err: unknown): VaultikError {
  if (err instanceof VaultikError) return err;
  const code = errnoOf(err);
  // Node's message is "CODE: text, syscall '/proc/self/fd/N/...'": the path part is noise here.
  const reason = code !== undefined ? errorMessage(err).split(',')[0]! : errorMessage(err);
  return new RestoreError(path, code, `cannot ${action} ${displayPath(path)}: ${reason}`, { cause: err });
}

interface DirSlot {
  handle: FileHandle;
  refs: number;
  /** Removed from the cache (evicted or invalidated): close when the last lease is released. */
  dropped: boolean;
}

/** A directory descriptor that stays open until `release()`. */
interface DirLease {
  handle: FileHandle;
  release(): void;
}

/**
 * Open descriptors of verified directories under the target, keyed by relative path. A slot is
 * closed only when no lease holds it: a descriptor number closed while an operation is using
 * /proc/self/fd/<n> could be reused by another open and silently redirect that operation.
 */
class DirCache {
  private readonly slots = new Map<string, DirSlot>();
  private readonly rootSlot: DirSlot;

  constructor(root: FileHandle) {
    this.rootSlot = { handle: root, refs: 1, dropped: false };
  }

  /**
   * Opens (and with `create`, makes) the directory `components` under the target, refusing to
   * pass through anything but a real directory.
   * @throws RestoreError when a component is a non-directory (code ELOOP: a symlink; ENOTDIR:
   *   another) or cannot be opened.
   */
  async acquire(components: Buffer[], create: boolean, entryPath: Buffer): Promise<DirLease> {
    let depth = components.length;
    let slot: DirSlot | undefined;
    for (; depth > 0; depth--) {
      const key = keyOf(components, depth);
      slot = this.slots.get(key);
      if (slot) {
        this.slots.delete(key); // re-insert: most recently used last
        this.slots.set(key, slot);
        break;
      }
    }
    slot ??= this.rootSlot;
    slot.refs++;
    while (depth < components.length) {
      let child: FileHandle;
      try {
        child = await openDirAt(slot.handle.fd, components[depth]!, create, entryPath, components.slice(0, depth + 1));
      } catch (err) {
        this.release(slot);
        throw err;
      }
      this.release(slot);
      depth++;
      const key = keyOf(components, depth);
      const existing = this.slots.get(key);
      if (existing) {
        // A concurrent acquire opened it first. Take `existing` before any await: while this
        // function waited, another acquire's evict() could close it (fd -1) if its refs were 0.
        void child.close().catch(() => undefined);
        slot = existing;
      } else {
        slot = { handle: child, refs: 0, dropped: false };
        this.slots.set(key, slot);
      }
      slot.refs++;
    }
    this.evict();
    const held = slot;
    return { handle: held.handle, release: () => this.release(held) };
  }

  private release(slot: DirSlot): void {
    slot.refs--;
    if (slot.dropped && slot.refs === 0) void slot.handle.close().catch(() => undefined);
  }

  private evict(): void {
    if (this.slots.size <= DIR_CACHE_LIMIT) return;
    for (const [key, slot] of this.slots) {
      if (this.slots.size <= DIR_CACHE_LIMIT) break;
      if (slot.refs > 0) continue;
      this.drop(key, slot);
    }
  }

  private drop(key: string, slot: DirSlot): void {
    this.slots.delete(key);
    slot.dropped = true;
    if (slot.refs === 0) void slot.handle.close().catch(() => undefined);
  }

  /** Forgets `components` and everything below it (after removing it from the target). */
  invalidate(components: Buffer[]): void {
    const key = keyOf(components, components.length);
    for (const [k, slot] of this.slots) {
      if (k === key || k.startsWith(`${key}/`)) this.drop(k, slot);
    }
  }

  async closeAll(): Promise<void> {
    const slots = [...this.slots.values()];
    this.slots.clear();
    for (const slot of slots) {
      slot.dropped = true;
      if (slot.refs === 0) await slot.handle.close().catch(() => undefined);
    }
    await this.rootSlot.handle.close();
  }
}

/** latin1 maps each byte to one char, so distinct byte paths get distinct keys. */
function keyOf(components: Buffer[], depth: number): string {
  return components
    .slice(0, depth)
    .map((c) => c.toString('latin1'))
    .join('/');
}

async function openDirAt(parentFd: number, name: Buffer, create: boolean, entryPath: Buffer, soFar: Buffer[]): Promise<FileHandle> {
  const p = procPath(parentFd, name);
  const shown = displayPath(Buffer.from(soFar.map((c) => c.toString('latin1')).join('/'), 'latin1'));
  for (let attempt = 0; ; attempt++) {
    try {
      return await open(p, OPEN_DIR);
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT' && create && attempt === 0) {
        // A missing ancestor (a partial restore, or a snapshot without the directory entry):
        // created like `mkdir -p` would; its final metadata comes only from an applyMetadata call.
        try {
          await mkdir(p, { mode: 0o755 });
        } catch (mkErr) {
          if (errnoOf(mkErr) !== 'EEXIST') throw failure(entryPath, 'create directory for', mkErr);
        }
        continue;
      }
      if (code === 'ENOTDIR' || code === 'ELOOP') {
        const st = await lstat(p).catch(() => undefined);
        if (st?.isSymbolicLink()) {
          throw new RestoreError(entryPath, 'ELOOP', `cannot restore ${displayPath(entryPath)}: ${shown} in the target is a symlink; not written through`, { cause: err });
        }
        throw new RestoreError(entryPath, 'ENOTDIR', `cannot restore ${displayPath(entryPath)}: ${shown} in the target is not a directory`, { cause: err });
      }
      throw failure(entryPath, 'open the directory of', err);
    }
  }
}

interface DirMetadata {
  path: Buffer;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
}

/**
 * Writes restored entries under one target directory (see the module comment for the safety
 * and ordering contract). Methods may run concurrently for different paths.
 */
export class TargetWriter {
  private readonly dirs: DirCache;
  private readonly pendingDirs: DirMetadata[] = [];
  private readonly overwrite: boolean;
  private readonly owners: boolean;
  private readonly isRoot: boolean;
  private closed = false;

  private constructor(
    /** The target's real path (a target given as a symlink is resolved once, at open). */
    readonly root: string,
    rootHandle: FileHandle,
    private readonly options: TargetWriterOptions,
  ) {
    this.dirs = new DirCache(rootHandle);
    this.overwrite = options.overwrite ?? false;
    this.isRoot = process.getuid?.() === 0;
    this.owners = options.owners ?? this.isRoot;
  }

  /**
   * Opens (creating it if missing, mode 0700) the target directory.
   * @throws UsageError when the target is not empty and `overwrite` is not set, or is not a directory.
   * @throws VaultikError when /proc is missing (not Linux): safe writing needs /proc/self/fd.
   */
  static async open(target: string, options: TargetWriterOptions = {}): Promise<TargetWriter> {
    if (!existsSync('/proc/self/fd')) {
      throw new VaultikError('restore needs /proc/self/fd (Linux) to write without following symlinks');
    }
    try {
      await mkdir(target, { recursive: true, mode: 0o700 });
    } catch (err) {
      if (errnoOf(err) === 'EEXIST' || errnoOf(err) === 'ENOTDIR') throw new UsageError(`restore target '${target}' is not a directory`);
      throw new VaultikError(`cannot create restore target '${target}': ${errorMessage(err)}`, ExitCode.FAILURE, { cause: err });
    }
    const real = await realpath(target);
    let handle: FileHandle;
    try {
      handle = await open(real, constants.O_RDONLY | constants.O_DIRECTORY);
    } catch (err) {
      if (errnoOf(err) === 'ENOTDIR') throw new UsageError(`restore target '${target}' is not a directory`);
      throw new VaultikError(`cannot open restore target '${target}': ${errorMessage(err)}`, ExitCode.FAILURE, { cause: err });
    }
    if (!options.overwrite) {
      const names = await readdir(`/proc/self/fd/${handle.fd}`);
      if (names.length > 0) {
        await handle.close();
        throw new UsageError(`restore target '${target}' is not empty; use --overwrite to restore into it (only entries that differ are replaced)`);
      }
    }
    return new TargetWriter(real, handle, options);
  }

  /** Runs `fn` with the entry's parent directory held open; `p` names the entry through it. */
  private async inParent<T>(
    components: Buffer[],
    path: Buffer,
    create: boolean,
    action: string,
    fn: (p: Buffer, parent: FileHandle) => Promise<T>,
  ): Promise<T> {
    this.checkOpen();
    const lease = await this.dirs.acquire(components.slice(0, -1), create, path);
    try {
      return await fn(procPath(lease.handle.fd, components[components.length - 1]!), lease.handle);
    } catch (err) {
      throw failure(path, action, err);
    } finally {
      lease.release();
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new VaultikError('TargetWriter used after finish()/close()');
  }

  /** Removes whatever is at `p` (overwrite mode only), so a fresh entry can be created there. */
  private async removeExisting(p: Buffer, components: Buffer[]): Promise<void> {
    const st = await lstat(p);
    if (st.isDirectory()) {
      this.dirs.invalidate(components);
      await removeTree(p);
    } else {
      await unlink(p);
    }
  }

  /**
   * Creates `fn`'s entry; on EEXIST in overwrite mode, removes what is there and retries once.
   * Without overwrite an existing name is an error (the target was empty at open, so the
   * snapshot names it twice or something else is writing into the target).
   */
  private async createFresh<T>(p: Buffer, components: Buffer[], create: () => Promise<T>): Promise<T> {
    try {
      return await create();
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST' || !this.overwrite) throw err;
    }
    await this.removeExisting(p, components);
    return create();
  }

  /**
   * Makes sure `path` is a real directory (mode 0700 until `finish()`; an existing directory is
   * kept as is). In overwrite mode a non-directory in the way is replaced.
   * @throws UnsafePathError (bad path), RestoreError (also for a symlink among its parents).
   */
  async prepareDir(path: Buffer): Promise<void> {
    const components = splitEntryPath(path);
    await this.inParent(components, path, true, 'create directory', async (p) => {
      try {
        await mkdir(p, { mode: 0o700 });
        return;
      } catch (err) {
        if (errnoOf(err) !== 'EEXIST') throw err;
      }
      const st = await lstat(p);
      if (st.isDirectory()) return;
      if (!this.overwrite) throw Object.assign(new Error('EEXIST: exists and is not a directory'), { code: 'EEXIST' });
      await this.removeExisting(p, components);
      await mkdir(p, { mode: 0o700 });
    });
  }

  /**
   * Creates a new, empty regular file (mode 0600 until `finish(entry)`) for positional writes.
   * Missing parent directories are created (mode 0755, subject to the umask).
   * @throws UnsafePathError, RestoreError (EEXIST without overwrite, ENOSPC, ...).
   */
  async createFile(path: Buffer, size: number): Promise<RestoreFile> {
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid file size ${size}`);
    const components = splitEntryPath(path);
    return this.inParent(components, path, true, 'create file', async (p) => {
      const handle = await this.createFresh(p, components, () => open(p, CREATE_FILE, 0o600));
      return RestoreFile.start(this, path, handle, size);
    });
  }

  /**
   * Creates a regular file whose whole content is `data` (`zero`: all zeros, left as a hole; see
   * fillNewFile), with its owner, mode and mtime, in one call: the same safety as
   * createFile + write + finish. Only the open runs on the thread pool: creating the inode is the
   * one slow call (≈100 µs on ext4, 4.5 s of a 46,000-file restore when it ran here). The rest
   * are synchronous on purpose: for the tens of thousands of small files of a restore, promise-
   * based FileHandle calls (each a thread-pool round trip) cost 3–5 times as much main-thread CPU
   * as the calls themselves, and these are page-cache writes of at most WHOLE_FILE_MAX bytes.
   * @throws UnsafePathError, RestoreError (the partial file is removed first).
   */
  async writeWholeFile(entry: Entry, data: Uint8Array, zero = false): Promise<void> {
    if (!Number.isSafeInteger(entry.size) || data.length !== entry.size) throw new RangeError(`invalid whole-file write of ${data.length} bytes for size ${entry.size}`);
    const components = splitEntryPath(entry.path);
    const meta: WholeFileMetadata = { mode: entry.mode, uid: entry.uid, gid: entry.gid, owners: this.owners, time: utimesSeconds(entry.mtimeNs) };
    await this.inParent(components, entry.path, true, 'create file', async (p) => {
      const fd = await this.createFresh(p, components, () => openFd(p, CREATE_FILE, entry.mode & 0o777));
      fillNewFile(p, fd, data, zero, meta);
    });
  }

  /**
   * For code that creates the regular file `path` itself through `/proc/self/fd/<dirFd>/<name>`
   * with CREATE_FILE flags (the restore's decode workers, see src/restore/decodePool.ts): its
   * parent directory, reached and held open exactly as createFile does (path validated,
   * component by component, never through a symlink; missing parents created), and its final
   * name. The descriptor stays valid until `release()`.
   * @throws UnsafePathError, RestoreError.
   */
  async parentOf(path: Buffer): Promise<{ dirFd: number; name: Buffer; release(): void }> {
    this.checkOpen();
    const components = splitEntryPath(path);
    let lease: DirLease;
    try {
      lease = await this.dirs.acquire(components.slice(0, -1), true, path);
    } catch (err) {
      throw failure(path, 'create file', err);
    }
    return { dirFd: lease.handle.fd, name: components[components.length - 1]!, release: lease.release };
  }

  /** Whether owners (uid, gid) are restored. */
  get restoresOwners(): boolean {
    return this.owners;
  }

  /**
   * Reopens a file created earlier in this restore for more writes (restorers that keep only a
   * few descriptors open). Never follows a symlink; the file must be regular.
   * @throws UnsafePathError, RestoreError.
   */
  async reopenFile(path: Buffer, size: number): Promise<RestoreFile> {
    const components = splitEntryPath(path);
    return this.inParent(components, path, false, 'reopen file', async (p) => {
      const handle = await open(p, constants.O_WRONLY | OPEN_EXISTING);
      try {
        const st = await handle.stat();
        if (!st.isFile()) throw Object.assign(new Error('EINVAL: not a regular file'), { code: 'EINVAL' });
      } catch (err) {
        await handle.close();
        throw err;
      }
      return RestoreFile.start(this, path, handle, size);
    });
  }

  /**
   * Creates a symlink. The target bytes are stored as they are (absolute or with '..' is fine:
   * the writer itself never follows it, and refuses entries beneath it).
   * @throws UnsafePathError, RestoreError (empty target or NUL byte: EINVAL).
   */
  async createSymlink(path: Buffer, target: Buffer): Promise<void> {
    const components = splitEntryPath(path);
    if (target.length === 0 || target.includes(0)) {
      throw new RestoreError(path, 'EINVAL', `cannot restore symlink ${displayPath(path)}: empty target or NUL byte in target`);
    }
    await this.inParent(components, path, true, 'create symlink', (p) => this.createFresh(p, components, () => symlink(target, p)));
  }

  /**
   * Makes `path` another name of the regular file `existingPath` (restored earlier in this run).
   * In overwrite mode a name that already is that file is left alone.
   * @throws UnsafePathError, RestoreError (existing path missing or not a regular file).
   */
  async createHardLink(path: Buffer, existingPath: Buffer): Promise<void> {
    const components = splitEntryPath(path);
    const sourceComponents = splitEntryPath(existingPath);
    await this.inParent(sourceComponents, path, false, 'create hard link', async (source) => {
      const st = await lstat(source);
      if (!st.isFile()) {
        throw Object.assign(new Error(`EINVAL: link target ${displayPath(existingPath)} is not a regular file`), { code: 'EINVAL' });
      }
      await this.inParent(components, path, true, 'create hard link', async (p) => {
        try {
          await link(source, p); // link(2) never follows a symlink at `source`
          return;
        } catch (err) {
          if (errnoOf(err) !== 'EEXIST' || !this.overwrite) throw err;
        }
        const there = await lstat(p);
        if (there.ino === st.ino && there.dev === st.dev) return;
        await this.removeExisting(p, components);
        await link(source, p);
      });
    });
  }

  /**
   * Recreates a FIFO (with the `mkfifo` tool: Node has no mkfifo) or, as root, a character or
   * block device (`mknod`). Sockets are not recreated (a socket file is useless without the
   * program listening on it, which recreates it; tar skips them too), nor are devices when not
   * root: both are reported through `onWarning`. The node is made under a temporary ASCII
   * name (the tools take names as text; entry names are bytes) and linked to its name, which
   * also never replaces an existing name without `overwrite`.
   * @returns true when the entry was created, false when skipped with a warning.
   * @throws UnsafePathError, RestoreError.
   */
  async createSpecial(entry: Entry): Promise<boolean> {
    const components = splitEntryPath(entry.path);
    let command: (tmpName: string) => [string, string[]];
    if (entry.type === 'fifo') {
      command = (name) => ['mkfifo', ['-m', '600', '--', name]];
    } else if (entry.type === 'chardev' || entry.type === 'blockdev') {
      if (!this.isRoot) {
        this.warn(entry.path, `device ${displayPath(entry.path)} not restored: creating device nodes needs root`);
        return false;
      }
      const { major, minor } = splitDeviceNumber(entry.rdev ?? 0);
      const kind = entry.type === 'chardev' ? 'c' : 'b';
      command = (name) => ['mknod', ['-m', '600', '--', name, kind, String(major), String(minor)]];
    } else {
      this.warn(entry.path, `${entry.type} ${displayPath(entry.path)} not restored: only FIFOs and (as root) devices are recreated`);
      return false;
    }
    await this.inParent(components, entry.path, true, `create ${entry.type}`, async (p, parent) => {
      const tmpName = `.vaultik-tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
      const tmp = procPath(parent.fd, Buffer.from(tmpName));
      const [cmd, args] = command(tmpName);
      // The tool runs in the parent directory reached through our descriptor, so it cannot be redirected either.
      await execFileAsync(cmd, args, { cwd: `/proc/${process.pid}/fd/${parent.fd}` });
      try {
        await this.createFresh(p, components, () => link(tmp, p));
      } finally {
        await unlink(tmp).catch(() => undefined);
      }
    });
    return true;
  }

  private warn(path: Buffer, message: string): void {
    this.options.onWarning?.({ path, message });
  }

  /**
   * Applies owner (when `owners`), mode and mtime of an entry that exists in the target.
   * Directories are only recorded here and applied in `finish()`. Regular files normally get
   * theirs from `RestoreFile.finish(entry)`; this is for later hard links and for files that
   * `needsWrite` found up to date. Symlinks get owner and mtime (Linux has no symlink modes).
   * @throws UnsafePathError, RestoreError (also when the entry on disk has another type).
   */
  async applyMetadata(entry: Entry): Promise<void> {
    const components = splitEntryPath(entry.path);
    if (entry.type === 'dir') {
      this.checkOpen();
      this.pendingDirs.push({ path: Buffer.from(entry.path), mode: entry.mode, uid: entry.uid, gid: entry.gid, mtimeNs: entry.mtimeNs });
      return;
    }
    await this.inParent(components, entry.path, false, 'set metadata of', async (p) => {
      if (entry.type === 'file') {
        let handle: FileHandle | undefined;
        try {
          handle = await open(p, constants.O_RDONLY | OPEN_EXISTING);
        } catch (err) {
          // Not root and the file's restored mode denies reading: fall back to the path calls below.
          if (errnoOf(err) !== 'EACCES') throw err;
        }
        if (handle) {
          try {
            const st = await handle.stat();
            if (!st.isFile()) throw typeMismatch(entry, st);
            await this.applyThroughHandle(handle, entry);
          } finally {
            await handle.close();
          }
          return;
        }
      }
      const st = await lstat(p);
      if (entryTypeOf(st.mode) !== entry.type) throw typeMismatch(entry, st);
      if (this.owners) await lchown(p, entry.uid, entry.gid);
      if (entry.type !== 'symlink') await chmod(p, entry.mode); // safe: just checked it is not a symlink
      const t = utimesSeconds(entry.mtimeNs);
      await lutimes(p, t, t);
    });
  }

  /** Owner, then mode (chown clears setuid bits), then times (chmod changes only ctime). */
  async applyThroughHandle(handle: FileHandle, entry: Pick<Entry, 'uid' | 'gid' | 'mode' | 'mtimeNs'>): Promise<void> {
    if (this.owners) await handle.chown(entry.uid, entry.gid);
    await handle.chmod(entry.mode);
    const t = utimesSeconds(entry.mtimeNs);
    await handle.utimes(t, t);
  }

  /**
   * Whether an entry must be (re)created, for overwrite mode: true when nothing is at its path,
   * the type differs, or — for files — size or mtime (to the µs) differ or the file has other
   * hard links (it may be shared with something outside the restore, so it is replaced rather
   * than trusted); for symlinks when the target differs, for devices when rdev differs.
   * Existing directories never need a write. This is a quick check like rsync's: contents are
   * not compared. Entries found up to date should still get `applyMetadata`.
   * @throws UnsafePathError (bad path), RestoreError (a symlink among the parents).
   */
  async needsWrite(entry: Entry): Promise<boolean> {
    const components = splitEntryPath(entry.path);
    try {
      return await this.inParent(components, entry.path, false, 'check', async (p) => {
        const st = await lstat(p, { bigint: true });
        if (entryTypeOf(Number(st.mode)) !== entry.type) return true;
        switch (entry.type) {
          case 'file':
            return st.nlink > 1n || Number(st.size) !== entry.size || floorMicros(st.mtimeNs) !== floorMicros(entry.mtimeNs);
          case 'symlink': {
            const target = await readlink(p, { encoding: 'buffer' });
            return entry.target === undefined || !target.equals(entry.target);
          }
          case 'chardev':
          case 'blockdev':
            return Number(st.rdev) !== (entry.rdev ?? 0);
          default:
            return false;
        }
      });
    } catch (err) {
      if (err instanceof RestoreError && err.code === 'ENOENT') return true;
      throw err;
    }
  }

  /**
   * Applies the recorded directory metadata, deepest first (reverse byte order of paths puts
   * every directory before its ancestors), then closes the writer.
   * @throws RestoreError naming the first directory that failed (the others are still applied).
   */
  async finish(): Promise<void> {
    this.checkOpen();
    const dirs = this.pendingDirs.splice(0).sort((a, b) => Buffer.compare(b.path, a.path));
    let first: unknown;
    for (const dir of dirs) {
      try {
        const lease = await this.dirs.acquire(splitEntryPath(dir.path), false, dir.path);
        try {
          await this.applyThroughHandle(lease.handle, dir);
        } finally {
          lease.release();
        }
      } catch (err) {
        first ??= failure(dir.path, 'set metadata of directory', err);
      }
    }
    await this.close();
    if (first !== undefined) throw first;
  }

  /** Releases descriptors without applying directory metadata; idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.dirs.closeAll();
  }

  /** @internal used by RestoreFile.abort: removes `path` if it still is the file `handle` created. */
  async removeCreated(path: Buffer, ino: number, dev: number): Promise<void> {
    const components = splitEntryPath(path);
    await this.inParent(components, path, false, 'remove partial file', async (p) => {
      const st = await lstat(p).catch(() => undefined);
      if (st && st.ino === ino && st.dev === dev) await unlink(p);
    });
  }
}

/**
 * Recursive removal that cannot be redirected: every level is opened with O_NOFOLLOW and its
 * children are named through that descriptor, so a subdirectory swapped for a symlink while we
 * delete is unlinked as a symlink, never descended (fs.rm re-resolves string paths).
 */
async function removeTree(p: Buffer): Promise<void> {
  const st = await lstat(p);
  if (!st.isDirectory()) {
    await unlink(p);
    return;
  }
  const dir = await open(p, OPEN_DIR);
  try {
    for (const name of await readdir(`/proc/self/fd/${dir.fd}`, { encoding: 'buffer' })) {
      await removeTree(procPath(dir.fd, name));
    }
  } finally {
    await dir.close();
  }
  await rmdir(p);
}

function floorMicros(ns: bigint): bigint {
  const us = ns / 1000n;
  return ns < 0n && ns % 1000n !== 0n ? us - 1n : us;
}

function typeMismatch(entry: Entry, st: Stats | BigIntStats): Error {
  return Object.assign(new Error(`EEXIST: is a ${entryTypeOf(Number(st.mode))}, expected a ${entry.type}`), { code: 'EEXIST' });
}

/** Linux's (glibc's) split of a dev_t into major and minor numbers. */
export function splitDeviceNumber(rdev: number): { major: number; minor: number } {
  const r = BigInt(rdev);
  const major = ((r >> 8n) & 0xfffn) | ((r >> 32n) & ~0xfffn);
  const minor = (r & 0xffn) | ((r >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/**
 * A regular file being restored: positional writes, then `finish` (or `abort` on failure).
 * Not safe for overlapping concurrent writes to the same range; disjoint ranges may be written
 * concurrently.
 */
export class RestoreFile {
  private handle: FileHandle | undefined;
  private done = false;

  private constructor(
    private readonly writer: TargetWriter,
    readonly path: Buffer,
    handle: FileHandle,
    /** The entry's size: writes must stay inside it, and `finish` sets the length to it. */
    readonly size: number,
    private readonly ino: number,
    private readonly dev: number,
  ) {
    this.handle = handle;
  }

  /** @internal */
  static async start(writer: TargetWriter, path: Buffer, handle: FileHandle, size: number): Promise<RestoreFile> {
    try {
      const st = await handle.stat();
      return new RestoreFile(writer, path, handle, size, st.ino, st.dev);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  private open(action: string): FileHandle {
    if (!this.handle) throw new RestoreError(this.path, undefined, `cannot ${action} ${displayPath(this.path)}: file already closed`);
    return this.handle;
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > this.size) {
      // Only a corrupt or crafted snapshot asks for this (chunk list longer than the file).
      throw new RestoreError(this.path, 'ERANGE', `cannot write ${displayPath(this.path)}: bytes ${offset}..${offset + length} lie outside its size ${this.size}`);
    }
  }

  /**
   * Writes all of `data` at `offset`.
   * @throws RestoreError with the path (ENOSPC: "no space left on device"; ERANGE past the size).
   *   The partial file stays until `abort()`.
   */
  async write(data: Uint8Array, offset: number): Promise<void> {
    this.checkRange(offset, data.length);
    const handle = this.open('write');
    let done = 0;
    try {
      while (done < data.length) {
        const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw failure(this.path, 'write', err);
    }
  }

  /**
   * Declares `length` zero bytes at `offset`. Nothing is written: the file was created empty,
   * so the range reads as zeros and stays a hole (sparse), and `finish` extends the length over
   * trailing holes.
   * @throws RestoreError ERANGE when the range lies outside the size.
   */
  writeZeros(offset: number, length: number): void {
    this.checkRange(offset, length);
  }

  /**
   * Sets the length to `size` and, with `entry`, the owner, mode and mtime; closes the file.
   * @throws RestoreError with the path.
   */
  async finish(entry?: Entry): Promise<void> {
    const handle = this.open('finish');
    try {
      await handle.truncate(this.size);
      if (entry) await this.writer.applyThroughHandle(handle, entry);
    } catch (err) {
      throw failure(this.path, 'finish', err);
    }
    this.done = true;
    this.handle = undefined;
    try {
      await handle.close();
    } catch (err) {
      throw failure(this.path, 'close', err);
    }
  }

  /** Closes without finishing; `TargetWriter.reopenFile` continues later. Idempotent. */
  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    await handle?.close();
  }

  /**
   * Closes and removes the partial file (after a write error such as ENOSPC), if the name still
   * refers to the file this handle created. Does nothing after a successful `finish`. Idempotent.
   * @throws RestoreError when the removal itself fails.
   */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.close().catch(() => undefined);
    await this.writer.removeCreated(this.path, this.ino, this.dev);
  }
}
