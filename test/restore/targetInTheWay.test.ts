/**
 * Issue 16 item 12: `restore --overwrite` over a target where names of the snapshot are taken by
 * something else: a symlink where the snapshot has a directory (with entries of every kind under
 * it), a symlink where it has a regular file, a regular file where it has a directory. One run
 * replaces each (never following a link: nothing outside the target changes) and exits 0.
 * Without --overwrite the target is refused as a local problem (exit 2), not blamed on the store.
 * The real CLI (dist/cli/bin.js) on real trees.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ExitCode } from '../../src/errors.js';
import { MAIN, cleanEnv, ensureBuilt, runCli, startNode, writeBackupConfig } from '../backup/cli.js';
import { jsonLines } from '../helpers/io.js';
import { makeTempDir } from '../helpers/tmp.js';
import { makeKey, writeKeyFile } from './helpers.js';

const tmp = makeTempDir('vaultik-target-in-the-way-');
afterAll(tmp.cleanup);
const key = makeKey();
const keyFile = writeKeyFile(key, join(tmp.dir, 'key.txt'));
const src = join(tmp.dir, 'src');
const store = join(tmp.dir, 'store');
const url = `file://${store}`;
const env = cleanEnv({ HOME: tmp.dir, VAULTIK_PRIVATE_KEY: keyFile });

beforeAll(async () => {
  ensureBuilt();
  mkdirSync(store);
  // `d`: a directory whose entries are all created in restore's first pass (subdirectories,
  // empty files, symlinks), many of them, plus one file with content; `e`: a directory; `f`: a file.
  mkdirSync(join(src, 'd'), { recursive: true });
  for (let i = 0; i < 40; i++) {
    mkdirSync(join(src, 'd', `sub${i}`));
    writeFileSync(join(src, 'd', `empty${i}`), '');
    symlinkSync(`target${i}`, join(src, 'd', `link${i}`));
  }
  writeFileSync(join(src, 'd', 'victim'), 'from the snapshot\n');
  mkdirSync(join(src, 'e'));
  writeFileSync(join(src, 'e', 'inner'), 'inner\n');
  writeFileSync(join(src, 'f'), 'file f\n');
  const config = writeBackupConfig(join(tmp.dir, 'backup.yaml'), { src, store, recipient: key.recipient, indexPath: join(tmp.dir, 'state.sqlite') });
  const b = await runCli(['backup', config], cleanEnv({ HOME: tmp.dir }));
  expect(b.code, b.stderr).toBe(0);
}, 120_000);

/** A target holding the snapshot's paths with d → outside/dir, f → outside/file, e a file. */
function plantedTarget(name: string): { target: string; outside: string; restored: string } {
  const target = join(tmp.dir, name);
  const outside = join(tmp.dir, `${name}-outside`);
  mkdirSync(join(outside, 'dir'), { recursive: true });
  writeFileSync(join(outside, 'dir', 'victim'), 'outside, must stay\n');
  writeFileSync(join(outside, 'file'), 'outside file, must stay\n');
  const restored = join(target, src);
  mkdirSync(restored, { recursive: true });
  symlinkSync(join(outside, 'dir'), join(restored, 'd'));
  symlinkSync(join(outside, 'file'), join(restored, 'f'));
  writeFileSync(join(restored, 'e'), 'a file where the snapshot has a directory\n');
  return { target, outside, restored };
}

function expectOutsideUntouched(outside: string): void {
  expect(readdirSync(join(outside, 'dir'))).toEqual(['victim']);
  expect(readFileSync(join(outside, 'dir', 'victim'), 'utf8')).toBe('outside, must stay\n');
  expect(readFileSync(join(outside, 'file'), 'utf8')).toBe('outside file, must stay\n');
}

describe('restore over names in the way (issue 16 item 12)', () => {
  it('--overwrite replaces a symlinked directory, a symlinked file and a file in place of a directory, in one run', async () => {
    const { target, outside, restored } = plantedTarget('overwrite');
    const r = await runCli(['restore', url, 'pc', 'latest', target, '--overwrite', '--json'], env);
    expect(r.stderr).not.toMatch(/unsafe path/);
    expect(r.code, r.stdout + r.stderr).toBe(ExitCode.OK);
    expectOutsideUntouched(outside);
    expect(lstatSync(join(restored, 'd')).isDirectory()).toBe(true);
    expect(readFileSync(join(restored, 'd', 'victim'), 'utf8')).toBe('from the snapshot\n');
    expect(readdirSync(join(restored, 'd')).length).toBe(121);
    expect(lstatSync(join(restored, 'd', 'sub39')).isDirectory()).toBe(true);
    expect(lstatSync(join(restored, 'd', 'link39')).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(restored, 'f')).isFile()).toBe(true);
    expect(readFileSync(join(restored, 'f'), 'utf8')).toBe('file f\n');
    expect(lstatSync(join(restored, 'e')).isDirectory()).toBe(true);
    expect(readFileSync(join(restored, 'e', 'inner'), 'utf8')).toBe('inner\n');
    // A second run finds everything up to date.
    const again = await runCli(['restore', url, 'pc', 'latest', target, '--overwrite'], env);
    expect(again.code, again.stderr).toBe(ExitCode.OK);
  });

  it('without --overwrite the target is refused as a local problem (exit 2), nothing written through the link', async () => {
    const { target, outside, restored } = plantedTarget('no-overwrite');
    const r = await runCli(['restore', url, 'pc', 'latest', target], env);
    expect(r.code, r.stderr).toBe(ExitCode.USAGE);
    expect(r.stderr).toMatch(/is not empty; use --overwrite/);
    expect(r.stderr).not.toMatch(/unsafe path in snapshot|in the store/);
    expectOutsideUntouched(outside);
    expect(lstatSync(join(restored, 'd')).isSymbolicLink()).toBe(true);
    // fetch of d into the directory holding the link: its destination exists, refused the same way.
    const f = await runCli(['fetch', url, 'pc', 'latest', `${src}/d`, `${restored}/`], env);
    expect(f.code, f.stderr).toBe(ExitCode.USAGE);
    expectOutsideUntouched(outside);
  });

  it('entries the target cannot take (a read-only directory) fail as a local problem: exit 1, not 5, each marked local', async () => {
    // As root, run as nobody (root writes into any directory); otherwise the mode keeps this user out.
    const isRoot = process.getuid?.() === 0;
    const ids = isRoot ? { uid: 65534, gid: 65534 } : {};
    const probe = spawnSync(process.execPath, ['--version'], ids);
    expect(probe.error?.message, `${process.execPath} must be executable by uid 65534 for this test`).toBeUndefined();
    const target = join(tmp.dir, 'read-only');
    const restored = join(target, src);
    mkdirSync(join(restored, 'd'), { recursive: true });
    const home = join(tmp.dir, 'nobody-home');
    mkdirSync(home);
    if (isRoot) {
      spawnSync('chown', ['-R', '65534:65534', target, home]);
      chownSync(keyFile, 65534, 65534);
      spawnSync('chmod', ['-R', 'a+rX', store, tmp.dir]);
    }
    chmodSync(join(restored, 'd'), 0o555);
    const env = { PATH: process.env.PATH, HOME: home, TMPDIR: home, VAULTIK_PRIVATE_KEY: keyFile };
    const { code, stdout, stderr } = await startNode([MAIN, 'restore', url, 'pc', 'latest', target, '--overwrite', '--json'], env, ids).done;
    const lines = jsonLines(stdout) as { type: string; local?: boolean; message?: string }[];
    const failed = lines.filter((l) => l.type === 'failed');
    expect(failed.length, stderr).toBe(121); // everything directly under d
    expect(failed.every((f) => f.local === true && /permission denied/i.test(f.message ?? ''))).toBe(true);
    const summary = lines.find((l) => l.type === 'summary')!;
    expect(summary).toMatchObject({ failed: 121, failedLocal: 121, exitCode: ExitCode.FAILURE });
    expect(code, stderr).toBe(ExitCode.FAILURE);
    // What the target could take is restored.
    expect(readFileSync(join(restored, 'f'), 'utf8')).toBe('file f\n');
    expect(readFileSync(join(restored, 'e', 'inner'), 'utf8')).toBe('inner\n');
  });
});
