/**
 * Which snapshot entries a restore writes, and where they land under the target.
 *
 * Selection (all optional; an entry must pass every given test):
 * - `paths`: snapshot paths whose subtrees are restored (the path itself and everything below).
 * - `include`: patterns; an entry is selected when it or one of its ancestor directories matches
 *   one (so including a directory includes its contents).
 * - `exclude`: patterns; an entry is dropped when it or one of its ancestor directories matches.
 * Patterns follow the config's exclude rules (src/config/exclude.ts, docs/CONFIG.md) applied to
 * snapshot paths, whose root is '/': `*.log` matches a name at any depth, `/home/u/data/*.txt`
 * (or `home/u/data/*.txt`) is anchored at the snapshot root, which is the source machine's '/'.
 *
 * Relocation (fetch): entries under `from` land under `to` instead (`from` itself becomes `to`).
 */
import { compileExcludes, ExcludePatternError, type ExcludeMatcher } from '../config/exclude.js';
import { UsageError } from '../errors.js';
import { entryPathProblem } from '../snapshot/paths.js';

export interface RestoreSelection {
  /** Snapshot paths (relative, as stored) whose subtrees are restored. Default: everything. */
  paths?: Buffer[];
  include?: string[];
  exclude?: string[];
}

export interface Relocation {
  /** A snapshot path. */
  from: Buffer;
  /** Its path under the target (relative, non-empty). */
  to: Buffer;
}

const SLASH = 0x2f;

/** True when `path` is `dir` or lies below it (at a '/' boundary). */
export function isAtOrUnder(path: Buffer, dir: Buffer): boolean {
  if (path.length < dir.length || path.compare(dir, 0, dir.length, 0, dir.length) !== 0) return false;
  return path.length === dir.length || path[dir.length] === SLASH;
}

function compile(patterns: readonly string[], what: string): ExcludeMatcher {
  try {
    return compileExcludes(patterns);
  } catch (err) {
    if (err instanceof ExcludePatternError) throw new UsageError(`--${what}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** The compiled selection. */
export class Selector {
  private readonly include: ExcludeMatcher | undefined;
  private readonly exclude: ExcludeMatcher | undefined;
  readonly paths: readonly Buffer[] | undefined;

  /** @throws UsageError for a bad pattern or path. */
  constructor(selection: RestoreSelection = {}) {
    this.include = selection.include && selection.include.length > 0 ? compile(selection.include, 'include') : undefined;
    this.exclude = selection.exclude && selection.exclude.length > 0 ? compile(selection.exclude, 'exclude') : undefined;
    if (selection.paths && selection.paths.length > 0) {
      for (const p of selection.paths) {
        const problem = entryPathProblem(p);
        if (problem) throw new UsageError(`invalid snapshot path '${p.toString('utf8')}': ${problem}`);
      }
      this.paths = selection.paths;
    }
  }

  /** Whether patterns filter entries (beyond the subtree paths). */
  get hasPatterns(): boolean {
    return this.include !== undefined || this.exclude !== undefined;
  }

  /** Whether include patterns are given: then ancestors of selected entries may be unselected. */
  get hasIncludes(): boolean {
    return this.include !== undefined;
  }

  /** Whether the entry at snapshot path `path` is restored. */
  selects(path: Buffer, isDir: boolean): boolean {
    if (this.paths && !this.paths.some((p) => isAtOrUnder(path, p))) return false;
    if (this.include && !this.include.excludesPath(path, isDir)) return false;
    if (this.exclude?.excludesPath(path, isDir)) return false;
    return true;
  }
}

/**
 * A snapshot path from the command line: an absolute source path (`/home/u/data/a.txt`) or the
 * snapshot-relative form (`home/u/data/a.txt`); trailing and repeated slashes are ignored.
 * @throws UsageError for '/', '.', '..' components or NUL.
 */
export function snapshotPathArg(arg: string): Buffer {
  const parts = arg.split('/').filter((s) => s !== '');
  if (parts.length === 0) throw new UsageError(`'${arg}' names the snapshot root; give a path inside the snapshot (or use restore)`);
  const path = Buffer.from(parts.join('/'), 'utf8');
  const problem = entryPathProblem(path);
  if (problem) throw new UsageError(`invalid snapshot path '${arg}': ${problem}`);
  return path;
}

/** Maps snapshot paths to target paths; identity without a relocation. */
export function relocator(relocation: Relocation | undefined): (path: Buffer) => Buffer {
  if (!relocation) return (p) => p;
  const { from, to } = relocation;
  return (p) => {
    if (!isAtOrUnder(p, from)) throw new RangeError('path outside the relocated subtree');
    return p.length === from.length ? to : Buffer.concat([to, p.subarray(from.length)]);
  };
}
