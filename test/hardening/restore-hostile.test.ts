/**
 * Hostile metadata and a hostile target beyond test/restore/hostile.test.ts (issue 9):
 *   - huge declared sizes (a file of 2^50 bytes, a chunk that claims 2^40 plaintext bytes),
 *   - chunk lists pointing past the end of their blob (offset or length),
 *   - a symlink swapped in and out of the target by a concurrent process during the restore.
 * Each: a clean VaultikError or per-file failures, bounded time and memory, and not one byte
 * outside the target.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VaultikError } from '../../src/errors.js';
import { runRestore } from '../../src/restore/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { pseudoRandom } from '../helpers/tree.js';
import { forgedStore, makeKey } from '../restore/helpers.js';

const tmp = makeTempDir('vaultik-hardening-hostile-');
afterAll(tmp.cleanup);
const key = makeKey();
let n = 0;

/** A source with a few files; `tamper` edits the finished DB; restores and reports. */
async function craft(tamper: (db: Database.Database, base: Buffer) => void): Promise<{ outside: string; error: unknown; failed?: number; ms: number; rssGrowth: number }> {
  const dir = join(tmp.dir, `case${n++}`);
  const { outside, target, storage } = await forgedStore(dir, key, { 'a.bin': pseudoRandom(100 * 1024, 1), 'b.txt': 'small' }, tamper);
  const rss = process.memoryUsage().rss;
  const t0 = Date.now();
  let failed: number | undefined;
  const error = await runRestore({ storage, identities: key.identities, snapshotId: 'latest', target, tmpDir: dir }).then(
    (s) => {
      failed = s.failed;
      return undefined;
    },
    (e: unknown) => e,
  );
  await storage.close();
  return { outside, error, failed, ms: Date.now() - t0, rssGrowth: process.memoryUsage().rss - rss };
}

function expectClean(r: Awaited<ReturnType<typeof craft>>): void {
  // Either refused as a whole (VaultikError) or the bad file failed alone.
  if (r.error !== undefined) expect(r.error, String(r.error)).toBeInstanceOf(VaultikError);
  else expect(r.failed).toBeGreaterThan(0);
  expect(readdirSync(r.outside)).toEqual([]);
  expect(r.ms).toBeLessThan(20_000);
  expect(r.rssGrowth).toBeLessThan(512 * 1024 * 1024);
}

const fileA = (base: Buffer): Buffer => Buffer.concat([base, Buffer.from('/a.bin')]);

describe('hostile metadata: sizes and chunk bounds', () => {
  it('a file that declares 2^50 bytes', async () => {
    expectClean(await craft((db, base) => db.prepare('UPDATE entries SET size = ? WHERE path = ?').run(2 ** 50, fileA(base))));
  });

  it('a chunk that claims 2^40 plaintext bytes (file size to match)', async () => {
    expectClean(
      await craft((db, base) => {
        // The file's last chunk, so the other chunks' file offsets stay consistent.
        const row = db.prepare('SELECT chunk FROM file_chunks WHERE path = ? ORDER BY seq DESC LIMIT 1').get(fileA(base)) as { chunk: Buffer };
        const plain = db.prepare('SELECT plain_length FROM chunks WHERE id = ?').get(row.chunk) as { plain_length: number };
        db.prepare('UPDATE chunks SET plain_length = ? WHERE id = ?').run(2 ** 40, row.chunk);
        db.prepare('UPDATE entries SET size = size - ? + ? WHERE path = ?').run(plain.plain_length, 2 ** 40, fileA(base));
      }),
    );
  });

  for (const [label, sql] of [
    ['offset past the blob end', 'UPDATE chunks SET offset = offset + 10000000'],
    ['length past the blob end', 'UPDATE chunks SET length = length + 10000000'],
    ['a 2^40-byte frame', 'UPDATE chunks SET length = 1099511627776'],
    ['a negative offset', 'UPDATE chunks SET offset = -1'],
  ] as const) {
    it(`a chunk list pointing past its blob: ${label}`, async () => {
      expectClean(await craft((db) => db.prepare(sql).run()));
    });
  }
});

describe('hostile target: symlink swapped in during the restore', () => {
  it('a concurrent process swaps a directory for a symlink to outside: nothing lands outside', async () => {
    const dir = join(tmp.dir, 'race');
    const files = Object.fromEntries(Array.from({ length: 1500 }, (_, i) => [`sub/f${i}`, `file ${i}\n`]));
    const { src, outside, target, storage } = await forgedStore(dir, key, files);
    const victim = join(target, src, 'sub');
    // Renames the directory away, plants a symlink to `outside` in its place, and back, as fast
    // as it can, until killed.
    const racer = spawn('bash', [
      '-c',
      `while true; do mv -T "${victim}" "${victim}.away" 2>/dev/null && { ln -s "${outside}" "${victim}" && printf s; rm -f "${victim}"; mv -T "${victim}.away" "${victim}" 2>/dev/null; }; done`,
    ]);
    let swaps = 0;
    let planted = 0;
    racer.stdout.on('data', (d: Buffer) => (planted += d.length));
    try {
      for (let round = 0; round < 3; round++) {
        void round;
        const result = await runRestore({ storage, identities: key.identities, snapshotId: 'latest', target, overwrite: true, tmpDir: dir }).then(
          (s) => s.failed,
          (e: unknown) => {
            expect(e).toBeInstanceOf(VaultikError);
            return -1;
          },
        );
        swaps += result === 0 ? 0 : 1;
        expect(readdirSync(outside)).toEqual([]);
      }
    } finally {
      racer.kill('SIGKILL');
      await storage.close();
    }
    expect(readdirSync(outside)).toEqual([]);
    console.log(`[hardening] symlink swap race: 3 restores, ${planted} symlinks planted by the racer, ${swaps} restores saw failures, nothing written outside`);
    expect(planted).toBeGreaterThan(0);
  }, 60_000);
});
