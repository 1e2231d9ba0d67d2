/**
 * Dirty marks: which snapshot paths the next daemon run must look at again instead of carrying
 * them over from the previous scan (see scan.ts for what each flag makes the scan do).
 *
 * Paths are snapshot entry paths (src/snapshot/types.ts: the absolute path without its leading
 * '/', raw name bytes), kept as latin1 strings so any byte sequence is a distinct Map key.
 *
 * Memory is bounded: past `limit` marked paths the set gives up on detail and only remembers
 * that it overflowed; the daemon then does a full stat scan instead (like an inotify queue
 * overflow, and for the same reason: a burst such as a `git checkout` of the whole tree).
 */

/** Re-stat the path itself. */
export const SELF = 1;
/** A directory whose list of names may have changed: read it again. */
export const LIST = 2;
/** A directory whose whole subtree must be walked again (it appeared before it was watched). */
export const TREE = 4;

/** Default number of marked paths kept before the set overflows. */
export const DEFAULT_DIRTY_LIMIT = 100_000;

const SLASH = 0x2f;

/** `path`'s parent directory as a snapshot path ('' for a top-level name). */
export function parentPath(path: Buffer): Buffer {
  const slash = path.lastIndexOf(SLASH);
  return slash < 0 ? Buffer.alloc(0) : path.subarray(0, slash);
}

export class DirtySet {
  private marks = new Map<string, number>();
  private overflow = false;

  constructor(private readonly limit = DEFAULT_DIRTY_LIMIT) {}

  /** Adds `flags` to the marks of `path` (a snapshot path). */
  mark(path: Buffer, flags: number): void {
    this.markKey(path.toString('latin1'), flags);
  }

  /** Marks an absolute path on this machine (the snapshot path is it without its leading '/'). */
  markAbs(abs: Buffer, flags: number): void {
    this.mark(abs.subarray(1), flags);
  }

  private markKey(key: string, flags: number): void {
    if (this.overflow) return;
    const old = this.marks.get(key);
    if (old === undefined && this.marks.size >= this.limit) {
      this.overflow = true;
      this.marks.clear();
      return;
    }
    this.marks.set(key, (old ?? 0) | flags);
  }

  /** The flags of `path` (0 when it is not marked). */
  flags(path: Buffer): number {
    return this.marks.get(path.toString('latin1')) ?? 0;
  }

  /** Flags by latin1 key. */
  flagsOf(key: string): number {
    return this.marks.get(key) ?? 0;
  }

  /** Marked paths (0 after an overflow). */
  get size(): number {
    return this.marks.size;
  }

  /** True when too many paths were marked to keep them: only a full scan finds them all. */
  get overflowed(): boolean {
    return this.overflow;
  }

  /** Nothing to look at again. */
  get empty(): boolean {
    return !this.overflow && this.marks.size === 0;
  }

  /** Latin1 keys and flags of every mark. */
  entries(): IterableIterator<[string, number]> {
    return this.marks.entries();
  }

  /** Moves every mark (and the overflow state) into a new set and leaves this one empty. */
  take(): DirtySet {
    const taken = new DirtySet(this.limit);
    taken.marks = this.marks;
    taken.overflow = this.overflow;
    this.marks = new Map();
    this.overflow = false;
    return taken;
  }

  /** Adds every mark of `other` (a run that failed gives its marks back). */
  merge(other: DirtySet): void {
    if (other.overflow) {
      this.overflow = true;
      this.marks.clear();
      return;
    }
    for (const [key, flags] of other.marks) this.markKey(key, flags);
  }

  /** Forgets everything (the scan it was relative to is gone). */
  clear(): void {
    this.marks.clear();
    this.overflow = false;
  }
}
