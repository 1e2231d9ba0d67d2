/**
 * `fetch`: one path of a snapshot (a file, or a directory's subtree) to a chosen place, with cp's
 * rule for where: when the target is an existing directory (or ends in '/'), the entry goes into
 * it under its own name; otherwise the target path names the entry itself (its parent directory
 * is created if missing). An existing destination is replaced only with `overwrite`.
 */
import { createReadStream } from 'node:fs';
import { lstat, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
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
  const summary = await runRestore({
    ...options,
    target: root,
    select: { paths: [options.path], include: options.include, exclude: options.exclude },
    relocate: { from: options.path, to: name },
    allowNonEmptyTarget: true,
  });
  // What was written, not the directory it was written into.
  return { ...summary, target: dest.toString() };
}

/**
 * `fetch … -`: fetches `options.path`, which must be a regular file, into a private temp
 * directory and copies its bytes to `out` (left open). Nothing is copied when it failed.
 * @throws UsageError when the path is a directory or other non-file; as runFetch otherwise.
 */
export async function fetchToStream(options: Omit<FetchOptions, 'target' | 'overwrite'>, out: NodeJS.WritableStream): Promise<RestoreSummary> {
  // mkdtemp makes the directory 0700: the decrypted bytes are private to this user meanwhile.
  const dir = await mkdtemp(join(tmpdir(), 'vaultik-fetch-'));
  try {
    const summary = await runFetch({ ...options, target: dir + '/', overwrite: false });
    const { root, name } = await fetchDestination(options.path, dir + '/');
    const dest = Buffer.concat([Buffer.from(root), Buffer.from('/'), name]);
    const st = await lstat(dest).catch(() => undefined);
    if (st && !st.isFile()) {
      throw new UsageError(`${displayPath(options.path)} is ${st.isDirectory() ? 'a directory' : 'not a regular file'}; only a regular file can be fetched to stdout ('-')`);
    }
    if (st && summary.failed === 0) await pipeline(createReadStream(dest), out, { end: false, signal: options.signal });
    return { ...summary, target: '-' };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
