/**
 * `fetch`: one path of a snapshot (a file, or a directory's subtree) to a chosen place, with cp's
 * rule for where: when the target is an existing directory (or ends in '/'), the entry goes into
 * it under its own name; otherwise the target path names the entry itself (its parent directory
 * is created if missing). An existing destination is replaced only with `overwrite`.
 */
import { lstat, stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { UsageError } from '../errors.js';
import { displayPath } from '../fs/paths.js';
import { runRestore, type RestoreOptions } from './engine.js';
import type { RestoreSummary } from './events.js';

export interface FetchOptions extends Omit<RestoreOptions, 'target' | 'select' | 'relocate' | 'allowNonEmptyTarget'> {
  /** The snapshot path to fetch (see snapshotPathArg). */
  path: Buffer;
  /** A file or directory path (see the top of this file). */
  target: string;
  include?: string[];
  exclude?: string[];
}

/** Where a fetch writes: the directory the restore engine opens, and the name inside it. */
export async function fetchDestination(path: Buffer, target: string): Promise<{ root: string; name: Buffer }> {
  const abs = resolve(target);
  const st = await stat(abs).catch(() => undefined);
  if (st?.isDirectory() || (target.endsWith('/') && !st)) return { root: abs, name: Buffer.from(basename(path.toString('latin1')), 'latin1') };
  if (abs === '/') throw new UsageError(`invalid fetch target '${target}'`);
  return { root: dirname(abs), name: Buffer.from(basename(abs)) };
}

/**
 * Fetches `options.path` of a snapshot to `options.target` (see the top of this file).
 * @throws UsageError when the destination exists and `overwrite` is not set, or the path is
 *   not in the snapshot; as runRestore otherwise.
 */
export async function runFetch(options: FetchOptions): Promise<RestoreSummary> {
  const { root, name } = await fetchDestination(options.path, options.target);
  const dest = Buffer.concat([Buffer.from(root === '/' ? '' : root), Buffer.from('/'), name]);
  if (!options.overwrite && (await lstat(dest).catch(() => undefined))) {
    throw new UsageError(`${displayPath(dest)} already exists; use --overwrite to replace it (only what differs is rewritten)`);
  }
  return runRestore({
    ...options,
    target: root,
    select: { paths: [options.path], include: options.include, exclude: options.exclude },
    relocate: { from: options.path, to: name },
    allowNonEmptyTarget: true,
  });
}
