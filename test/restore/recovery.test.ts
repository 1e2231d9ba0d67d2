/**
 * scripts/recover-with-stock-tools.sh against real backups (`vaultik backup`, local store) in
 * metadata format version 2: a tree cut into at least two shards; files spread over several
 * blobs, deduplicated chunks, an empty file, a name with spaces; hard links within one shard (the
 * follower has no chunks) and across shards (the first path of the group in each shard carries the
 * content). Two backups, the second with one file changed: 'latest', recovery from either
 * snapshot, the unchanged shard shared by both roots. Corrupted data and shard blobs, and a
 * version-1 root, are refused. Needs age, zstd and sqlite3 (CI installs them); the root and shard
 * DBs are read with them too, not with vaultik.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { linkSync, mkdirSync, readFileSync, statSync, writeFileSync, openSync, readSync, writeSync, closeSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openStorage } from '../../src/storage/index.js';
import { BOUNDARY_BITS, pathHash } from '../../src/snapshot/shardCut.js';
import { pseudoRandom } from '../helpers/tree.js';
import { makeTempDir } from '../helpers/tmp.js';
import { requireTool } from '../helpers/tools.js';
import { listSnapshots } from '../../src/snapshot/index.js';
import { cliBackup, makeKey, writeKeyFile } from './helpers.js';
import { localIndexFile } from '../helpers/snapshots.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/recover-with-stock-tools.sh', import.meta.url));
const tmp = makeTempDir('vaultik-recover-');
afterAll(tmp.cleanup);
const key = makeKey();
const keyFile = writeKeyFile(key, join(tmp.dir, 'key.txt'));
const src = join(tmp.dir, 'src data');
const store = join(tmp.dir, 'store');
// vaultik never creates the store directory itself.
mkdirSync(store);
const root = join(store, 'host1');
let firstId: string;
let latestId: string;
let n = 0;

/** Snapshot path (no leading '/') of a source file, as stored, in hex. */
const hexOf = (abs: string): string => Buffer.from(abs.slice(1)).toString('hex');
const rel = (abs: string): string => abs.slice(1);
const blobPath = (hash: string): string => join(root, 'blobs', hash.slice(0, 2), hash.slice(2, 4), hash);

/** age -d | zstd -d of a store object into a new file; returns its path. */
function decrypt(object: string): string {
  const out = join(tmp.dir, `db${n++}`);
  execFileSync('sh', ['-c', 'age -d -i "$1" "$2" | zstd -d -q > "$3"', 'sh', keyFile, object, out]);
  return out;
}

function sql(db: string, query: string): string[] {
  return execFileSync('sqlite3', ['-batch', '-noheader', '-separator', ' ', db, query], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l !== '');
}

/** The decrypted root of a snapshot. */
const rootDb = (id: string): string => decrypt(localIndexFile(root, id));

/** The shard (its blob hash) that holds a source path in a decrypted root. */
function shardOf(rootPath: string, abs: string): string {
  return sql(rootPath, `SELECT lower(hex(blob)) FROM shards WHERE first_path <= x'${hexOf(abs)}' ORDER BY first_path DESC LIMIT 1`)[0]!;
}

/**
 * A name in `dir` that sorts after `after` and whose snapshot path ends a shard by the shard
 * cut's path-hash rule (src/snapshot/shardCut.ts): with more than MIN_ENTRIES entries before it,
 * the shard that holds it ends there at the latest.
 */
const isBoundary = (abs: string): boolean => (pathHash(Buffer.from(rel(abs))) & ((1 << BOUNDARY_BITS) - 1)) === 0;
function boundaryName(dir: string, after: string): string {
  for (let k = 0; ; k++) if (isBoundary(join(dir, `${after}-${k}`))) return `${after}-${k}`;
}

/**
 * `name` or, when its path would end a shard, `name-k` (same order among these files): the hard
 * links below must share a shard with the next one, whatever the temp dir's name.
 */
function plainName(dir: string, name: string): string {
  if (!isBoundary(join(dir, name))) return name;
  for (let k = 0; ; k++) if (!isBoundary(join(dir, `${name}-${k}`))) return `${name}-${k}`;
}
const [aFirst, aLink] = [plainName(src, 'a-first'), plainName(src, 'a-link')];
const [zLink, zLink2] = [`sub/${plainName(join(src, 'sub'), 'z-link')}`, 'sub/z-link2'];

beforeAll(async () => {
  for (const t of ['age', 'zstd', 'sqlite3']) requireTool(t);
  mkdirSync(join(src, 'sub'), { recursive: true });
  const big = pseudoRandom(900_000, 3);
  writeFileSync(join(src, 'big.bin'), big);
  // Shares most chunks with big.bin (dedup: its chunks live in big.bin's blobs).
  writeFileSync(join(src, 'sub', 'big plus.bin'), Buffer.concat([big, Buffer.from('tail')]));
  writeFileSync(join(src, 'text.txt'), 'plain text\n'.repeat(1000));
  writeFileSync(join(src, 'empty'), '');
  writeFileSync(join(src, aFirst), 'hard-linked content');
  linkSync(join(src, aFirst), join(src, aLink));
  linkSync(join(src, aFirst), join(src, zLink));
  linkSync(join(src, aFirst), join(src, zLink2));
  utimesSync(join(src, 'text.txt'), 1_600_000_000.123456, 1_600_000_000.123456);
  // Twice 300 small files and a boundary path: the snapshot has at least three shards. A cut in
  // 'm' comes after 'a-*', 'big.bin' and 'empty', one in 'n' before 'sub/*', 'text.txt' and
  // 'zz-changed', and the shards between lie within 'm' and 'n': the second backup shares them.
  // The shard with the source's ancestors changes with every backup (their mtimes change as this
  // test writes to its temp dir).
  for (const d of ['m', 'n']) {
    mkdirSync(join(src, d));
    for (let i = 0; i < 300; i++) writeFileSync(join(src, d, `f${String(i).padStart(4, '0')}`), `small file ${d} ${i}\n`);
    writeFileSync(join(src, d, boundaryName(join(src, d), 'g')), 'ends a shard\n');
  }
  writeFileSync(join(src, 'zz-changed'), 'first version\n');
  // Two real backups; the second changes one file in place (its directory is unchanged).
  const opts = { src, storeYaml: `local: {path: ${JSON.stringify(store)}, prefix: host1}`, recipient: key.recipient, work: tmp.dir, blobSizeLimit: '300KiB' };
  expect((await cliBackup(opts)).code).toBe(0);
  writeFileSync(join(src, 'zz-changed'), 'second version, longer\n');
  expect((await cliBackup(opts)).code).toBe(0);
  const list = await listSnapshots(openStorage({ type: 'local', path: store, prefix: 'host1/' }), 'index/');
  expect(list).toHaveLength(2);
  [firstId, latestId] = [list[0]!.id, list[1]!.id];
}, 120_000);

function recover(path: string, snapshot = 'latest', storeDir = root): { code: number | null; stderr: string; out: string } {
  const out = join(tmp.dir, `out${n++}`);
  const r = spawnSync('bash', [SCRIPT, storeDir, snapshot, keyFile, path, out], { encoding: 'utf8' });
  return { code: r.status, stderr: r.stderr, out };
}

describe('recover-with-stock-tools.sh', () => {
  it('works on the layout it is meant for: two shards or more, hard links within and across them', () => {
    const r = rootDb(latestId);
    expect(sql(r, 'PRAGMA user_version')).toEqual(['2']);
    expect(Number(sql(r, 'SELECT shard_count FROM snapshot')[0])).toBeGreaterThanOrEqual(2);
    const first = shardOf(r, join(src, aFirst));
    expect(shardOf(r, join(src, aLink))).toBe(first);
    expect(shardOf(r, join(src, 'big.bin'))).toBe(first);
    const later = shardOf(r, join(src, zLink));
    expect(shardOf(r, join(src, zLink2))).toBe(later);
    expect(later).not.toBe(first);
    expect(shardOf(r, join(src, 'zz-changed'))).not.toBe(first);
    // Within each shard, the group's first path there carries the content; the others have none.
    const chunkRows = (shard: string, abs: string): number => Number(sql(decrypt(blobPath(shard)), `SELECT COUNT(*) FROM file_chunks WHERE path = x'${hexOf(abs)}'`)[0]);
    expect(chunkRows(first, join(src, aFirst))).toBeGreaterThan(0);
    expect(chunkRows(first, join(src, aLink))).toBe(0);
    expect(chunkRows(later, join(src, zLink))).toBeGreaterThan(0);
    expect(chunkRows(later, join(src, zLink2))).toBe(0);
  });

  it('recovers files byte for byte, with mode and mtime', () => {
    const r0 = recover(join(src, 'big.bin'));
    expect(r0.stderr).toContain(`snapshot ${latestId}`);
    for (const p of ['big.bin', 'sub/big plus.bin', 'text.txt', 'empty', aFirst, aLink, zLink, zLink2, 'm/f0123', 'zz-changed']) {
      const r = recover(join(src, p));
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(r.out).equals(readFileSync(join(src, p))), p).toBe(true);
      const [a, b] = [statSync(r.out), statSync(join(src, p))];
      expect(a.mode).toBe(b.mode);
      expect(a.mtimeMs).toBe(b.mtimeMs);
    }
    expect(recover(join(src, 'text.txt'), latestId).code).toBe(0);
  });

  it('recovers an unchanged file through a shard both snapshots share, and both versions of a changed one', () => {
    const [r1, r2] = [rootDb(firstId), rootDb(latestId)];
    const shards = (r: string): string[] => sql(r, 'SELECT lower(hex(blob)) FROM shards ORDER BY first_path');
    expect(shards(r1).length).toBeGreaterThanOrEqual(3);
    // An unchanged range is one shard object, listed by both roots; the changed one is not.
    const shared = shards(r1).filter((s) => shards(r2).includes(s));
    expect(shared.length).toBeGreaterThanOrEqual(1);
    expect(shardOf(r2, join(src, 'zz-changed'))).not.toBe(shardOf(r1, join(src, 'zz-changed')));
    const [unchanged] = sql(decrypt(blobPath(shared[0]!)), "SELECT path FROM entries WHERE type = 'file' AND size > 0 ORDER BY path LIMIT 1");
    expect(shardOf(r2, `/${unchanged!}`)).toBe(shared[0]);
    for (const id of [latestId, firstId]) {
      const r = recover(`/${unchanged!}`, id);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(r.out).equals(readFileSync(`/${unchanged!}`)), unchanged).toBe(true);
    }
    // The keyless manifest lists the data blobs (the shards' blobs tables) and the shards, with
    // their stored sizes; the snapshot row counts them apart.
    const manifest = JSON.parse(execFileSync('zstd', ['-d', '-q', '-c', localIndexFile(root, latestId, 'manifest')], { encoding: 'utf8' })) as { blobs: [string, number][] };
    const data = new Map<string, number>();
    for (const s of shards(r2)) for (const row of sql(decrypt(blobPath(s)), 'SELECT lower(hex(hash)), size FROM blobs')) data.set(row.split(' ')[0]!, Number(row.split(' ')[1]));
    const shardRows = sql(r2, 'SELECT lower(hex(blob)), size FROM shards').map((row) => [row.split(' ')[0]!, Number(row.split(' ')[1])] as [string, number]);
    for (const [h, size] of shardRows) expect(statSync(blobPath(h)).size).toBe(size);
    const all = [...data, ...shardRows].sort((x, y) => (x[0] < y[0] ? -1 : 1));
    expect(manifest.blobs).toEqual(all);
    const sum = (xs: Iterable<[string, number]>): number => [...xs].reduce((t, x) => t + x[1], 0);
    expect(sql(r2, 'SELECT blob_count, blob_bytes, shard_count, shard_bytes FROM snapshot')).toEqual([`${data.size} ${sum(data)} ${shardRows.length} ${sum(shardRows)}`]);

    for (const id of [latestId, firstId]) {
      const r = recover(join(src, 'big.bin'), id);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(r.out).equals(readFileSync(join(src, 'big.bin')))).toBe(true);
    }
    const old = recover(join(src, 'zz-changed'), firstId);
    expect(old.code, old.stderr).toBe(0);
    expect(readFileSync(old.out, 'utf8')).toBe('first version\n');
    const now = recover(join(src, 'zz-changed'), latestId);
    expect(readFileSync(now.out, 'utf8')).toBe('second version, longer\n');
  });

  it('refuses a version-1 root, naming the version', () => {
    const v1 = join(tmp.dir, 'v1store');
    mkdirSync(join(v1, 'index'), { recursive: true });
    const id = 'testhost-20261127T031500.123Z';
    execFileSync('sh', [
      '-c',
      'sqlite3 "$1/v1.db" "PRAGMA application_id = 1447777102; PRAGMA user_version = 1; CREATE TABLE snapshot (id TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;" && zstd -q -c "$1/v1.db" | age -r "$2" > "$1/v1.age" && h=$(sha256sum < "$1/v1.age" | cut -c1-64) && mv "$1/v1.age" "$1/index/$3.$h.db.zst.age"',
      'sh',
      v1,
      key.recipient,
      id,
    ]);
    const r = recover(join(src, 'text.txt'), id, v1);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/format version 1\b/);
  });

  it('refuses a directory, a missing path, a corrupted blob and a corrupted shard', () => {
    expect(recover(join(src, 'sub')).stderr).toMatch(/is a dir/);
    expect(recover(join(src, 'nope')).stderr).toMatch(/is not in snapshot/);
    expect(recover('/aaa-before-every-path').stderr).toMatch(/is not in snapshot/);
    const r2 = rootDb(latestId);
    const shard = shardOf(r2, join(src, 'text.txt'));
    const blob = sql(decrypt(blobPath(shard)), `SELECT lower(hex(c.blob)) FROM file_chunks f JOIN chunks c ON c.id = f.chunk WHERE f.path = x'${hexOf(join(src, 'text.txt'))}' ORDER BY f.seq LIMIT 1`)[0]!;
    // Flips every bit of the byte in the middle of a stored object.
    const corrupt = (file: string): void => {
      const at = Math.floor(statSync(file).size / 2);
      const fd = openSync(file, 'r+');
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, at);
      writeSync(fd, Buffer.from([b[0]! ^ 0xff]), 0, 1, at);
      closeSync(fd);
    };
    corrupt(blobPath(blob));
    const r = recover(join(src, 'text.txt'));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/blob [0-9a-f]{64} is corrupt/);
    corrupt(blobPath(shard));
    const s = recover(join(src, 'text.txt'));
    expect(s.code).not.toBe(0);
    expect(s.stderr).toContain(`shard ${shard} is corrupt`);
  });
});
