/**
 * A blob that decrypts fine but holds other content for a chunk id: what anyone with the public
 * key can write (here: the real blob, with the metadata claiming another id for one of its
 * chunks). Restore must refuse that file on both of its decode paths (ranges under 256 KiB on the
 * main thread, larger ones in the decode workers), write none of the wrong bytes, and restore
 * the rest; `verify --deep` must name the chunk. age authenticates the ciphertext, so only the
 * chunk's SHA-256 catches this.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type Database from 'better-sqlite3';
import { runRestore } from '../../src/restore/index.js';
import { verifyStore } from '../../src/verify/index.js';
import { pseudoRandom } from '../helpers/tree.js';
import { makeTempDir } from '../helpers/tmp.js';
import { forgedStore, makeKey } from './helpers.js';

const tmp = makeTempDir('vaultik-chunkids-');
afterAll(tmp.cleanup);
const key = makeKey();
let n = 0;

/**
 * Gives the first chunk of `file` (below the source) another id: its bytes no longer hash to it.
 * Called for every shard; a random temp path can be a shard boundary (1 in 1024), so the file
 * may be in another shard than the first: returns whether this shard held it.
 */
function misnameFirstChunk(db: Database.Database, base: Buffer, file: string): boolean {
  const path = Buffer.concat([base, Buffer.from(`/${file}`)]);
  const row = db.prepare('SELECT chunk FROM file_chunks WHERE path = ? ORDER BY seq LIMIT 1').get(path) as { chunk: Buffer } | undefined;
  if (!row) return false;
  const other = createHash('sha256').update('not what the blob holds').digest();
  db.prepare('UPDATE chunks SET id = ? WHERE id = ?').run(other, row.chunk);
  db.prepare('UPDATE file_chunks SET chunk = ? WHERE chunk = ?').run(other, row.chunk);
  return true;
}

describe.each([
  ['the main thread (a range under 256 KiB)', 40_000],
  ['the decode workers (a range over 256 KiB)', 3_000_000],
])('a chunk whose bytes do not hash to its id, decoded on %s', (_path, size) => {
  it('fails that file (nothing of it written), restores the rest, and verify --deep names the chunk', async () => {
    const dir = join(tmp.dir, `case${n++}`);
    const victim = pseudoRandom(size, 7 + n);
    let misnamed = 0;
    const { storage, target, src } = await forgedStore(dir, key, { 'victim.bin': victim, 'ok.txt': 'fine\n' }, (db, base) => {
      if (misnameFirstChunk(db, base, 'victim.bin')) misnamed++;
    });
    expect(misnamed).toBe(1);
    const summary = await runRestore({ storage, identities: key.identities, snapshotId: 'latest', target, tmpDir: dir });
    expect(summary.failed).toBe(1);
    expect(readFileSync(join(target, src, 'ok.txt'), 'utf8')).toBe('fine\n');
    expect(existsSync(join(target, src, 'victim.bin'))).toBe(false);
    const report = await verifyStore(storage, { indexPrefix: 'index/', deep: { identities: key.identities, tmpDir: dir } });
    expect(report.problems.map((p) => p.kind)).toEqual(['bad-chunk']);
    expect(report.problems[0]).toMatchObject({ message: expect.stringMatching(/SHA-256|chunk id|hash/i) as unknown });
    await storage.close();
  });
});
