/**
 * The daemon's watcher and dirty scan across real mount points (root only; skipped visibly
 * otherwise): they follow the walker's rule (src/fs/mounts.ts). A devtmpfs below a source dir is
 * never watched nor listed; a tmpfs is, unless `one_file_system` is set. devtmpfs stands for the
 * pseudo file systems here: it is small, and statfs cannot tell it from tmpfs. Nothing is ever
 * written into it (it is the machine's /dev). And `backup --daemon --one-file-system` as a real
 * process: the flag applies, and still applies after a SIGHUP reload.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { scanSources, selfPaths } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { DirtySet, LIST, SELF, TREE } from '../../src/daemon/dirty.js';
import { SourceMap, dirtyScan } from '../../src/daemon/scan.js';
import { treeFingerprint } from '../../src/daemon/tree.js';
import { inotifyWatcher, type Watcher } from '../../src/daemon/watcher.js';
import { canMount, isRoot, mount, mountTestTree, unmountAll } from '../helpers/mounts.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { cliNodeArgs } from '../restore/helpers.js';
import { collect, describeEntries, openRecord, recordFullScan, waitFor } from './kit.js';

const mountable = isRoot && canMount('tmpfs') && canMount('devtmpfs');
const why = mountable ? '' : isRoot ? ' (skipped: cannot mount tmpfs and devtmpfs here)' : ' (skipped: needs root to mount file systems)';

let ws: Workspace | undefined;
let watcher: Watcher | undefined;
afterEach(() => {
  watcher?.close();
  watcher = undefined;
  if (ws === undefined) return;
  unmountAll(ws.root); // never delete (or chmod -R) through a mount: devtmpfs is the real /dev
  ws.cleanup();
  ws = undefined;
});

/** src/file, src/dev (devtmpfs), src/tmp (tmpfs with data and a subdirectory). */
function mountedWorkspace(): Workspace {
  ws = makeWorkspace();
  mountTestTree(ws.src, 'devtmpfs', 'dev');
  return ws;
}

/** Paths of entries below the source dir. */
function below(config: Config, lines: string[]): string[] {
  const src = config.sourceDirs[0]!.slice(1) + '/';
  return lines.map((l) => l.split(' ')[0]!).filter((p) => p.startsWith(src)).map((p) => p.slice(src.length));
}

describe('daemon across mount points', () => {
  it.skipIf(!mountable)(`the watcher watches no pseudo file system, and with one_file_system no other device${why}`, async () => {
    const w = mountedWorkspace();
    const watched = async (config: Config): Promise<number> => {
      const map = new SourceMap(config, selfPaths(config));
      const errors: Error[] = [];
      watcher = inotifyWatcher({
        roots: map.sources.map((s) => ({ dir: s.dir, exclude: s.exclude })),
        oneFileSystem: config.oneFileSystem === true,
        onChange: () => undefined,
        onError: (err) => errors.push(err),
      });
      await watcher.ready;
      expect(errors).toEqual([]);
      const n = watcher.watchedDirs;
      watcher.close();
      return n;
    };
    // src, tmp, tmp/sub: not dev (the machine's /dev has subdirectories: block, char, ...).
    expect(await watched(w.writeConfig())).toBe(3);
    expect(await watched(w.writeConfig('one_file_system: true'))).toBe(1);
  });

  it.skipIf(!mountable)(`the dirty scan lists no pseudo file system and, with one_file_system, no other device${why}`, async () => {
    const w = mountedWorkspace();
    for (const oneFileSystem of [false, true]) {
      const config = w.writeConfig(`one_file_system: ${oneFileSystem}`);
      await recordFullScan(config);
      // A new directory with a tmpfs and a devtmpfs in it, walked whole (TREE), and the
      // recorded mount points listed again (LIST), as a watcher's events would mark them.
      const fresh = join(w.src, `fresh-${oneFileSystem}`);
      mkdirSync(join(fresh, 'dev'), { recursive: true });
      mkdirSync(join(fresh, 'tmp'));
      mount('devtmpfs', join(fresh, 'dev'));
      mount('tmpfs', join(fresh, 'tmp'), ['-o', 'size=1m']);
      writeFileSync(join(fresh, 'tmp', 'data'), 'x');
      const marks = new DirtySet();
      const rel = (p: string): Buffer => Buffer.from(join(w.src, p).slice(1));
      marks.mark(rel(`fresh-${oneFileSystem}`), SELF | TREE);
      marks.mark(rel(''), SELF | LIST);
      marks.mark(rel('dev'), SELF | LIST);
      marks.mark(rel('tmp'), SELF | LIST);
      const dirty = describeEntries(await collect(dirtyScan({ openTree: openRecord(config), marks }), config));
      const full = describeEntries(await collect(scanSources, config));
      expect(dirty).toEqual(full);
      const paths = below(config, dirty);
      expect(paths.filter((p) => p.startsWith('dev/') || p.includes('/dev/'))).toEqual([]);
      expect(paths).toContain('dev');
      expect(paths).toContain(`fresh-${oneFileSystem}/dev`);
      expect(paths.includes('tmp/sub/data')).toBe(!oneFileSystem);
      expect(paths.includes(`fresh-${oneFileSystem}/tmp/data`)).toBe(!oneFileSystem);
      expect(paths).toContain(`fresh-${oneFileSystem}/tmp`);
    }
    // The scan record of one setting is no record for the other.
    const self = selfPaths(w.config());
    expect(treeFingerprint(w.writeConfig('one_file_system: true'), self)).not.toBe(treeFingerprint(w.writeConfig(), self));
  });

  it.skipIf(!mountable)(`backup --daemon --one-file-system: watches one file system, and a SIGHUP reload keeps the flag${why}`, async () => {
    const w = mountedWorkspace();
    w.writeConfig('backup_interval: 1s\nfull_scan_interval: 1h\nmin_time_between_run: 0');
    const cli = new URL('../../src/cli/main.ts', import.meta.url).pathname;
    const args = [...cliNodeArgs(), cli, 'backup', w.configPath, '--daemon', '--json', '--one-file-system'];
    const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'pipe', 'pipe'] });
    const events: { type: string; [k: string]: unknown }[] = [];
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      for (let nl = out.indexOf('\n'); nl >= 0; nl = out.indexOf('\n')) {
        events.push(JSON.parse(out.slice(0, nl)) as (typeof events)[number]);
        out = out.slice(nl + 1);
      }
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exit = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
    const next = (type: string): Promise<(typeof events)[number]> =>
      waitFor(`'${type}' from the daemon (events: ${events.map((e) => e.type).join(', ')}; stderr: ${err})`, () => events.find((e) => e.type === type), 30_000);
    try {
      // Only the source dir: not tmp and tmp/sub on the tmpfs, nor anything on the devtmpfs.
      expect((await next('watching')).directories).toBe(1);
      await next('run');
      child.kill('SIGHUP');
      // The reloaded config has one_file_system from the flag again: nothing changed.
      expect((await next('reloaded')).changed).toEqual([]);
    } finally {
      if (child.exitCode === null) child.kill('SIGTERM');
      expect(await exit).toBe(0);
    }
  }, 60_000);
});
