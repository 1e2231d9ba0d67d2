/**
 * scripts/recover-with-stock-tools.sh against a real store (local directory): files spread over
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
import { makeKey, snapshotTree, writeKeyFile, type SnapshotTreeResult } from './helpers.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/recover-with-stock-tools.sh', import.meta.url));
const tmp = makeTempDir('vaultik-recover-');
afterAll(tmp.cleanup);
const key = makeKey();
const keyFile = writeKeyFile(key, join(tmp.dir, 'key.txt'));
const src = join(tmp.dir, 'src data');
const store = join(tmp.dir, 'store');
let snap: SnapshotTreeResult;
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
  const storage = openStorage({ type: 'local', path: store, prefix: 'host1/' });
  await snapshotTree(storage, src, { recipients: key.recipients, tmp: tmp.dir, chunkSize: 64 * 1024, blobSizeLimit: 300 * 1024 });
  snap = await snapshotTree(storage, src, { recipients: key.recipients, tmp: tmp.dir, chunkSize: 64 * 1024, blobSizeLimit: 300 * 1024 });
}, 60_000);

function recover(path: string, snapshot = 'latest'): { code: number | null; stderr: string; out: string } {
  const out = join(tmp.dir, `out${n++}`);
  const r = spawnSync('bash', [SCRIPT, join(store, 'host1'), snapshot, keyFile, path, out], { encoding: 'utf8' });
  return { code: r.status, stderr: r.stderr, out };
}

describe('recover-with-stock-tools.sh', () => {
  it('recovers files byte for byte, with mode and mtime', () => {
    expect(snap.blobs.length).toBeGreaterThan(2);
    for (const rel of ['big.bin', 'sub/big plus.bin', 'text.txt', 'empty', 'sub/z-link', 'a-first']) {
      const r = recover(join(src, rel));
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(r.out).equals(readFileSync(join(src, rel))), rel).toBe(true);
      const [a, b] = [statSync(r.out), statSync(join(src, rel))];
      expect(a.mode).toBe(b.mode);
      expect(a.mtimeMs).toBe(b.mtimeMs);
    }
    expect(recover(join(src, 'text.txt'), snap.id).code).toBe(0);
  });

  it('refuses a directory, a missing path, and a corrupted blob', () => {
    expect(recover(join(src, 'sub')).stderr).toMatch(/is a dir/);
    expect(recover(join(src, 'nope')).stderr).toMatch(/is not in snapshot/);
    const blob = snap.chunksOf.get(join(src, 'text.txt').slice(1))![0]!.blob;
    const fd = openSync(join(store, 'host1', 'blobs', blob.slice(0, 2), blob.slice(2, 4), blob), 'r+');
    writeSync(fd, Buffer.from('X'), 0, 1, 500);
    closeSync(fd);
    const r = recover(join(src, 'text.txt'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/is corrupt/);
  });
});
