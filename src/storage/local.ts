/**
 * The local-directory store: backups to a USB disk or a NAS mount, the README demo, fast tests.
 *
 * Layout: key "blobs/ab/cd/<hash>" under prefix "host1/" is the file
 * `<path>/host1/blobs/ab/cd/<hash>`.
 *
 * Contract (beyond Storage):
 * - A put is atomic and durable: the bytes go to a temp file in the target directory, which is
 *   fsynced, hard-linked to the final name and followed by an fsync of the directory (and of any
 *   directory the put created). A crash leaves either no object or the whole object under its
 *   name, never a partial one; readers never see a partial object.
 * - A put never replaces an object: link() fails with EEXIST where rename() would overwrite, and
 *   the put then succeeds leaving the existing object (keys are content hashes, so it holds the
 *   same bytes; see Storage). Without hard links, rename() after an existence check.
 * - A body with a `file` (PutBody) on the same file system is hard-linked to the temp name
 *   instead of copied (a blob spool file: no second read, write or hash of its bytes); its size
 *   is checked, its SHA-256 is the caller's (see PutBody). Across file systems, or where links are
 *   not supported, it is copied and verified like any stream body.
 * - Temp files are named `.vaultik-tmp-*`; keys may not contain a segment with that prefix, and
 *   list() never returns one, so a leftover temp file from a crash is invisible (it is garbage,
 *   safe to delete once no backup writes it). listIncompleteUploads/abortIncompleteUpload expose
 *   them like S3's incomplete multipart uploads, so prune removes those older than its grace.
 * - list() walks the directory tree in exact S3 key order (UTF-8 byte order of whole keys), lazily:
 *   memory stays bounded by the largest directory, not by the number of keys.
 * - Empty directories are left in place after delete(): removing them would race with a
 *   concurrent put that just created the directory and is about to write its temp file.
 * - A key cannot be both an object and a "directory" of other keys ("a" and "a/b"): S3 allows
 *   that, a file system does not. vaultik's layout never does it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, lstat, mkdir, open, readdir, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { Readable, addAbortSignal } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { checkKey, compareKeys, normalizePrefix } from './keys.js';
import { BodyLengthError, emptyStream, guardDownload, lengthChecker, openBody, bodySize } from './streams.js';
import {
  StorageError,
  type ByteRange,
  type ObjectInfo,
  type PutBody,
  type PutOptions,
  type Storage,
  type StorageErrorKind,
  type LocalStorageSpec,
} from './types.js';

/** Prefix of in-flight temp files; never a valid key segment. */
export const TEMP_PREFIX = '.vaultik-tmp-';

/** link() errors of file systems (or mounts) without hard links. */
const NO_LINKS: ReadonlySet<string> = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'EMLINK', 'ENOSYS']);

/** How many files are stat'ed or unlinked at once. */
const FS_PARALLELISM = 32;

export class LocalStorage implements Storage {
  readonly description: string;
  /** Absolute directory that holds the keys (store path + prefix). */
  readonly root: string;
  /** The configured store directory; never created here (see checkStore). */
  private readonly storePath: string;
  private storeChecked = false;

  /**
   * @throws StorageError 'permanent' when the path is not absolute or the prefix is invalid.
   */
  constructor(spec: Pick<LocalStorageSpec, 'path' | 'prefix'>) {
    if (!isAbsolute(spec.path)) {
      throw new StorageError(`local store path '${spec.path}' must be absolute`, 'permanent');
    }
    const prefix = normalizePrefix(spec.prefix);
    this.storePath = spec.path;
    this.root = join(spec.path, ...prefix.split('/').filter((s) => s !== ''));
    this.description = pathToFileURL(this.root).href.replace(/\/?$/, '/');
  }

  /**
   * The store directory must exist: a missing one is usually an unmounted disk, and creating it
   * would fill the root file system (and reading it would report an empty store).
   * @throws StorageError 'permanent' (exit 6) when it is missing or not a directory.
   */
  private async checkStore(): Promise<void> {
    if (this.storeChecked) return;
    const st = await stat(this.storePath).catch((err: unknown) => {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
      throw fsError(err, 'reading', '', this.description);
    });
    if (!st?.isDirectory()) {
      throw new StorageError(
        `local store ${this.storePath} does not exist${st ? ' as a directory' : ''}; create it (mkdir) if this is the right path, or mount its disk`,
        'permanent',
      );
    }
    this.storeChecked = true;
  }

  /** A read's not-found: the store itself may be the thing missing (exit 6, not 5). */
  private async readError(err: unknown, key: string): Promise<Error> {
    const e = fsError(err, 'reading', key, this.description);
    if (e instanceof StorageError && e.kind === 'not-found') {
      this.storeChecked = false;
      await this.checkStore();
    }
    return e;
  }

  private pathOf(key: string): string {
    checkKey(key);
    const segments = key.split('/');
    if (segments.some((s) => s.startsWith(TEMP_PREFIX))) {
      throw new StorageError(`invalid object key '${key}': segments starting with '${TEMP_PREFIX}' are reserved`, 'permanent', key);
    }
    return join(this.root, ...segments);
  }

  /**
   * Writes the object atomically (temp file, fsync, link, fsync directory); an existing object is
   * left as it is. When `options.sha256` is given the bytes are verified against it before the
   * link (unless the body's `file` is linked, see the file comment).
   * @throws StorageError 'permanent' on a length or SHA-256 mismatch, a full disk, a read-only
   *   file system; 'permission' on EACCES/EPERM.
   */
  async put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    const finalPath = this.pathOf(key);
    const dir = dirname(finalPath);
    options?.signal?.throwIfAborted();
    let created: string | undefined;
    await this.checkStore();
    try {
      created = await mkdir(dir, { recursive: true });
    } catch (err) {
      throw fsError(err, 'writing', key, this.description);
    }
    const tempPath = join(dir, `${TEMP_PREFIX}${randomBytes(8).toString('hex')}`);
    let handle: FileHandle | undefined;
    try {
      const size = bodySize(body);
      handle = Buffer.isBuffer(body) || body.file === undefined ? undefined : await linkBody(body.file, tempPath, size, key, this.description);
      const linked = handle !== undefined;
      handle ??= await open(tempPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o644);
      const hash = options?.sha256 && !linked ? createHash('sha256') : undefined;
      if (linked) {
        // Nothing to write: the temp name is the caller's file.
      } else if (Buffer.isBuffer(body)) {
        hash?.update(body);
        await handle.writeFile(body, { signal: options?.signal });
      } else {
        const source = openBody(body);
        const checked = lengthChecker(size, (chunk) => hash?.update(chunk));
        source.on('error', (err) => checked.destroy(err));
        source.pipe(checked);
        if (options?.signal) addAbortSignal(options.signal, checked);
        try {
          for await (const chunk of checked) await handle.write(chunk as Buffer);
        } finally {
          source.destroy();
        }
      }
      if (hash && options?.sha256 && !hash.digest().equals(options.sha256)) {
        throw new StorageError(
          `refusing to store ${this.description}${key}: its bytes do not match the SHA-256 given by the caller`,
          'permanent',
          key,
        );
      }
      await handle.sync();
      await handle.close();
      handle = undefined;
      // link(), unlike rename(), never replaces: an existing object stays as it is.
      if (!(await linkNoReplace(tempPath, finalPath))) return;
      // The link is only durable once the directory entry is; new directories need their own
      // entries in their parents synced too.
      await syncDir(dir);
      if (created !== undefined) {
        for (let d = dir; d.length >= created.length; d = dirname(d)) {
          await syncDir(dirname(d));
        }
      }
    } catch (err) {
      if (err instanceof BodyLengthError) {
        throw new StorageError(`cannot store ${this.description}${key}: ${err.message}`, 'permanent', key, { cause: err });
      }
      throw fsError(err, 'writing', key, this.description);
    } finally {
      await handle?.close().catch(() => undefined);
      // After the link, the object has its own name; the temp name goes either way.
      await unlink(tempPath).catch(() => undefined);
    }
  }

  /** @throws StorageError 'not-found'; 'permanent' for a range past the end. */
  async get(key: string, range?: ByteRange, options?: { signal?: AbortSignal }): Promise<Readable> {
    const path = this.pathOf(key);
    checkRange(range);
    if (range?.length === 0) return emptyStream();
    options?.signal?.throwIfAborted();
    let handle: FileHandle | undefined;
    try {
      // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever (no
      // signal ends it); regular files ignore the flag.
      handle = await open(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
      const st = await handle.stat();
      if (!st.isFile()) {
        // Something else where an object should be: a damaged store, seen as a missing object.
        throw new StorageError(`object ${this.description}${key} is not a regular file (the store is damaged)`, 'not-found', key);
      }
      if (range && range.offset + range.length > st.size) {
        throw new StorageError(
          `range ${range.offset}+${range.length} reaches past the end of ${this.description}${key} (${st.size} bytes)`,
          'permanent',
          key,
        );
      }
      const length = range ? range.length : st.size;
      if (length === 0) {
        await handle.close();
        return emptyStream();
      }
      const start = range?.offset ?? 0;
      const raw = handle.createReadStream({ start, end: start + length - 1, highWaterMark: 1 << 20, autoClose: true });
      handle = undefined;
      const out = guardDownload(raw, length, (err) => fsError(err, 'reading', key, this.description));
      return options?.signal ? addAbortSignal(options.signal, out) : out;
    } catch (err) {
      await handle?.close().catch(() => undefined);
      throw await this.readError(err, key);
    }
  }

  /** @throws StorageError 'not-found' */
  async stat(key: string): Promise<ObjectInfo> {
    const path = this.pathOf(key);
    try {
      const st = await stat(path);
      if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOENT' });
      return { key, size: st.size, lastModified: st.mtime };
    } catch (err) {
      throw await this.readError(err, key);
    }
  }

  /** Walks the tree lazily in key order; a missing prefix directory lists nothing, a missing store is an error. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.storeChecked = false;
    await this.checkStore();
    yield* this.walk(this.root, '', prefix);
  }

  private async *walk(dirPath: string, dirKey: string, prefix: string): AsyncGenerator<ObjectInfo> {
    let entries;
    try {
      entries = await readdir(dirPath, { withFileTypes: true });
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw fsError(err, 'listing', dirKey, this.description);
    }
    // Sorting directories as "name/" puts "a/…" after "a-c" and before "a0", exactly where S3
    // would list those keys.
    const sorted = entries
      .filter((e) => !e.name.startsWith(TEMP_PREFIX) && (e.isFile() || e.isDirectory()))
      .map((e) => ({ name: e.name, dir: e.isDirectory(), sortKey: e.isDirectory() ? e.name + '/' : e.name }))
      .sort((a, b) => compareKeys(a.sortKey, b.sortKey));
    for (let i = 0; i < sorted.length; i += FS_PARALLELISM) {
      const window = sorted.slice(i, i + FS_PARALLELISM);
      const stats = window.map((e) => {
        const key = dirKey + e.name;
        if (e.dir || !key.startsWith(prefix)) return undefined;
        return stat(join(dirPath, e.name)).then(
          (st) => st,
          (err: unknown) => {
            if (errnoCode(err) === 'ENOENT') return undefined; // deleted while we listed
            throw fsError(err, 'listing', key, this.description);
          },
        );
      });
      // Attach handlers now so a rejection while we descend into a directory is not "unhandled".
      for (const p of stats) p?.catch(() => undefined);
      for (const [j, e] of window.entries()) {
        const key = dirKey + e.name;
        if (e.dir) {
          const childKey = key + '/';
          if (childKey.startsWith(prefix) || prefix.startsWith(childKey)) {
            yield* this.walk(join(dirPath, e.name), childKey, prefix);
          }
          continue;
        }
        const st = await stats[j];
        if (st) yield { key, size: st.size, lastModified: st.mtime };
      }
    }
  }

  /**
   * Temp files left by puts that never finished (a killed process), as "incomplete uploads":
   * `key` is the directory key they were written in, `uploadId` the temp file's path relative
   * to the root, `initiated` its mtime (a put in progress keeps it fresh). Prune aborts those
   * older than its grace. Not part of the Storage contract (see src/prune/janitor.ts).
   */
  async *listIncompleteUploads(): AsyncIterable<{ key: string; uploadId: string; initiated: Date }> {
    const visit = async function* (dir: string, rel: string): AsyncGenerator<{ key: string; uploadId: string; initiated: Date }> {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return;
        throw err;
      }
      for (const e of entries) {
        const r = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory() && !e.name.startsWith(TEMP_PREFIX)) yield* visit(join(dir, e.name), r);
        else if (e.isFile() && e.name.startsWith(TEMP_PREFIX)) {
          const st = await stat(join(dir, e.name)).catch(() => undefined);
          if (st) yield { key: rel, uploadId: r, initiated: st.mtime };
        }
      }
    };
    try {
      yield* visit(this.root, '');
    } catch (err) {
      throw fsError(err, 'listing', '', this.description);
    }
  }

  /** Deletes a leftover temp file found by listIncompleteUploads; one already gone is fine. */
  async abortIncompleteUpload(upload: { uploadId: string }): Promise<void> {
    const segments = upload.uploadId.split('/');
    if (!segments.at(-1)!.startsWith(TEMP_PREFIX) || segments.some((s) => s === '..' || s === '' || s === '.')) {
      throw new StorageError(`not a temp file of this store: '${upload.uploadId}'`, 'permanent');
    }
    try {
      await unlink(join(this.root, ...segments));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw fsError(err, 'deleting', upload.uploadId, this.description);
    }
  }

  /** Unlinks the keys; missing ones are fine. */
  async delete(keys: string[]): Promise<void> {
    const paths = keys.map((k) => [k, this.pathOf(k)] as const);
    for (let i = 0; i < paths.length; i += FS_PARALLELISM) {
      await Promise.all(
        paths.slice(i, i + FS_PARALLELISM).map(async ([key, path]) => {
          try {
            await unlink(path);
          } catch (err) {
            if (errnoCode(err) !== 'ENOENT') throw fsError(err, 'deleting', key, this.description);
          }
        }),
      );
    }
  }

  async close(): Promise<void> {
    // Nothing is held between calls.
  }
}

/** @throws StorageError 'permanent' for a negative or non-integer range. */
export function checkRange(range: ByteRange | undefined): void {
  if (range === undefined) return;
  if (!Number.isSafeInteger(range.offset) || !Number.isSafeInteger(range.length) || range.offset < 0 || range.length < 0) {
    throw new StorageError(`invalid byte range ${range.offset}+${range.length}`, 'permanent');
  }
}

/**
 * Hard-links `file` to `tempPath` and opens it for the fsync, or returns undefined when the file
 * system cannot link it there (another device, no hard links): the caller then copies.
 * @throws StorageError 'permanent' when the file is not `size` bytes; the link's other errors.
 */
async function linkBody(file: string, tempPath: string, size: number, key: string, where: string): Promise<FileHandle | undefined> {
  try {
    await link(file, tempPath);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'EXDEV' || NO_LINKS.has(code ?? '')) return undefined;
    throw err;
  }
  const handle = await open(tempPath, 'r');
  try {
    const st = await handle.stat();
    if (st.size !== size) {
      throw new StorageError(`cannot store ${where}${key}: the body's file holds ${st.size} bytes, not ${size}`, 'permanent', key);
    }
    // The same mode as a copied object (the spool file was private to its writer).
    await handle.chmod(0o644 & ~process.umask());
    return handle;
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err;
  }
}

/**
 * Gives the temp file `temp` the name `final` unless that name exists; false when it does (the
 * object is there already: keys are content hashes). On a file system without hard links it
 * falls back to rename() after checking that `final` is absent (a race between two writers
 * could then replace an object, with the same bytes).
 */
async function linkNoReplace(temp: string, final: string): Promise<boolean> {
  let linkError: unknown;
  try {
    await link(temp, final);
    return true;
  } catch (err) {
    const code = errnoCode(err);
    if (code !== 'EEXIST' && !NO_LINKS.has(code ?? '')) throw err;
    linkError = err;
  }
  const existing = await lstat(final).catch((err: unknown) => {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  });
  if (existing?.isFile()) return false;
  // A directory of that name is no object: the key is used as a directory too.
  if (existing) throw Object.assign(new Error(`${final} is not a file`), { code: 'EISDIR' });
  // EEXIST, yet gone since (deleted meanwhile): let the caller's retry or error handling see it.
  if (errnoCode(linkError) === 'EEXIST') throw linkError;
  await rename(temp, final);
  return true;
}

async function syncDir(path: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, 'r');
    await handle.sync();
  } catch (err) {
    // Some file systems (certain network mounts) refuse fsync on a directory; the rename itself
    // has happened, so this only weakens durability on those, never atomicity.
    const code = errnoCode(err);
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EISDIR' && code !== 'EBADF') throw err;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

/** Classifies a file-system error for `verb`ing `key` into a StorageError users can act on. */
export function fsError(err: unknown, verb: 'reading' | 'writing' | 'listing' | 'deleting', key: string, where: string): Error {
  if (err instanceof StorageError) return err;
  if (err instanceof Error && err.name === 'AbortError') return err;
  const code = errnoCode(err);
  const location = `${where}${key}`;
  const detail = err instanceof Error ? err.message : String(err);
  let kind: StorageErrorKind = 'permanent';
  let message = `error ${verb} ${location}: ${detail}`;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'EISDIR':
      if (verb === 'reading') {
        kind = 'not-found';
        message = `object ${location} does not exist`;
      } else {
        message = `error ${verb} ${location}: ${detail} (is the store directory mounted? is a key also used as a directory?)`;
      }
      break;
    case 'EACCES':
    case 'EPERM':
      kind = 'permission';
      message = `permission denied ${verb} ${location}: check the owner and mode of ${where}`;
      break;
    case 'ENOSPC':
    case 'EDQUOT':
      message = `no space left ${verb} ${location}: free space on the store's disk`;
      break;
    case 'EROFS':
      message = `cannot write ${location}: the store's file system is mounted read-only`;
      break;
    case 'EAGAIN':
    case 'EBUSY':
    case 'EINTR':
    case 'ETIMEDOUT':
    case 'ESTALE':
    case 'EIO':
      // Network mounts report these while the server is briefly unreachable.
      kind = 'transient';
      break;
  }
  return new StorageError(message, kind, key, { cause: err });
}
