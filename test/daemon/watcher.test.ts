/**
 * The inotify watcher with real file system events: the marks it sets, fed to the dirty scan,
 * must give what a full walk gives, through nested, new, renamed and removed directories;
 * excluded directories are not watched; a failure is reported once.
 */
import { chmodSync, mkdirSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { scanSources, selfPaths } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { DirtySet } from '../../src/daemon/dirty.js';
import { SourceMap, dirtyScan, recordingScan } from '../../src/daemon/scan.js';
import { TreeWriter, treeFingerprint, treePathFor } from '../../src/daemon/tree.js';
import { inotifyWatcher, type Watcher } from '../../src/daemon/watcher.js';
import { NON_UTF8_DIR, buildRichTree } from '../helpers/tree.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { collect, describeEntries, openRecord, recordFullScan, sleep, waitFor } from './kit.js';

let ws: Workspace | undefined;
let watcher: Watcher | undefined;
afterEach(() => {
  watcher?.close();
  watcher = undefined;
  ws?.cleanup();
  ws = undefined;
});

function start(config: Config, marks: DirtySet, errors: Error[] = []): Watcher {
  const map = new SourceMap(config, selfPaths(config));
  watcher = inotifyWatcher({
    roots: map.sources.map((s) => ({ dir: s.dir, exclude: s.exclude })),
    onChange: (abs, flags) => marks.markAbs(abs, flags),
    onError: (err) => errors.push(err),
  });
  return watcher;
}

/** Waits until no new mark arrived for 300 ms (events and the watches of new dirs settle). */
async function settle(marks: DirtySet, w: Watcher): Promise<void> {
  let last = -1;
  let lastDirs = -1;
  for (let stable = 0; stable < 3; ) {
    await sleep(100);
    if (marks.size === last && w.watchedDirs === lastDirs) stable++;
    else stable = 0;
    last = marks.size;
    lastDirs = w.watchedDirs;
  }
}

async function scanWithMarks(config: Config, marks: DirtySet): Promise<string[]> {
  const writer = new TreeWriter(treePathFor(config.indexPath), treeFingerprint(config, selfPaths(config)));
  const entries = await collect(recordingScan(dirtyScan({ openTree: openRecord(config), marks }), writer), config);
  writer.commit();
  return describeEntries(entries);
}

describe('inotify watcher', () => {
  it('marks every change; the dirty scan of its marks equals a full walk, twice in a row', async () => {
    ws = makeWorkspace();
    await buildRichTree(ws.src, { bigSize: 1000 });
    const config = ws.writeConfig("exclude: ['*.log', 'cache/']");
    const src = ws.src;
    mkdirSync(join(src, 'cache/deep'), { recursive: true });
    await recordFullScan(config);
    const marks = new DirtySet();
    const w = start(config, marks);
    await w.ready;
    const watchedAtStart = w.watchedDirs;
    expect(watchedAtStart).toBeGreaterThan(10);

    writeFileSync(join(src, 'a/x'), 'ax changed, longer');
    chmodSync(join(src, 'text.txt'), 0o640);
    utimesSync(join(src, 'exec.sh'), 1_700_000_000, 1_700_000_000);
    writeFileSync(join(src, 'a/b/c/new.txt'), 'new in a nested dir');
    // A new tree filled before any watch can exist on it.
    mkdirSync(join(src, 'new/deeper/deepest'), { recursive: true });
    writeFileSync(join(src, 'new/deeper/deepest/file'), 'deep new');
    mkdirSync(Buffer.concat([Buffer.from(join(src, 'new') + '/'), NON_UTF8_DIR]));
    renameSync(join(src, 'a.b'), join(src, 'a.c'));
    renameSync(join(src, 'a-b'), join(src, 'a-z'));
    renameSync(join(src, 'a/b'), join(src, 'links/b2'));
    unlinkSync(join(src, 'one.bin'));
    chmodSync(join(src, 'names'), 0o755);
    rmSync(join(src, 'names'), { recursive: true });
    unlinkSync(join(src, 'a0'));
    mkdirSync(join(src, 'a0'));
    writeFileSync(join(src, 'a0/was-a-file'), 'now a dir');
    unlinkSync(join(src, 'links/rel'));
    symlinkSync('../big.bin', join(src, 'links/rel'));
    writeFileSync(join(src, 'skip.log'), 'excluded');
    writeFileSync(join(src, 'cache/deep/x'), 'in an excluded dir');
    await settle(marks, w);

    const keys = [...marks.entries()].map(([k]) => Buffer.from(k, 'latin1').toString());
    expect(keys.some((k) => k.endsWith('skip.log') || k.includes('/cache'))).toBe(false);
    expect(await scanWithMarks(config, marks.take())).toEqual(describeEntries(await collect(scanSources, config)));

    // Round two, inside directories that only exist since the watcher started (or moved).
    writeFileSync(join(src, 'new/deeper/deepest/file'), 'changed again');
    writeFileSync(join(src, 'links/b2/c/deep.txt'), 'moved dir, new content');
    mkdirSync(join(src, 'a-z/sub'));
    writeFileSync(join(src, 'a-z/sub/f'), 'f');
    rmSync(join(src, 'new/deeper'), { recursive: true });
    await settle(marks, w);
    expect(marks.size).toBeGreaterThan(0);
    expect(await scanWithMarks(config, marks.take())).toEqual(describeEntries(await collect(scanSources, config)));
    expect(w.watchedDirs).toBeGreaterThan(watchedAtStart - 5);
  });

  it('reports a removed source dir once, as a failure', async () => {
    ws = makeWorkspace();
    mkdirSync(join(ws.src, 'd'));
    const config = ws.config();
    const errors: Error[] = [];
    const w = start(config, new DirtySet(), errors);
    await w.ready;
    expect(errors).toEqual([]);
    rmSync(ws.src, { recursive: true });
    await waitFor('the failure', () => errors.length > 0);
    await sleep(200);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.message).toMatch(/was removed; it is no longer watched/);
    expect(w.watchedDirs).toBe(0);
  });

  it('fails at start for a missing source dir', async () => {
    ws = makeWorkspace();
    const config = ws.config();
    rmSync(ws.src, { recursive: true });
    const errors: Error[] = [];
    await start(config, new DirtySet(), errors).ready;
    expect(errors.map((e) => e.message)).toEqual([expect.stringMatching(/cannot watch source dir .*no such file/)]);
  });
});
