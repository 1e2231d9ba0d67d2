/**
 * Decrypted metadata (names in plaintext) must not outlive a process that is SIGKILLed while it
 * holds a snapshot open: a real child process opens one with TMPDIR set to a test directory, is
 * killed, and afterwards no file under that directory contains a name from the snapshot.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStorage } from '../../src/storage/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { cliNodeArgs, makeKey, snapshotTree } from '../restore/helpers.js';

const tmp = makeTempDir('vaultik-tempcleanup-');
afterAll(tmp.cleanup);
const key = makeKey();
const store = join(tmp.dir, 'store');
// A name that appears nowhere but in the snapshot's (decrypted) metadata.
const NAME = 'plaintext-marker-7f3a9c.txt';

beforeAll(async () => {
  const src = join(tmp.dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, NAME), 'x');
  mkdirSync(store, { recursive: true }); // vaultik never creates a store's root
  await snapshotTree(openStorage({ type: 'local', path: store, prefix: 'pc/' }), src, { recipients: key.recipients, tmp: tmp.dir, host: 'laptop' });
});

/** Every regular file under `dir` whose bytes contain `needle`. */
function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = join(e.parentPath, e.name);
    try {
      if (readFileSync(p).includes(needle)) hits.push(p);
    } catch {
      // removed while we looked: fine
    }
  }
  return hits;
}

describe('decrypted metadata and SIGKILL', () => {
  it('a SIGKILLed process holding a snapshot open leaves no plaintext name under its TMPDIR', async () => {
    const tmpDir = join(tmp.dir, 'child-tmp');
    mkdirSync(tmpDir);
    const child = spawn(process.execPath, [...cliNodeArgs(), new URL('./fixtures/holdOpen.ts', import.meta.url).pathname, store, 'pc/'], {
      env: { PATH: process.env.PATH, TMPDIR: tmpDir, VAULTIK_PRIVATE_KEY: key.identity },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    await new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (d: string) => d.includes('open ') && resolve());
      child.on('exit', () => reject(new Error(`child exited early: ${err}`)));
    });
    // The check can fail: while open, the plaintext is there.
    expect(filesContaining(tmpDir, NAME)).not.toEqual([]);
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    // Cleanup happens after the death (not in the dead process): allow it a few seconds.
    let left = filesContaining(tmpDir, NAME);
    for (let i = 0; i < 50 && left.length > 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = filesContaining(tmpDir, NAME);
    }
    expect(left).toEqual([]);
  });
});

describe('the backstop sweep', () => {
  it("deletes a dead process's metadata directory when a temp directory is first used, and keeps a live one's", async () => {
    const { makeMetadataDir } = await import('../../src/snapshot/tempDir.js');
    const { spawnSync } = await import('node:child_process');
    const tmpDir = join(tmp.dir, 'sweep-tmp');
    mkdirSync(tmpDir);
    // A pid that has certainly exited (pid reuse within this test is vanishingly unlikely).
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    const live = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      for (const pid of [dead, String(live.pid)]) {
        mkdirSync(join(tmpDir, `vaultik-snapshot-${pid}-abcdef`));
        writeFileSync(join(tmpDir, `vaultik-snapshot-${pid}-abcdef`, 'snapshot.db'), NAME);
      }
      const mine = await makeMetadataDir(tmpDir, 'snapshot');
      expect(readdirSync(tmpDir).sort()).toEqual([`vaultik-snapshot-${live.pid}-abcdef`, mine.slice(tmpDir.length + 1)].sort());
    } finally {
      live.kill('SIGKILL');
    }
  });
});
