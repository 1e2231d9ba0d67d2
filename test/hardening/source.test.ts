/**
 * Source-tree edge cases through a real backup and restore (issue 9), beyond what
 * test/fs (walker, reader) and test/backup cover one part at a time:
 *   - the rich tree (FIFO — never opened, the run does not hang —, socket, device node, symlink
 *     loops, names with newlines and invalid UTF-8, 0-byte and sparse files) plus a path of
 *     4,095 bytes (PATH_MAX - 1) — restored into a target that makes it longer than PATH_MAX;
 *   - files deleted during the scan and truncated or rewritten between the walk and the read;
 *   - EACCES: a backup run as uid nobody over a tree with root-only files and directories;
 *   - 100,000 files in one directory, round trip, timed.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runBackup, scanSources, type SourceEntry } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { parseIdentity } from '../../src/crypto/index.js';
import { runRestore } from '../../src/restore/index.js';
import { openStorage } from '../../src/storage/index.js';
import { ensureBuilt, MAIN } from '../backup/cli.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { buildRichTree, compareTrees, pseudoRandom, type TypeName } from '../helpers/tree.js';
import { goldenCopy } from './kit.js';

let ws: Workspace | undefined;
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});
beforeAll(() => ensureBuilt());

const isRoot = process.getuid?.() === 0;
/** Restore skips sockets (nothing to restore them from). */
const ignoreSockets = (_rel: Buffer, type: TypeName): boolean => type === 'socket';

/** Makes `root/<dirs…>/<file>` whose absolute path is exactly `total` bytes. */
function deepPath(root: string, total: number): string {
  let dir = root;
  let n = 0;
  while (total - dir.length > 250) {
    dir = join(dir, `${String(n++).padStart(3, '0')}${'d'.repeat(196)}`);
    mkdirSync(dir);
  }
  const name = 'f'.repeat(total - dir.length - 1);
  const file = join(dir, name);
  expect(Buffer.byteLength(file)).toBe(total);
  writeFileSync(file, 'deep\n');
  return file;
}

describe('source edge cases, round trip through backup and restore', () => {
  it('rich tree + a 4,095-byte path: every entry restored (FIFO never opened)', async () => {
    ws = makeWorkspace();
    await buildRichTree(ws.src, { bigSize: 300 * 1024 });
    mkdirSync(join(ws.src, 'deep'));
    const deepRel = relative(ws.src, deepPath(join(ws.src, 'deep'), 4095));
    const storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
    try {
      const t0 = Date.now();
      const summary = await runBackup(ws.config(), { storage, workers: 2, progressIntervalMs: 0 });
      expect(Date.now() - t0).toBeLessThan(30_000); // a FIFO opened for reading would block forever
      expect(summary.warnings).toBe(0);
      const target = join(ws.root, 'restore-target-with-a-longer-name');
      const r = await runRestore({ storage, identities: [parseIdentity(ws.identity)], snapshotId: 'latest', target, tmpDir: ws.root });
      expect(r.failed, JSON.stringify(r)).toBe(0);
      // The restored deep file is longer than PATH_MAX under the target, and the oracle uses
      // whole paths: move both deep trees next to the workspace root, then compare everything.
      const restored = join(target, ws.src);
      const deepName = deepRel.split('/')[1]!;
      renameSync(join(ws.src, 'deep', deepName), join(ws.root, 'ds'));
      renameSync(join(restored, 'deep', deepName), join(ws.root, 'dr'));
      expect(compareTrees(join(ws.root, 'ds'), join(ws.root, 'dr'), { owners: true, mtime: 'none' })).toEqual([]);
      expect(readFileSync(join(ws.root, 'dr', ...deepRel.split('/').slice(2)), 'utf8')).toBe('deep\n');
      expect(compareTrees(ws.src, restored, { ignore: (rel, type) => ignoreSockets(rel, type) || rel.toString() === 'deep', owners: true })).toEqual([]);
    } finally {
      await storage.close();
      // Node's rmSync gives up past PATH_MAX; rm -rf does not.
      execFileSync('rm', ['-rf', ws.root]);
    }
  }, 60_000);

  it('files deleted during the scan, truncated or rewritten before they are read: warnings, the rest is exact', async () => {
    ws = makeWorkspace();
    const w = ws;
    for (let i = 0; i < 30; i++) writeFileSync(join(w.src, `f${String(i).padStart(2, '0')}.bin`), pseudoRandom(50 * 1024 + i, 100 + i));
    const storage = openStorage({ type: 'local', path: w.store, prefix: '' });
    // As the walk passes f05, delete f06…f08, truncate f09, rewrite f10 (same size, new bytes).
    async function* hostile(config: Config, options: Parameters<typeof scanSources>[1]): AsyncGenerator<SourceEntry> {
      for await (const e of scanSources(config, options)) {
        if (e.absPath.toString().endsWith('/f05.bin')) {
          for (const n of ['06', '07', '08']) unlinkSync(join(w.src, `f${n}.bin`));
          truncateSync(join(w.src, 'f09.bin'), 10);
          writeFileSync(join(w.src, 'f10.bin'), pseudoRandom(50 * 1024 + 10, 999));
        }
        yield e;
      }
    }
    const warnings: string[] = [];
    try {
      const summary = await runBackup(w.config(), {
        storage,
        workers: 2,
        progressIntervalMs: 0,
        scan: hostile,
        tuning: { syncSmallReads: false },
        onEvent: (e) => {
          if (e.type === 'warning') warnings.push(`${e.kind} ${e.path}`);
        },
      });
      // The walk had listed f06–f08 (readdir comes first): each is a 'vanished' warning. f09 and
      // f10 changed after the walk but not while read: their new content is backed up.
      expect(summary.warnings).toBe(warnings.length);
      for (const n of ['06', '07', '08']) expect(warnings.join('\n')).toMatch(new RegExp(`^vanished .*f${n}\\.bin`, 'm'));
      const golden = join(w.root, 'golden');
      goldenCopy(w.src, golden);
      // f09 and f10 changed after the walk: left out (no previous version); the rest is exact.
      for (const n of ['09', '10']) if (warnings.some((x) => x.includes(`f${n}.bin`))) rmSync(join(golden, `f${n}.bin`));
      mkdirSync(join(w.root, 'scratch'));
      const target = join(w.root, 'scratch', 'r');
      const r = await runRestore({ storage, identities: [parseIdentity(w.identity)], snapshotId: 'latest', target, tmpDir: w.root });
      expect(r.failed).toBe(0);
      expect(compareTrees(golden, join(target, w.src))).toEqual([]);
    } finally {
      await storage.close();
    }
  }, 60_000);

  it('EACCES: a backup as an unprivileged user (uid nobody when run as root) warns about each unreadable path (exit 3) and backs up the rest', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'public.txt'), 'everyone\n');
    writeFileSync(join(ws.src, 'secret.txt'), 'root only\n');
    chmodSync(join(ws.src, 'secret.txt'), 0o600);
    mkdirSync(join(ws.src, 'private'));
    writeFileSync(join(ws.src, 'private', 'inner.txt'), 'hidden\n');
    chmodSync(join(ws.src, 'private'), 0o700);
    mkdirSync(join(ws.src, 'open'));
    writeFileSync(join(ws.src, 'open', 'ok.txt'), 'fine\n');
    for (const d of [ws.root, ws.src]) chmodSync(d, 0o755);
    chmodSync(ws.configPath, 0o644);
    // As root, run the backup as nobody (root reads everything); otherwise the 0600/0700
    // modes already keep this user out. Either way the source holds paths it cannot read.
    if (isRoot) {
      for (const d of [ws.store, ws.cacheDir]) chownSync(d, 65534, 65534);
      for (const d of ['secret.txt', 'private']) chownSync(join(ws.src, d), 0, 0);
    } else {
      chmodSync(join(ws.src, 'secret.txt'), 0o000);
      chmodSync(join(ws.src, 'private'), 0o000);
    }
    const ids = isRoot ? { uid: 65534, gid: 65534 } : {};
    // nobody must be able to run this Node: one under /root (0700) cannot be (scripts/use-node.sh
    // installs root's in /var/cache for that reason).
    const probe = spawnSync(process.execPath, ['--version'], ids);
    expect(probe.error?.message, `${process.execPath} must be executable by uid 65534 for this test`).toBeUndefined();
    const child = spawn(process.execPath, [MAIN, 'backup', ws.configPath, '--cron'], { ...ids, env: { PATH: process.env.PATH, HOME: '/nonexistent' } });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', resolve);
    });
    expect(code, stderr).toBe(3);
    expect(stderr).toMatch(/secret\.txt/);
    expect(stderr).toMatch(/private/);
    const storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
    try {
      if (!isRoot) chmodSync(join(ws.src, 'private'), 0o700); // for the workspace clean-up
      const target = join(ws.root, 'r');
      await runRestore({ storage, identities: [parseIdentity(ws.identity)], snapshotId: 'latest', target, tmpDir: ws.root });
      const restored = join(target, ws.src);
      expect(readFileSync(join(restored, 'public.txt'), 'utf8')).toBe('everyone\n');
      expect(readFileSync(join(restored, 'open', 'ok.txt'), 'utf8')).toBe('fine\n');
      expect(readdirSync(restored).sort()).not.toContain('secret.txt');
      // The unreadable directory is kept as an entry (its mode), without contents.
      expect(readdirSync(restored)).toContain('private');
      expect(readdirSync(join(restored, 'private'))).toEqual([]);
    } finally {
      await storage.close();
    }
  }, 60_000);

  it('100,000 files in one directory: backup and restore, timed', async () => {
    ws = makeWorkspace();
    const dir = join(ws.src, 'big');
    mkdirSync(dir);
    const N = 100_000;
    let t = Date.now();
    for (let i = 0; i < N; i++) writeFileSync(join(dir, `file-${i}`), `${i}\n`);
    const made = Date.now() - t;
    const storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
    try {
      t = Date.now();
      const summary = await runBackup(ws.config(), { storage, progressIntervalMs: 0 });
      const backupMs = Date.now() - t;
      expect(summary.files).toBe(N);
      expect(summary.warnings).toBe(0);
      t = Date.now();
      const again = await runBackup(ws.config(), { storage, progressIntervalMs: 0, now: () => new Date(Date.now() + 1000) });
      const noChangeMs = Date.now() - t;
      expect(again.filesUnchanged).toBe(N);
      const target = join(ws.root, 'r');
      t = Date.now();
      const r = await runRestore({ storage, identities: [parseIdentity(ws.identity)], snapshotId: 'latest', target, tmpDir: ws.root });
      const restoreMs = Date.now() - t;
      expect(r.failed).toBe(0);
      const names = readdirSync(join(target, dir));
      expect(names).toHaveLength(N);
      for (const i of [0, 1, 4242, 99_999]) expect(readFileSync(join(target, dir, `file-${i}`), 'utf8')).toBe(`${i}\n`);
      console.log(`[hardening] 100,000 files in one dir: create ${made} ms, backup ${backupMs} ms, no-change backup ${noChangeMs} ms, restore ${restoreMs} ms`);
    } finally {
      await storage.close();
    }
  }, 180_000);
});

