/**
 * Mount points in the walk (src/fs/mounts.ts), on real mounts (root only; skipped otherwise):
 * pseudo file systems below a source dir are recorded but never descended into, a source dir on
 * one is walked, `oneFileSystem` stops at every other device, and devtmpfs (which statfs reports
 * as tmpfs) is told from tmpfs.
 */
import { mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MountFilter, deviceNumbers, readMountTypes } from '../../src/fs/mounts.js';
import { walk, type WalkOptions } from '../../src/fs/walk.js';
import { canMount, isRoot, mount, removeTree } from '../helpers/mounts.js';

const mountable = isRoot ? ['tmpfs', 'proc', 'sysfs', 'devtmpfs'].every(canMount) : false;
const why = mountable ? '' : isRoot ? ' (skipped: cannot mount tmpfs, proc, sysfs and devtmpfs here)' : ' (skipped: needs root to mount file systems)';

/** Paths of a walk of `sources`, relative to `base` ('' for base itself), with its warnings. */
async function walked(sources: string[], base: string, options: Partial<WalkOptions> = {}): Promise<{ paths: string[]; warnings: string[] }> {
  const paths: string[] = [];
  const warnings: string[] = [];
  const rel = base.slice(1);
  for await (const e of walk(sources, { onWarning: (w) => warnings.push(w.message), ...options })) {
    const p = e.entry.path.toString('utf8');
    if (p === rel) paths.push('');
    else if (p.startsWith(rel + '/')) paths.push(p.slice(rel.length + 1));
  }
  return { paths, warnings };
}

describe('device numbers and mount types', () => {
  it.skipIf(!statSafe('/proc'))("maps stat's st_dev to mountinfo's major:minor", () => {
    const types = readMountTypes();
    expect(types.get(deviceNumbers(statSync('/proc', { bigint: true }).dev))).toBe('proc');
    // glibc's makedev, with a major above 4095 and a minor above 255.
    const makedev = (major: bigint, minor: bigint): bigint =>
      ((major & 0xfffff000n) << 32n) | ((major & 0xfffn) << 8n) | ((minor & 0xffffff00n) << 12n) | (minor & 0xffn);
    expect(deviceNumbers(makedev(0x123abcn, 0x45678n))).toBe(`${0x123abc}:${0x45678}`);
    expect(deviceNumbers(makedev(8n, 1n))).toBe('8:1');
  });
});

function statSafe(path: string): boolean {
  try {
    return statSync(path).isDirectory() && readMountTypes().size > 0;
  } catch {
    return false;
  }
}

describe('walking across mount points', () => {
  let dir = '';
  beforeAll(() => {
    if (!mountable) return;
    dir = mkdtempSync(join(tmpdir(), 'vaultik-mounts-'));
    // tree/: a file, and one mount point of each kind, each with a file beside it.
    for (const d of ['tmp', 'proc', 'sys', 'dev', 'plain']) mkdirSync(join(dir, 'tree', d), { recursive: true });
    writeFileSync(join(dir, 'tree', 'file'), 'x');
    mount('tmpfs', join(dir, 'tree', 'tmp'), ['-o', 'size=1m']);
    writeFileSync(join(dir, 'tree', 'tmp', 'data'), 'on tmpfs');
    mkdirSync(join(dir, 'tree', 'tmp', 'sub'));
    mount('proc', join(dir, 'tree', 'proc'));
    mount('sysfs', join(dir, 'tree', 'sys'));
    mount('devtmpfs', join(dir, 'tree', 'dev'));
    // A source on proc with another pseudo file system mounted inside it.
    mkdirSync(join(dir, 'procsrc'));
    mount('proc', join(dir, 'procsrc'));
    mount('sysfs', join(dir, 'procsrc', 'sys', 'kernel', 'random'));
  });
  afterAll(() => {
    if (dir === '') return;
    removeTree(dir); // unmounts first, and refuses to delete through a mount
  });

  it.skipIf(!mountable)(`records pseudo file systems below a source but never descends into them; tmpfs is data${why}`, async () => {
    const tree = join(dir, 'tree');
    const { paths, warnings } = await walked([tree], tree);
    expect(warnings).toEqual([]);
    expect(paths).toEqual(['', 'dev', 'file', 'plain', 'proc', 'sys', 'tmp', 'tmp/data', 'tmp/sub']);
  });

  it.skipIf(!mountable)(`oneFileSystem records each mount point, empty, and nothing below it${why}`, async () => {
    const tree = join(dir, 'tree');
    const { paths } = await walked([tree], tree, { oneFileSystem: true });
    expect(paths).toEqual(['', 'dev', 'file', 'plain', 'proc', 'sys', 'tmp']);
    // Each source dir is its own reference: a source on the tmpfs is walked whole.
    const inside = await walked([join(tree, 'tmp')], join(tree, 'tmp'), { oneFileSystem: true });
    expect(inside.paths).toEqual(['', 'data', 'sub']);
  });

  it.skipIf(!mountable)(`walks a source dir that lies on a pseudo file system, not other pseudo mounts in it${why}`, async () => {
    const kernel = join(dir, 'procsrc', 'sys', 'kernel');
    const { paths } = await walked([kernel], kernel);
    expect(paths).toContain('hostname');
    expect(paths).toContain('random');
    expect(paths.filter((p) => p.startsWith('random/'))).toEqual([]);
    // Without the inner mount, random/ holds proc's files: the source's own file system is walked.
    const plain = await walked(['/proc/sys/kernel/random'], '/proc/sys/kernel/random');
    expect(plain.paths).toContain('boot_id');
  });

  it.skipIf(!mountable)(`tells devtmpfs from tmpfs, which statfs cannot${why}`, () => {
    const filter = new MountFilter();
    const root = statSync(join(dir, 'tree'), { bigint: true }).dev;
    const at = (name: string): bigint => statSync(join(dir, 'tree', name), { bigint: true }).dev;
    expect(filter.decide(join(dir, 'tree', 'dev'), at('dev'), root)).toBe('pseudo');
    expect(filter.decide(join(dir, 'tree', 'tmp'), at('tmp'), root)).toBe('descend');
    expect(filter.decide(join(dir, 'tree', 'proc'), at('proc'), root)).toBe('pseudo');
    expect(filter.decide(join(dir, 'tree', 'sys'), at('sys'), root)).toBe('pseudo');
    expect(new MountFilter({ oneFileSystem: true }).decide(join(dir, 'tree', 'tmp'), at('tmp'), root)).toBe('other-fs');
    // Without mountinfo, statfs's magic number still finds proc and sysfs.
    const blind = new MountFilter({ mountinfo: join(dir, 'no-such-mountinfo') });
    expect(blind.decide(join(dir, 'tree', 'proc'), at('proc'), root)).toBe('pseudo');
    expect(blind.decide(join(dir, 'tree', 'sys'), at('sys'), root)).toBe('pseudo');
    expect(blind.decide(join(dir, 'tree', 'tmp'), at('tmp'), root)).toBe('descend');
  });
});
