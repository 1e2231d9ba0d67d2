/**
 * scripts/recover-with-stock-tools.sh against a real backup (`vaultik backup`, local store): files spread over
 * several blobs, deduplicated chunks, a hard link whose content lives under another name, an
 * empty file, a name with spaces; 'latest'; a corrupted blob is detected. Needs age, zstd and
 * sqlite3 (CI installs them).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, statSync, writeFileSync, openSync, writeSync, closeSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStorage } from '../../src/storage/index.js';
import { pseudoRandom } from '../helpers/tree.js';
import { makeTempDir } from '../helpers/tmp.js';
import { requireTool } from '../helpers/tools.js';
import { listSnapshots, openSnapshot } from '../../src/snapshot/index.js';
import type { Storage } from '../../src/storage/types.js';
import { cliBackup, makeKey, writeKeyFile } from './helpers.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/recover-with-stock-tools.sh', import.meta.url));
const tmp = makeTempDir('vaultik-recover-');
afterAll(tmp.cleanup);
const key = makeKey();
const keyFile = writeKeyFile(key, join(tmp.dir, 'key.txt'));
const src = join(tmp.dir, 'src data');
const store = join(tmp.dir, 'store');
let storage: Storage;
let latestId: string;
let n = 0;

beforeAll(async () => {
  for (const t of ['age', 'zstd', 'sqlite3']) requireTool(t);
  mkdirSync(join(src, 'sub'), { recursive: true });
  const big = pseudoRandom(900_000, 3);
  writeFileSync(join(src, 'big.bin'), big);
  // Shares most chunks with big.bin (dedup: its chunks live in big.bin's blobs).
  writeFileSync(join(src, 'sub', 'big plus.bin'), Buffer.concat([big, Buffer.from('tail')]));
  writeFileSync(join(src, 'text.txt'), 'plain text\n'.repeat(1000));
  writeFileSync(join(src, 'empty'), '');
  writeFileSync(join(src, 'a-first'), 'hard-linked content');
  linkSync(join(src, 'a-first'), join(src, 'sub', 'z-link'));
  utimesSync(join(src, 'text.txt'), 1_600_000_000.123456, 1_600_000_000.123456);
  // Two real backups (the second changes nothing): 'latest' must pick the second.
  const opts = { src, storeYaml: `local: {path: ${JSON.stringify(store)}, prefix: host1}`, recipient: key.recipient, work: tmp.dir, blobSizeLimit: '300KiB' };
  expect((await cliBackup(opts)).code).toBe(0);
  expect((await cliBackup(opts)).code).toBe(0);
  storage = openStorage({ type: 'local', path: store, prefix: 'host1/' });
  const list = await listSnapshots(storage, 'index/');
  expect(list).toHaveLength(2);
  latestId = list[1]!.id;
}, 60_000);

function recover(path: string, snapshot = 'latest'): { code: number | null; stderr: string; out: string } {
  const out = join(tmp.dir, `out${n++}`);
  const r = spawnSync('bash', [SCRIPT, join(store, 'host1'), snapshot, keyFile, path, out], { encoding: 'utf8' });
  return { code: r.status, stderr: r.stderr, out };
}

describe('recover-with-stock-tools.sh', () => {
  it('recovers files byte for byte, with mode and mtime', () => {
    const r0 = recover(join(src, 'big.bin'));
    expect(r0.stderr).toContain(`snapshot ${latestId}`);
    for (const rel of ['big.bin', 'sub/big plus.bin', 'text.txt', 'empty', 'sub/z-link', 'a-first']) {
      const r = recover(join(src, rel));
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(r.out).equals(readFileSync(join(src, rel))), rel).toBe(true);
      const [a, b] = [statSync(r.out), statSync(join(src, rel))];
      expect(a.mode).toBe(b.mode);
      expect(a.mtimeMs).toBe(b.mtimeMs);
    }
    expect(recover(join(src, 'text.txt'), latestId).code).toBe(0);
  });

  it('refuses a directory, a missing path, and a corrupted blob', async () => {
    expect(recover(join(src, 'sub')).stderr).toMatch(/is a dir/);
    expect(recover(join(src, 'nope')).stderr).toMatch(/is not in snapshot/);
    const reader = await openSnapshot(storage, 'index/', latestId, key.identities, tmp.dir);
    const blob = reader.fileChunks(Buffer.from(join(src, 'text.txt').slice(1)))[0]!.blob;
    reader.close();
    const fd = openSync(join(store, 'host1', 'blobs', blob.slice(0, 2), blob.slice(2, 4), blob), 'r+');
    writeSync(fd, Buffer.from('X'), 0, 1, 500);
    closeSync(fd);
    const r = recover(join(src, 'text.txt'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/is corrupt/);
  });
});
