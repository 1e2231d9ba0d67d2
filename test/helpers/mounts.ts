/**
 * Real mounts for tests (root only): mount a file system somewhere in a temp tree, and make sure
 * it is gone before the tree is removed. A recursive delete through a mounted devtmpfs would
 * delete the machine's device nodes: `removeTree` refuses while anything is mounted below.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const isRoot = process.getuid?.() === 0;

/** Whether this process can mount a `type` file system (tried once on a scratch directory). */
export function canMount(type: string): boolean {
  if (!isRoot) return false;
  const dir = mkdtempSync(join(tmpdir(), 'vaultik-canmount-'));
  try {
    if (spawnSync('mount', ['-t', type, ...(type === 'tmpfs' ? ['-o', 'size=1m'] : []), type, dir]).status !== 0) return false;
    return spawnSync('umount', [dir]).status === 0;
  } finally {
    if (mountsBelow(dir).length === 0) rmSync(dir, { recursive: true, force: true });
  }
}

/** Mount points at or below `dir` (from /proc/self/mountinfo, octal escapes decoded). */
export function mountsBelow(dir: string): string[] {
  const text = readFileSync('/proc/self/mountinfo', 'utf8');
  const points = text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  return points.filter((p) => p === dir || p.startsWith(dir + '/'));
}

/** Mounts `type` at `dir`; throws with mount's message when it fails. */
export function mount(type: string, dir: string, options: string[] = []): void {
  const r = spawnSync('mount', ['-t', type, ...options, type, dir], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mount -t ${type} ${dir} failed: ${r.stderr}`);
}

/** Unmounts everything at or below `dir`, deepest first (lazily when busy). */
export function unmountBelow(dir: string): void {
  for (const point of mountsBelow(dir).sort((a, b) => b.length - a.length)) {
    if (spawnSync('umount', [point]).status !== 0) spawnSync('umount', ['-l', point]);
  }
}

/** Unmounts what is below `dir`; throws while anything stays mounted, so nothing deletes through it. */
export function unmountAll(dir: string): void {
  unmountBelow(dir);
  const left = mountsBelow(dir);
  if (left.length > 0) throw new Error(`not removing ${dir}: still mounted: ${left.join(', ')}`);
}

/** Unmounts what is below `dir`, then removes it; refuses (throws) while anything stays mounted. */
export function removeTree(dir: string): void {
  unmountAll(dir);
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A source tree with mounts: `src/file`, a pseudo file system (`type`) mounted at `src/<at>`, and
 * a tmpfs at `src/tmp` holding `sub/data`. Nothing is written into the pseudo file system.
 */
export function mountTestTree(src: string, type: 'proc' | 'devtmpfs', at: string): void {
  writeFileSync(join(src, 'file'), 'on the source file system');
  mkdirSync(join(src, at));
  mkdirSync(join(src, 'tmp'));
  mount(type, join(src, at));
  mount('tmpfs', join(src, 'tmp'), ['-o', 'size=1m']);
  mkdirSync(join(src, 'tmp', 'sub'));
  writeFileSync(join(src, 'tmp', 'sub', 'data'), 'on the tmpfs');
}
