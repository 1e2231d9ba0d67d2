/**
 * A FIFO where a blob should be (a damaged or tampered store) must not hang restore: opening a
 * FIFO for reading blocks until a writer comes, and no signal ends that wait.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/tmp.js';
import { listFiles } from '../backup/helpers.js';
import { localSnapshot, spawnCli } from './helpers.js';

const tmp = makeTempDir('vaultik-fifo-blob-');
afterAll(tmp.cleanup);

it('restore with a FIFO in place of a blob ends with exit 5 naming the blob', async () => {
  const { store, keyFile } = await localSnapshot(tmp.dir, (src) => writeFileSync(join(src, 'a.txt'), 'hello, fifo\n'.repeat(1000)));
  const blob = listFiles(join(store, 'pc')).find((f) => f.startsWith('blobs/'));
  expect(blob).toBeDefined();
  const blobPath = join(store, 'pc', blob!);
  unlinkSync(blobPath);
  execFileSync('mkfifo', [blobPath]);
  const child = spawnCli(['restore', `file://${store}`, 'pc', 'latest', join(tmp.dir, 'out')], { VAULTIK_PRIVATE_KEY: keyFile });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
  // A hung child is killed (SIGKILL: the hang ignores SIGTERM) so the test fails instead of hanging.
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  expect(signal, 'restore hung on the FIFO').toBeNull();
  expect(code, output).toBe(5);
  expect(output).toContain(blob!.split('/').at(-1)!);
}, 30_000);
