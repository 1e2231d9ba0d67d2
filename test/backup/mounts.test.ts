/**
 * Mount points in a real backup (the CLI, dist/cli/bin.js), on real mounts (root only; skipped
 * visibly otherwise): a proc mounted in a source dir is recorded but never walked, a tmpfs is
 * backed up unless `one_file_system` (config key or `--one-file-system`) is set, and then its
 * mount point is in the snapshot, empty.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canMount, isRoot, mountTestTree, unmountAll } from '../helpers/mounts.js';
import { cleanEnv, ensureBuilt, runCli } from './cli.js';
import { makeWorkspace, type Workspace } from './helpers.js';

const mountable = isRoot && canMount('tmpfs') && canMount('proc');
const why = mountable ? '' : isRoot ? ' (skipped: cannot mount tmpfs and proc here)' : ' (skipped: needs root to mount file systems)';

let ws: Workspace | undefined;

beforeAll(() => {
  if (!mountable) return;
  ensureBuilt();
  ws = makeWorkspace();
  mountTestTree(ws.src, 'proc', 'proc');
}, 120_000);

afterAll(() => {
  if (ws === undefined) return;
  unmountAll(ws.root); // never delete (or chmod -R) through a mount that is still there
  ws.cleanup();
});

/** Backs up with `args`, then lists the latest snapshot's paths below the source dir. */
async function backupAndList(args: string[], configExtra = ''): Promise<string[]> {
  const w = ws!;
  w.writeConfig(configExtra, `local: {path: ${w.store}, prefix: pc/}`);
  const r = await runCli(['backup', w.configPath, ...args]);
  expect(r.code, r.stderr + r.stdout).toBe(0);
  const ls = await runCli(['ls', `file://${w.store}`, 'pc', 'latest', w.src], cleanEnv({ VAULTIK_PRIVATE_KEY: w.identity }));
  expect(ls.code, ls.stderr).toBe(0);
  const lines = ls.stdout.split('\n').filter((l) => l !== '');
  return lines.map((l) => l.replace(/\/$/, '')).filter((l) => l.startsWith(w.src + '/')).map((l) => l.slice(w.src.length + 1));
}

describe('backup across mount points', () => {
  it.skipIf(!mountable)(`records a mounted proc but never walks it; backs up a tmpfs${why}`, async () => {
    expect(await backupAndList([])).toEqual(['file', 'proc', 'tmp', 'tmp/sub', 'tmp/sub/data']);
  }, 60_000);

  it.skipIf(!mountable)(`--one-file-system records the tmpfs mount point, empty${why}`, async () => {
    expect(await backupAndList(['--one-file-system'])).toEqual(['file', 'proc', 'tmp']);
  }, 60_000);

  it.skipIf(!mountable)(`one_file_system: true in the config does the same${why}`, async () => {
    expect(await backupAndList([], 'one_file_system: true')).toEqual(['file', 'proc', 'tmp']);
    // And false is the default: the tmpfs is backed up again.
    expect(await backupAndList([], 'one_file_system: false')).toEqual(['file', 'proc', 'tmp', 'tmp/sub', 'tmp/sub/data']);
  }, 60_000);
});
