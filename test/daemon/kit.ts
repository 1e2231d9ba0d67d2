/**
 * Test kit for src/daemon: running a scan to a list, comparing two scans entry by entry, writing
 * a scan record, running a Daemon in process and collecting its events, counting snapshots and
 * restoring the latest one, and waiting for conditions in real time.
 */
import { mkdtempSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { scanSources, selfPaths, type ScanOptions, type SourceEntry } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { parseIdentity } from '../../src/crypto/index.js';
import { Daemon, type DaemonEvent, type DaemonOptions } from '../../src/daemon/index.js';
import type { ScanFn } from '../../src/daemon/scan.js';
import { readTreeBatches, treeFingerprint, treePathFor, TreeWriter, type TreeRecord } from '../../src/daemon/tree.js';
import type { WalkWarning } from '../../src/fs/index.js';
import { runRestore } from '../../src/restore/index.js';
import { openStorage } from '../../src/storage/index.js';
import type { Storage } from '../../src/storage/types.js';
import type { Workspace } from '../backup/helpers.js';

export function scanOptions(config: Config, warnings: WalkWarning[] = []): ScanOptions {
  return { self: selfPaths(config), onWarning: (w) => warnings.push(w) };
}

export async function collect(scan: ScanFn, config: Config, warnings: WalkWarning[] = []): Promise<SourceEntry[]> {
  const out: SourceEntry[] = [];
  for await (const e of scan(config, scanOptions(config, warnings))) out.push(e);
  return out;
}

/** One comparable line per entry: path, entry fields, link group, stat tuple. */
export function describeEntries(entries: SourceEntry[]): string[] {
  return entries.map((e) => {
    const x = e.entry;
    const s = e.stat;
    return [
      x.path.toString('latin1'),
      x.type,
      x.mode.toString(8),
      `${x.uid}:${x.gid}`,
      x.mtimeNs,
      x.size,
      x.target?.toString('hex') ?? '-',
      x.rdev ?? '-',
      x.linkGroup ?? '-',
      e.hardLinkTo?.toString('latin1') ?? '-',
      e.absPath.toString('latin1'),
      `${s.size}/${s.mtimeNs}/${s.ctimeNs}/${s.ino}/${s.dev}/${s.mode}/${s.nlink}`,
    ].join(' ');
  });
}

/** Writes the record of a full walk, as a successful daemon run does. */
export async function recordFullScan(config: Config): Promise<void> {
  const writer = new TreeWriter(treePathFor(config.indexPath), treeFingerprint(config, selfPaths(config)));
  for await (const e of scanSources(config, scanOptions(config))) writer.add(e);
  writer.commit();
}

export function openRecord(config: Config): () => AsyncIterable<TreeRecord[]> {
  return () => readTreeBatches(treePathFor(config.indexPath), treeFingerprint(config, selfPaths(config)));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `fn` every 25 ms until it returns a truthy value; throws with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 15_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

// ---- running a Daemon in process ----


export interface RunningDaemon {
  daemon: Daemon;
  events: DaemonEvent[];
  /** Resolves when run() returns; rejects if it throws. */
  done: Promise<void>;
  /** Aborts the daemon's signal and waits for run() to return. */
  stop(): Promise<void>;
  /** The first event from index `from` on that matches. */
  next<T extends DaemonEvent['type']>(type: T, from?: number, timeoutMs?: number): Promise<Extract<DaemonEvent, { type: T }>>;
  count(type: DaemonEvent['type']): number;
}

/** Starts a daemon on the workspace's current config (2 workers, retries off). */
export function startDaemon(ws: Workspace, overrides: Partial<DaemonOptions> = {}): RunningDaemon {
  const events: DaemonEvent[] = [];
  const controller = new AbortController();
  const daemon = new Daemon({
    config: ws.config(),
    reloadConfig: () => ws.config(),
    openStorage: (c) => openStorage(c.storage, { retry: false }),
    signal: controller.signal,
    onEvent: (e) => events.push(e),
    workers: 2,
    ...overrides,
  });
  const done = daemon.run();
  done.catch(() => undefined);
  return {
    daemon,
    events,
    done,
    stop: async () => {
      controller.abort(new Error('test stop'));
      await done;
    },
    next: async (type, from = 0, timeoutMs = 20_000) =>
      waitFor(`a '${type}' event after #${from} (events: ${events.map((e) => e.type).join(', ')})`, () => events.slice(from).find((e) => e.type === type), timeoutMs) as never,
    count: (type) => events.filter((e) => e.type === type).length,
  };
}

/** Snapshot metadata objects in a local store. */
export function snapshotCount(store: string): number {
  try {
    return readdirSync(join(store, 'index')).filter((n) => n.endsWith('.db.zst.age')).length;
  } catch {
    return 0;
  }
}

/** Restores the latest snapshot into a new temp dir under the workspace; returns where the source dir landed. */
export async function restoreLatest(ws: Workspace, storage: Storage = openStorage(ws.config().storage)): Promise<string> {
  const target = mkdtempSync(join(ws.root, 'restore-'));
  try {
    await runRestore({ storage, identities: [parseIdentity(ws.identity)], snapshotId: 'latest', target });
  } finally {
    await storage.close();
  }
  return join(target, ws.src);
}
