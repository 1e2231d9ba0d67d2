/**
 * The daemon's scans without the daemon: a dirty scan built from the previous record plus marks
 * must yield exactly what a full walk yields (entries, stat tuples, hard-link groups, excludes,
 * odd names), and the full stat scan (diffTree) must find every difference and nothing else.
 */
import { chmodSync, linkSync, mkdirSync, renameSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { scanSources, selfPaths } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { DirtySet, LIST, SELF, TREE } from '../../src/daemon/dirty.js';
import { diffTree, dirtyScan, recordingScan } from '../../src/daemon/scan.js';
import { TreeRecordError, TreeWriter, readTree, treeFingerprint, treeMatches, treePathFor } from '../../src/daemon/tree.js';
import { NON_UTF8_DIR, buildRichTree } from '../helpers/tree.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { collect, describeEntries, openRecord, recordFullScan, scanOptions } from './kit.js';

let ws: Workspace | undefined;
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

function b(root: string, ...parts: (string | Buffer)[]): Buffer {
  return Buffer.concat([Buffer.from(root), ...parts.flatMap((p) => [Buffer.from('/'), Buffer.from(p)])]);
}

/** Many kinds of change at once, in nested, new, renamed and replaced directories. */
function mutate(src: string): void {
  writeFileSync(join(src, 'a/x'), 'ax changed, longer');
  chmodSync(join(src, 'text.txt'), 0o640);
  utimesSync(join(src, 'exec.sh'), 1_700_000_000, 1_700_000_000);
  writeFileSync(join(src, 'a/b/c/new.txt'), 'new in a nested dir');
  mkdirSync(join(src, 'new/deeper/deepest'), { recursive: true });
  writeFileSync(join(src, 'new/deeper/deepest/file'), 'deep new');
  writeFileSync(join(src, 'new/top'), 'top new');
  mkdirSync(b(src, 'new', NON_UTF8_DIR));
  writeFileSync(b(src, 'new', NON_UTF8_DIR, 'x'), 'odd');
  renameSync(join(src, 'a.b'), join(src, 'a.c'));
  renameSync(join(src, 'a-b'), join(src, 'a-z'));
  renameSync(join(src, 'a/b'), join(src, 'links/b2'));
  unlinkSync(join(src, 'one.bin'));
  chmodSync(join(src, 'names'), 0o755);
  rmSync(join(src, 'names'), { recursive: true });
  unlinkSync(join(src, 'a0'));
  mkdirSync(join(src, 'a0'));
  writeFileSync(join(src, 'a0/was-a-file'), 'now a dir');
  rmSync(join(src, 'empty-dir'), { recursive: true });
  writeFileSync(join(src, 'empty-dir'), 'now a file');
  unlinkSync(join(src, 'links/rel'));
  symlinkSync('../big.bin', join(src, 'links/rel'));
  linkSync(join(src, 'hard/h1'), join(src, 'hard/h3'));
  unlinkSync(join(src, 'hard-other'));
  writeFileSync(join(src, 'skip.log'), 'excluded');
  mkdirSync(join(src, 'a0/cache'));
  writeFileSync(join(src, 'a0/cache/x'), 'excluded dir');
}

async function setup(): Promise<Config> {
  ws = makeWorkspace();
  await buildRichTree(ws.src, { bigSize: 1000 });
  return ws.writeConfig("exclude: ['*.log', 'cache/']");
}

describe('dirty scan', () => {
  it('after a full stat scan, yields exactly what a full walk yields', async () => {
    const config = await setup();
    await recordFullScan(config);
    mutate(ws!.src);
    const diff = await diffTree(config, scanOptions(config), openRecord(config));
    expect(diff.structural).toBe(false);
    expect(diff.changed).toBeGreaterThan(10);
    const dirty = await collect(dirtyScan({ openTree: openRecord(config), marks: diff.marks }), config);
    const full = await collect(scanSources, config);
    expect(describeEntries(dirty)).toEqual(describeEntries(full));
    expect(full.some((e) => e.entry.path.toString().endsWith('skip.log'))).toBe(false);
    // Not vacuous: without the marks the record is simply carried over, and that is stale.
    const stale = await collect(dirtyScan({ openTree: openRecord(config), marks: new DirtySet() }), config);
    expect(describeEntries(stale)).not.toEqual(describeEntries(full));
  });

  it('with no marks, carries the record over without touching the disk; a full stat scan finds nothing', async () => {
    const config = await setup();
    await recordFullScan(config);
    // Names added next to the source dir change its ancestor's times: not a change to back up.
    mkdirSync(join(ws!.root, 'sibling'));
    const diff = await diffTree(config, scanOptions(config), openRecord(config));
    expect(diff.changed).toBe(0);
    expect(diff.marks.empty).toBe(true);
    chmodSync(ws!.root, 0o750);
    expect((await diffTree(config, scanOptions(config), openRecord(config))).changed).toBe(1);
    // Remove the sources: a carried-over scan still yields the recorded tree.
    const full = await collect(scanSources, config);
    rmSync(join(ws!.src, 'a'), { recursive: true });
    const carried = await collect(dirtyScan({ openTree: openRecord(config), marks: new DirtySet() }), config);
    // The source dir and its ancestors are stat'ed again every time; everything below is carried.
    const below = (lines: string[]): string[] => lines.filter((l) => l.startsWith(ws!.src.slice(1) + '/'));
    expect(below(describeEntries(carried))).toEqual(below(describeEntries(full)));
    expect(below(describeEntries(carried)).length).toBe(full.length - 3);
  });

  it('marks as a watcher sets them: a new directory, a removed one, a replaced one (TREE)', async () => {
    const config = await setup();
    await recordFullScan(config);
    const src = ws!.src;
    const marks = new DirtySet();
    const rel = (p: string): Buffer => Buffer.from(join(src, p).slice(1));
    mkdirSync(join(src, 'fresh/sub'), { recursive: true });
    writeFileSync(join(src, 'fresh/sub/f'), 'f');
    marks.mark(rel('fresh'), SELF | TREE);
    marks.mark(rel(''), SELF | LIST);
    rmSync(join(src, 'a'), { recursive: true });
    marks.mark(rel('a'), SELF);
    // Same path, new inode: carried children must not survive.
    rmSync(join(src, 'sticky'), { recursive: true });
    mkdirSync(join(src, 'sticky'));
    writeFileSync(join(src, 'sticky/other'), 'other');
    marks.mark(rel('sticky'), SELF | LIST);
    const dirty = await collect(dirtyScan({ openTree: openRecord(config), marks }), config);
    const full = await collect(scanSources, config);
    expect(describeEntries(dirty)).toEqual(describeEntries(full));
  });

  it('records what it yields; a record is bound to its fingerprint and must be complete', async () => {
    const config = await setup();
    const path = treePathFor(config.indexPath);
    const fp = treeFingerprint(config, selfPaths(config));
    const writer = new TreeWriter(path, fp);
    const seen = await collect(recordingScan(scanSources, writer), config);
    expect(treeMatches(path, fp)).toBe(false); // not committed yet
    writer.commit();
    expect(treeMatches(path, fp)).toBe(true);
    const back = [];
    for await (const r of readTree(path, fp)) back.push(r);
    expect(back.map((r) => r.entry.path.toString('latin1'))).toEqual(seen.map((e) => e.entry.path.toString('latin1')));
    expect(treeMatches(path, 'other')).toBe(false);
    await expect(collect(() => readTree(path, 'other') as never, config)).rejects.toThrow(TreeRecordError);
    // Cut short: the reader must fail, never yield a partial tree as if complete.
    const { readFileSync } = await import('node:fs');
    const text = readFileSync(path, 'utf8').split('\n');
    writeFileSync(path, text.slice(0, 5).join('\n') + '\n');
    const read = async (): Promise<number> => {
      let n = 0;
      for await (const _ of readTree(path, fp)) n++;
      return n;
    };
    await expect(read()).rejects.toThrow(/cut short/);
  });
});
