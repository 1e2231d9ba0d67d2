/**
 * Hostile snapshot metadata and a hostile target: whoever holds the public key can write a
 * metadata DB, so entries with '../' or absolute paths, a NUL, or an entry under a restored
 * symlink must never put a byte outside the target (the DB is refused as a whole, exit 5,
 * before the target is touched). A symlink planted in the target is replaced in overwrite mode,
 * never written through.
 */
import { describe, it, expect, afterAll } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { runRestore } from '../../src/restore/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { listSnapshots, readRoot, type ShardLimits } from '../../src/snapshot/index.js';
import { forgedStore, makeKey, snapPath } from './helpers.js';

const tmp = makeTempDir('vaultik-restore-hostile-');
afterAll(tmp.cleanup);
const key = makeKey();
let n = 0;

/** One entry per shard: whatever spans entries spans shards. */
const ONE_ENTRY_SHARDS: ShardLimits = { boundaryBits: 0, minEntries: 1, maxEntries: 1, maxBytes: 2 ** 40 };

/**
 * A source with one file and one directory; `tamper` rewrites each finished shard DB (one shard,
 * or one per entry with `perEntryShards`). `select` restores only that subtree (below the base).
 */
async function craft(
  tamper: (db: Database.Database, base: Buffer, outside: string) => void,
  options: { perEntryShards?: boolean; select?: string } = {},
): Promise<{ outside: string; target: string; error: unknown; shards?: number; entries?: number }> {
  const dir = join(tmp.dir, `case${n++}`);
  const outside = join(dir, 'outside');
  const { storage, target, src } = await forgedStore(
    dir,
    key,
    { 'sub/payload': 'evil bytes', 'ok.txt': 'fine' },
    (db, base) => tamper(db, base, outside),
    options.perEntryShards ? ONE_ENTRY_SHARDS : undefined,
  );
  const select = options.select ? { paths: [Buffer.concat([snapPath(src), Buffer.from(`/${options.select}`)])] } : undefined;
  const error = await runRestore({ storage, identities: key.identities, snapshotId: 'latest', target, ...(select ? { select } : {}) }).then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!options.perEntryShards) return { outside, target, error };
  const [listing] = await listSnapshots(storage, 'index/');
  const { info, shards } = await readRoot(storage, listing!, key.identities, dir);
  return { outside, target, error, shards: shards.length, entries: info.fileCount + info.dirCount + info.symlinkCount + info.otherCount };
}

/** Renames an entry (and its chunk list) to `to`. */
function rename(db: Database.Database, from: Buffer, to: Buffer): void {
  db.prepare('UPDATE entries SET path = ? WHERE path = ?').run(to, from);
  db.prepare('UPDATE file_chunks SET path = ? WHERE path = ?').run(to, from);
}

function expectRefused(r: { outside: string; target: string; error: unknown }, pattern: RegExp): void {
  expect(r.error).toBeInstanceOf(VaultikError);
  expect((r.error as VaultikError).exitCode).toBe(ExitCode.DATA);
  expect((r.error as Error).message).toMatch(pattern);
  expect(readdirSync(r.outside)).toEqual([]);
  expect(existsSync(r.target)).toBe(false);
}

describe('hostile metadata', () => {
  it("an entry with '..' components is refused", async () => {
    const r = await craft((db, base) => rename(db, Buffer.concat([base, Buffer.from('/sub/payload')]), Buffer.concat([base, Buffer.from('/../../outside/payload')])));
    expectRefused(r, /invalid metadata: '\.\.' path component/);
  });

  it('an absolute path is refused', async () => {
    const r = await craft((db, base) => rename(db, Buffer.concat([base, Buffer.from('/sub/payload')]), Buffer.from(join(tmp.dir, 'abs-payload'))));
    expectRefused(r, /invalid metadata: absolute path/);
    expect(existsSync(join(tmp.dir, 'abs-payload'))).toBe(false);
  });

  it('a NUL in a path is refused', async () => {
    const r = await craft((db, base) => rename(db, Buffer.concat([base, Buffer.from('/ok.txt')]), Buffer.concat([base, Buffer.from('/ok\0.txt')])));
    expectRefused(r, /invalid metadata: NUL byte/);
  });

  it('a symlink, then an entry under it, is refused', async () => {
    const r = await craft((db, base, outside) => {
      const dir = Buffer.concat([base, Buffer.from('/sub')]);
      // 'sub' becomes a symlink to the outside directory; 'sub/payload' stays a file under it.
      db.prepare("UPDATE entries SET type = 'symlink', target = ?, mode = 511 WHERE path = ?").run(Buffer.from(outside), dir);
    });
    expectRefused(r, /lies under symlink/);
  });

  // Each shard alone is valid here: only the reader's check across shards can refuse it.
  for (const select of [undefined, 'sub']) {
    it(`a symlink in one shard, an entry under it in the next, is refused (${select ? 'restoring the symlink\'s subtree' : 'whole snapshot'})`, async () => {
      const r = await craft(
        (db, base, outside) => {
          const dir = Buffer.concat([base, Buffer.from('/sub')]);
          db.prepare("UPDATE entries SET type = 'symlink', target = ?, mode = 511 WHERE path = ?").run(Buffer.from(outside), dir);
        },
        { perEntryShards: true, ...(select ? { select } : {}) },
      );
      expect(r.shards).toBe(r.entries);
      expectRefused(r, /invalid metadata: .*lies under symlink/);
    });
  }
});

describe('hostile target', () => {
  it('overwrite mode replaces a planted symlink instead of writing through it', async () => {
    const { src, outside, target, storage } = await forgedStore(join(tmp.dir, 'planted'), key, { 'sub/file': 'restored' });
    // The target already holds the source's path, with 'sub' swapped for a link to `outside`.
    mkdirSync(join(target, src), { recursive: true });
    symlinkSync(outside, join(target, src, 'sub'));
    const s = await runRestore({ storage, identities: key.identities, snapshotId: 'latest', target, overwrite: true });
    expect(s.failed).toBe(0);
    expect(readdirSync(outside)).toEqual([]);
    expect(lstatSync(join(target, src, 'sub')).isDirectory()).toBe(true);
    expect(readFileSync(join(target, src, 'sub', 'file'), 'utf8')).toBe('restored');
  });
});
