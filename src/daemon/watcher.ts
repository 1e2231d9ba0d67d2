/**
 * Watches the source dirs with inotify and reports the paths that may have changed, as dirty
 * marks (dirty.ts) for the next run.
 *
 * Why not `fs.watch(dir, { recursive: true })`: on Linux, Node 20 emulates it in JavaScript with
 * one inotify watch and one synchronous stat() per *file* (measured: +76 MB RSS for 20,000 files),
 * and it swallows errors while it sets up, ENOSPC included: past the kernel's watch limit it
 * watches nothing and says nothing. A change to a directory's entries (create, delete, rename,
 * write, chmod of a file in it) is reported to the directory's own watch, so this watcher keeps
 * one non-recursive `fs.watch` per *directory*, as inotifywait -r and chokidar do, and reports a
 * failure to set up any of them.
 *
 * Contracts:
 * - Every directory present when `ready` resolves is watched (unless it is excluded), and so is
 *   every directory created later: a new directory is reported with the TREE flag, because files
 *   may have been put in it before its watch existed.
 * - A watch is set before its directory is listed, so nothing created meanwhile is missed.
 * - Excluded paths are not watched (an excluded directory costs nothing) and changes to them are
 *   not reported. Nor is what lies below a mount point the backup does not descend into (a
 *   pseudo file system; with `oneFileSystem`, any other device than its root's: the same rule
 *   as the walker's, src/fs/mounts.ts). Names are raw bytes (`encoding: 'buffer'`): any file name works.
 * - Failure (the watch limit, a source dir removed or replaced, an error from a watch) closes
 *   the watcher and calls `onError` once: from then on its marks are incomplete, and the daemon
 *   falls back to full scans. It never throws out of an event.
 * - What inotify cannot see is not reported: changes on network filesystems made by other
 *   machines, a filesystem mounted over a watched directory, events dropped when the kernel's
 *   queue overflows, and a new hard link to a file elsewhere (the other names' link count
 *   changes silently). The daemon's periodic full scan catches those.
 */
import { watch, type FSWatcher } from 'node:fs';
import { lstat, readFile, readdir, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { errorMessage } from '../errors.js';
import { MountFilter, displayPath, joinAbsPath } from '../fs/index.js';
import { LIST, SELF, TREE } from './dirty.js';

/** A source dir to watch and its exclude predicate (backup/sources.ts excludeFor). */
export interface WatchRoot {
  dir: string;
  exclude: (rel: string, isDir: boolean) => boolean;
}

export interface WatcherOptions {
  roots: readonly WatchRoot[];
  /**
   * Watch no directory on another device than its root (config `one_file_system`). Directories
   * where a pseudo file system is mounted are never watched below a root (src/fs/mounts.ts).
   */
  oneFileSystem?: boolean;
  /**
   * An absolute path that may have changed and the dirty flags to set on it. Called from file
   * system events, synchronously; must not throw.
   */
  onChange: (abs: Buffer, flags: number) => void;
  /** The watcher failed and closed itself; called at most once, never after close(). */
  onError: (err: Error) => void;
}

export interface Watcher {
  /** Resolves once every directory present at start is watched, or the watcher failed. Never rejects. */
  readonly ready: Promise<void>;
  /** Directories watched now. */
  readonly watchedDirs: number;
  /** Stops watching. Idempotent. */
  close(): void;
}

/** Makes a watcher; the daemon takes one so tests can inject failures. */
export type WatcherFactory = (options: WatcherOptions) => Watcher;

/** The default: inotify through one fs.watch per directory. */
export const inotifyWatcher: WatcherFactory = (options) => new DirectoryWatcher(options);

/** The watcher cannot do its job (see `reason` for what the user can do about it). */
export class WatchError extends Error {
  constructor(
    message: string,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'WatchError';
  }
}

async function readLimit(): Promise<string> {
  try {
    return (await readFile('/proc/sys/fs/inotify/max_user_watches', 'utf8')).trim();
  } catch {
    return 'unknown';
  }
}

interface WatchedDir {
  fsw: FSWatcher;
  abs: Buffer;
  root: WatchRoot;
  /** Path relative to the root ('' for the root), as the exclude predicate expects it. */
  rel: string;
  ino: bigint;
  parent: string | undefined;
  children: Set<string>;
}

class DirectoryWatcher implements Watcher {
  private readonly dirs = new Map<string, WatchedDir>();
  private closed = false;
  private failed = false;
  private readonly rootInodes = new Map<WatchRoot, bigint>();
  private readonly rootDevs = new Map<WatchRoot, bigint>();
  readonly ready: Promise<void>;

  constructor(private readonly options: WatcherOptions) {
    this.ready = this.start().catch((err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err))));
  }

  get watchedDirs(): number {
    return this.dirs.size;
  }

  private async start(): Promise<void> {
    for (const root of this.options.roots) {
      if (this.closed || this.failed) return;
      const abs = Buffer.from(root.dir);
      let st;
      try {
        st = await stat(abs, { bigint: true });
      } catch (err) {
        throw new WatchError(`cannot watch source dir ${displayPath(root.dir)}: ${errorMessage(err)}`, (err as NodeJS.ErrnoException).code, { cause: err });
      }
      if (!st.isDirectory()) throw new WatchError(`cannot watch source dir ${displayPath(root.dir)}: not a directory`, 'ENOTDIR');
      this.rootInodes.set(root, st.ino);
      this.rootDevs.set(root, st.dev);
      await this.addTree(abs, root, '', undefined);
    }
  }

  /** Watches `abs` and every directory under it (depth first, an explicit stack: no recursion limit). */
  private async addTree(abs: Buffer, root: WatchRoot, rel: string, parent: string | undefined): Promise<void> {
    const stack = [{ abs, rel, parent }];
    // Classifies devices afresh for each tree: a long-lived cache could outlive a mount whose
    // device number is then reused by another.
    const mounts = new MountFilter({ oneFileSystem: this.options.oneFileSystem === true });
    while (stack.length > 0) {
      if (this.closed || this.failed) return;
      const dir = stack.pop()!;
      const key = await this.watchDir(dir.abs, root, dir.rel, dir.parent, mounts);
      if (key === undefined) continue;
      let entries;
      try {
        entries = await readdir(dir.abs, { withFileTypes: true, encoding: 'buffer' });
      } catch {
        continue; // gone already (its parent's event says so) or unreadable (the backup warns)
      }
      for (const d of entries) {
        if (!d.isDirectory()) continue;
        const name = d.name.toString('utf8');
        const childRel = dir.rel === '' ? name : `${dir.rel}/${name}`;
        if (root.exclude(childRel, true)) continue;
        stack.push({ abs: joinAbsPath(dir.abs, d.name), rel: childRel, parent: key });
      }
    }
  }

  /** Sets one directory's watch; its key, or undefined when it vanished or is watched already. */
  private async watchDir(abs: Buffer, root: WatchRoot, rel: string, parent: string | undefined, mounts: MountFilter): Promise<string | undefined> {
    const key = abs.toString('latin1');
    if (this.dirs.has(key)) return undefined;
    let st;
    try {
      st = rel === '' ? await stat(abs, { bigint: true }) : await lstat(abs, { bigint: true });
    } catch {
      return undefined;
    }
    if (!st.isDirectory() || this.closed || this.failed || this.dirs.has(key)) return undefined;
    const rootDev = this.rootDevs.get(root);
    if (rel !== '' && rootDev !== undefined && mounts.decide(abs, st.dev, rootDev) !== 'descend') return undefined;
    let fsw: FSWatcher;
    try {
      fsw = watch(abs, { persistent: true, encoding: 'buffer' }, (type, name) => this.onEvent(key, type, name));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      if (code === 'ENOSPC') {
        throw new WatchError(
          `inotify watch limit reached after ${this.dirs.size} directories (fs.inotify.max_user_watches = ${await readLimit()}); ` +
            'raise it (sysctl fs.inotify.max_user_watches=…) or exclude directories',
          code,
          { cause: err },
        );
      }
      throw new WatchError(`cannot watch ${displayPath(abs)}: ${errorMessage(err)}`, code, { cause: err });
    }
    fsw.on('error', (err: Error) => this.onWatchError(key, err));
    this.dirs.set(key, { fsw, abs, root, rel, ino: st.ino, parent, children: new Set() });
    if (parent !== undefined) this.dirs.get(parent)?.children.add(key);
    return key;
  }

  private onEvent(key: string, type: string, name: Buffer | string | null): void {
    const dir = this.dirs.get(key);
    if (dir === undefined || this.closed || this.failed) return;
    try {
      if (name === null) {
        this.options.onChange(dir.abs, SELF | LIST);
        return;
      }
      const nameBuf = typeof name === 'string' ? Buffer.from(name) : name;
      if (dir.rel === '' && nameBuf.equals(Buffer.from(basename(dir.root.dir)))) void this.checkRoot(dir.root);
      const abs = joinAbsPath(dir.abs, nameBuf);
      const decoded = nameBuf.toString('utf8');
      const rel = dir.rel === '' ? decoded : `${dir.rel}/${decoded}`;
      if (dir.root.exclude(rel, false) && dir.root.exclude(rel, true)) return;
      this.options.onChange(abs, SELF);
      // 'change' is a write or an attribute change of the entry: its directory's names stay.
      if (type === 'change') return;
      this.options.onChange(dir.abs, SELF | LIST);
      void this.checkEntry(abs, dir, rel);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** After a create, delete or rename: watch a new directory, forget a vanished one. */
  private async checkEntry(abs: Buffer, parent: WatchedDir, rel: string): Promise<void> {
    try {
      const key = abs.toString('latin1');
      let st;
      try {
        st = await lstat(abs, { bigint: true });
      } catch {
        st = undefined;
      }
      if (this.closed || this.failed) return;
      const known = this.dirs.get(key);
      if (st?.isDirectory() && known?.ino === st.ino) return;
      if (known !== undefined) this.unwatchTree(key);
      if (!st?.isDirectory() || parent.root.exclude(rel, true)) return;
      if (!this.dirs.has(parent.abs.toString('latin1'))) return; // its parent went away meanwhile
      this.options.onChange(abs, SELF | TREE);
      await this.addTree(abs, parent.root, rel, parent.abs.toString('latin1'));
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** A source dir that is removed or replaced cannot be watched any more (its parent is not). */
  private async checkRoot(root: WatchRoot): Promise<void> {
    let ino: bigint | undefined;
    try {
      ino = (await stat(root.dir, { bigint: true })).ino;
    } catch {
      ino = undefined;
    }
    if (ino !== this.rootInodes.get(root)) {
      this.fail(new WatchError(`source dir ${displayPath(root.dir)} was ${ino === undefined ? 'removed' : 'replaced'}; it is no longer watched`));
    }
  }

  private onWatchError(key: string, err: Error): void {
    const dir = this.dirs.get(key);
    if (dir === undefined) return;
    // A watch on a directory that is gone may report an error: that is a removal, not a failure.
    lstat(dir.abs, { bigint: true }).then(
      (st) => {
        if (st.ino !== dir.ino) this.unwatchTree(key);
        else this.fail(new WatchError(`watching ${displayPath(dir.abs)} failed: ${err.message}`, (err as NodeJS.ErrnoException).code, { cause: err }));
      },
      () => this.unwatchTree(key),
    );
  }

  private unwatchTree(key: string): void {
    const dir = this.dirs.get(key);
    if (dir === undefined) return;
    for (const child of [...dir.children]) this.unwatchTree(child);
    dir.fsw.close();
    this.dirs.delete(key);
    if (dir.parent !== undefined) this.dirs.get(dir.parent)?.children.delete(key);
  }

  private closeAll(): void {
    for (const dir of this.dirs.values()) dir.fsw.close();
    this.dirs.clear();
  }

  private fail(err: Error): void {
    if (this.failed || this.closed) return;
    this.failed = true;
    this.closeAll();
    this.options.onError(err);
  }

  close(): void {
    this.closed = true;
    this.closeAll();
  }
}
