/**
 * The daemon's record of the last scan (`<index_path>.daemon-tree`): every entry the scan of the
 * last successful run yielded, in snapshot path order, with its stat. A run that re-stats only
 * dirty paths takes everything else from here, without touching the disk for it.
 *
 * Contracts:
 * - The record is written while a run scans (to `<file>.tmp`) and renamed into place only after
 *   that run wrote its snapshot; a failed or interrupted run leaves the previous record, and the
 *   dirty marks it was given are handed back, so together they still cover every change.
 * - It is bound to what decides which entries exist (source dirs, excludes, one_file_system, the
 *   backup's own paths: `treeFingerprint`). Another fingerprint, a missing or truncated file: the record is
 *   unusable and the daemon backs up with a full walk, which writes a new one.
 * - It is only an optimisation: deleting it costs one full walk. It holds file names and stat
 *   data, like the state cache next to it (whose name prefix keeps it out of every backup), and is
 *   created mode 0600.
 * - Memory: written and read as a stream, one entry at a time.
 *
 * Format: JSON lines. A header `{"vaultikDaemonTree":1,"fingerprint":…}`, one line per entry
 * (paths and symlink targets base64, 64-bit numbers as decimal strings), a trailer `{"end":n}`.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Config } from '../config/index.js';
import type { SelfPaths, SourceEntry } from '../backup/index.js';
import type { FileStat } from '../fs/index.js';
import type { Entry, EntryType } from '../snapshot/types.js';

const FORMAT_VERSION = 1;
const WRITE_BUFFER = 256 * 1024;
const READ_SIZE = 256 * 1024;

/** One entry of the record: what a walk yielded for it. Its absolute path is '/' + entry.path. */
export interface TreeRecord {
  entry: Entry;
  stat: FileStat;
}

/** The record file of the state cache at `indexPath` (its name prefix keeps it out of backups). */
export function treePathFor(indexPath: string): string {
  return `${indexPath}.daemon-tree`;
}

/** What the set of scanned entries depends on: a record made under another fingerprint is stale. */
export function treeFingerprint(config: Pick<Config, 'sourceDirs' | 'exclude' | 'oneFileSystem'>, self: SelfPaths): string {
  const oneFileSystem = config.oneFileSystem === true;
  return createHash('sha256')
    .update(JSON.stringify({ v: FORMAT_VERSION, sourceDirs: config.sourceDirs, exclude: config.exclude, oneFileSystem, self }))
    .digest('hex');
}

/** The record is missing, stale, truncated or malformed. */
export class TreeRecordError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TreeRecordError';
  }
}

type Line = {
  p: string;
  t: EntryType;
  m: number;
  u: number;
  g: number;
  mt: string;
  s: number;
  tg?: string;
  rd?: number;
  /** size, mtime, ctime, ino, dev, st_mode, nlink */
  st: [number, string, string, string, string, number, number];
};

function encode(e: SourceEntry): string {
  const { entry, stat } = e;
  const line: Line = {
    p: entry.path.toString('base64'),
    t: entry.type,
    m: entry.mode,
    u: entry.uid,
    g: entry.gid,
    mt: entry.mtimeNs.toString(),
    s: entry.size,
    st: [stat.size, stat.mtimeNs.toString(), stat.ctimeNs.toString(), stat.ino.toString(), stat.dev.toString(), stat.mode, stat.nlink],
  };
  if (entry.target !== undefined) line.tg = entry.target.toString('base64');
  if (entry.rdev !== undefined) line.rd = entry.rdev;
  return JSON.stringify(line);
}

function decode(text: string): TreeRecord {
  const l = JSON.parse(text) as Line;
  const entry: Entry = { path: Buffer.from(l.p, 'base64'), type: l.t, mode: l.m, uid: l.u, gid: l.g, mtimeNs: BigInt(l.mt), size: l.s };
  if (l.tg !== undefined) entry.target = Buffer.from(l.tg, 'base64');
  if (l.rd !== undefined) entry.rdev = l.rd;
  const [size, mtime, ctime, ino, dev, mode, nlink] = l.st;
  return { entry, stat: { size, mtimeNs: BigInt(mtime), ctimeNs: BigInt(ctime), ino: BigInt(ino), dev: BigInt(dev), mode, nlink } };
}

/**
 * Writes a new record next to the current one; `commit` puts it in place. Synchronous writes in
 * 256 KiB batches: the scan it follows is never held up for long, and nothing piles up in memory.
 */
export class TreeWriter {
  private readonly tmp: string;
  private fd: number | undefined;
  private buffer: string[] = [];
  private buffered = 0;
  private count = 0;

  /** Creates the directory (0700, like the state cache's) if needed. @throws the fs error. */
  constructor(
    private readonly path: string,
    fingerprint: string,
  ) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.tmp = `${path}.tmp`;
    this.fd = openSync(this.tmp, 'w', 0o600);
    this.push(JSON.stringify({ vaultikDaemonTree: FORMAT_VERSION, fingerprint }));
  }

  private push(line: string): void {
    this.buffer.push(line);
    this.buffered += line.length + 1;
    if (this.buffered >= WRITE_BUFFER) this.flush();
  }

  private flush(): void {
    if (this.fd === undefined || this.buffer.length === 0) return;
    writeSync(this.fd, this.buffer.join('\n') + '\n');
    this.buffer = [];
    this.buffered = 0;
  }

  /** Records one scanned entry (in the order the scan yields them: path order). */
  add(e: SourceEntry): void {
    this.push(encode(e));
    this.count++;
  }

  /** Completes the record and renames it into place. @throws the fs error. */
  commit(): void {
    this.push(JSON.stringify({ end: this.count }));
    this.flush();
    fsyncSync(this.fd!);
    closeSync(this.fd!);
    this.fd = undefined;
    renameSync(this.tmp, this.path);
  }

  /** Drops the new record; the current one stays. Idempotent. */
  abort(): void {
    if (this.fd !== undefined) {
      closeSync(this.fd);
      this.fd = undefined;
    }
    this.buffer = [];
    rmSync(this.tmp, { force: true });
  }
}

/** Whether the record at `path` exists and was made under `fingerprint` (reads its first line only). */
export function treeMatches(path: string, fingerprint: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    const buf = Buffer.alloc(512);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const nl = buf.subarray(0, n).indexOf(0x0a);
    if (nl < 0) return false;
    const header = JSON.parse(buf.subarray(0, nl).toString('utf8')) as { vaultikDaemonTree?: unknown; fingerprint?: unknown };
    return header.vaultikDaemonTree === FORMAT_VERSION && header.fingerprint === fingerprint;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/**
 * The records at `path`, in path order, in batches (one per 256 KiB read): a consumer that walks
 * tens of thousands of them pays for one promise per batch, not per record.
 * @throws TreeRecordError (possibly after yielding some records) when the file is missing, was
 *   made under another fingerprint, is malformed or was cut short: a scan built on it must fail.
 */
export async function* readTreeBatches(path: string, fingerprint: string): AsyncGenerator<TreeRecord[]> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw new TreeRecordError(`cannot read the daemon's scan record ${path}: ${(err as Error).message}`);
  }
  const where = `the daemon's scan record ${path}`;
  try {
    const buf = Buffer.allocUnsafe(READ_SIZE);
    let rest = '';
    let count = 0;
    let first = true;
    let ended = false;
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      // Lines are ASCII (JSON with base64 paths): a read boundary never splits a character.
      const lines = (rest + buf.toString('latin1', 0, bytesRead)).split('\n');
      rest = lines.pop()!;
      const batch: TreeRecord[] = [];
      for (const text of lines) {
        if (ended) throw new TreeRecordError(`${where} has data after its end`);
        if (first) {
          first = false;
          let header: { vaultikDaemonTree?: unknown; fingerprint?: unknown };
          try {
            header = JSON.parse(text) as typeof header;
          } catch {
            throw new TreeRecordError(`${where} has no valid header`);
          }
          if (header.vaultikDaemonTree !== FORMAT_VERSION || header.fingerprint !== fingerprint) {
            throw new TreeRecordError(`${where} belongs to another configuration`);
          }
          continue;
        }
        if (text.startsWith('{"end":')) {
          const end = (JSON.parse(text) as { end: number }).end;
          if (end !== count) throw new TreeRecordError(`${where} is damaged (${count} entries, ${end} announced)`);
          ended = true;
          continue;
        }
        try {
          batch.push(decode(text));
        } catch (err) {
          throw new TreeRecordError(`${where} is malformed at entry ${count + 1}: ${(err as Error).message}`);
        }
        count++;
      }
      if (batch.length > 0) yield batch;
    }
    if (rest !== '' || !ended) throw new TreeRecordError(`${where} was cut short`);
  } finally {
    await handle.close();
  }
}

/** The records at `path` one by one (see readTreeBatches). */
export async function* readTree(path: string, fingerprint: string): AsyncGenerator<TreeRecord> {
  for await (const batch of readTreeBatches(path, fingerprint)) yield* batch;
}

/** Deletes the record (and a leftover temp file). */
export function removeTree(path: string): void {
  rmSync(path, { force: true });
  rmSync(`${path}.tmp`, { force: true });
}
