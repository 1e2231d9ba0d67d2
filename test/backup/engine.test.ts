/**
 * runBackup against the local store, in process: every entry type, verified with the standard
 * age/zstd/sqlite3 tools; incremental runs; dedup; no plaintext in the store; warnings; abort
 * and resume; the backup's own files left out.
 */
import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, closeSync, linkSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runBackup, type BackupEvent, type BackupSummary } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { StorageError, openStorage, type StoreWriter } from '../../src/storage/index.js';
import { parseIdentity } from '../../src/crypto/index.js';
import type { ShardLimits } from '../../src/snapshot/index.js';
import { runRestore } from '../../src/restore/index.js';
import { ODD_NAMES, buildRichTree, compareTrees, listTree, pseudoRandom } from '../helpers/tree.js';
import { runTool } from '../helpers/tools.js';
import { backupWithEvents, decryptSnapshot, makeWorkspace, sqlite, storeObjects, type DecryptedSnapshot, type Workspace } from './helpers.js';
import { findIndexKey, localIndexFile } from '../helpers/snapshots.js';

let ws: Workspace | undefined;
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

function backup(
  config: Config,
  extra: { signal?: AbortSignal; onEvent?: (e: BackupEvent) => void; shardLimits?: ShardLimits } = {},
): Promise<{ summary: BackupSummary; events: BackupEvent[] }> {
  return backupWithEvents(config, extra);
}

/** The snapshot path of an absolute path (no leading '/'). */
function snap(abs: string | Buffer): Buffer {
  const b = Buffer.from(abs);
  return b.subarray(1);
}

function metadataObjects(w: Workspace): string[] {
  return [...storeObjects(w.store).keys()].filter((k) => k.endsWith('.db.zst.age'));
}

/** Snapshot `id` of a local store, decrypted root and shards (age, zstd and sqlite3 CLIs). */
function decrypted(store: string, id: string, identity: string): DecryptedSnapshot {
  return decryptSnapshot(localIndexFile(store, id), (key) => join(store, key), identity);
}

describe('runBackup to a local store', () => {
  it('records every entry type; the age, zstd and sqlite3 CLIs list every path', async () => {
    ws = makeWorkspace();
    const tree = await buildRichTree(ws.src);
    const { summary } = await backup(ws.config());
    expect(summary.warnings).toBe(0);
    const metas = metadataObjects(ws);
    expect(metas).toEqual([findIndexKey(metas, 'index/', summary.snapshotId)]);
    // The root lists the shards; each is a blob in the store.
    const snapshot = decrypted(ws.store, summary.snapshotId, ws.identity);
    expect(snapshot.shards.length).toBeGreaterThanOrEqual(1);
    const db = snapshot.db;

    const rows = sqlite(db, 'SELECT hex(path), type, mode, size, hex(target), link_group, mtime_ns FROM entries');
    const byPath = new Map(rows.map((r) => [Buffer.from(r[0]!, 'hex').toString('latin1'), r]));
    const expected = listTree(ws.src).map((n) => Buffer.concat([snap(ws!.src), Buffer.from('/'), n.rel]));
    // The source dir and its ancestors are entries too.
    const parts = ws.src.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) expected.push(Buffer.from(parts.slice(0, i).join('/')));
    expect([...byPath.keys()].sort()).toEqual(expected.map((p) => p.toString('latin1')).sort());

    const row = (rel: string | Buffer): string[] => byPath.get(Buffer.concat([snap(ws!.src), Buffer.from('/'), Buffer.from(rel)]).toString('latin1'))!;
    expect(row('big.bin').slice(1, 4)).toEqual(['file', String(0o644), String(tree.bigSize)]);
    expect(row('empty-dir')[1]).toBe('dir');
    expect(row('sticky')[2]).toBe(String(0o1777));
    expect(row('setuid')[2]).toBe(String(0o4755));
    expect(row('links/rel').slice(1, 2)).toEqual(['symlink']);
    expect(Buffer.from(row('links/rel')[4]!, 'hex').toString()).toBe('../text.txt');
    expect(Buffer.from(row('links/dangling')[4]!, 'hex').toString()).toBe('nowhere/at/all');
    if (tree.hasFifo) expect(row('special/fifo')[1]).toBe('fifo');
    if (tree.hasSocket) expect(row('special/socket')[1]).toBe('socket');
    if (tree.hasDevice) expect(row('special/null')[1]).toBe('chardev');
    expect(row('text.txt')[6]).toBe('1234567890123456789');
    expect(row(Buffer.concat([Buffer.from('names/'), Buffer.from([0x66, 0xff, 0xfe])]))[1]).toBe('file');
    for (const name of ODD_NAMES) expect(row(`names/${name}`)[1]).toBe('file');

    // Hard links: one group; in each shard only its first path (in byte order) carries chunks,
    // and the group's first path does.
    const group = rows.filter((r) => r[5] !== '');
    expect(group).toHaveLength(3);
    expect(new Set(group.map((r) => r[5])).size).toBe(1);
    const carrierSql = 'SELECT DISTINCT hex(fc.path) FROM file_chunks fc JOIN entries e ON e.path = fc.path WHERE e.link_group IS NOT NULL';
    const firstSql = 'SELECT hex(MIN(path)) FROM entries WHERE link_group IS NOT NULL';
    for (const shard of snapshot.shards) {
      // A shard without a member of the group prints an empty row (which sqlite() drops).
      const first = sqlite(shard, firstSql)[0]?.[0] ?? '';
      expect(sqlite(shard, carrierSql)).toEqual(first === '' ? [] : [[first]]);
    }
    expect(sqlite(db, carrierSql)).toContainEqual([Buffer.concat([snap(ws.src), Buffer.from('/hard-other')]).toString('hex').toUpperCase()]);

    // Content: the file's chunks reassemble to the file (recovered with the CLI recipe in a
    // later test); here the chunk list covers the size exactly.
    const big = Buffer.concat([snap(ws.src), Buffer.from('/big.bin')]).toString('hex');
    const [[sum]] = sqlite(db, `SELECT SUM(c.plain_length) FROM file_chunks fc JOIN chunks c ON c.id = fc.chunk WHERE fc.path = x'${big}'`) as [[string]];
    expect(Number(sum)).toBe(tree.bigSize);
    const [[snapshotRow]] = sqlite(db, 'SELECT id || "," || warnings || "," || chunk_size FROM snapshot') as [[string]];
    expect(snapshotRow).toBe(`${summary.snapshotId},0,65536`);
  });

  it('a second run with no change opens no file and uploads only metadata', async () => {
    ws = makeWorkspace();
    await buildRichTree(ws.src);
    const config = ws.config();
    // Small shards, so that most of them hold only the source's entries.
    const shardLimits: ShardLimits = { boundaryBits: 2, minEntries: 8, maxEntries: 16, maxBytes: 2 ** 40 };
    const first = await backup(config, { shardLimits });
    const before = storeObjects(ws.store);
    const second = await backup(config, { shardLimits });
    const s = second.summary;
    expect(s.filesRead).toBe(0);
    expect(s.bytesRead).toBe(0);
    expect(s.filesUnchanged).toBe(first.summary.filesNew);
    expect(s.filesNew + s.filesChanged).toBe(0);
    expect(s.blobsUploaded).toBe(0);
    expect(s.bytesUploaded).toBe(0);
    expect(s.snapshotBlobs).toBe(first.summary.snapshotBlobs);
    const after = storeObjects(ws.store);
    const added = [...after.keys()].filter((k) => !before.has(k));
    const index = added.filter((k) => !k.startsWith('blobs/'));
    expect(index.sort()).toEqual([findIndexKey(index, 'index/', s.snapshotId), findIndexKey(index, 'index/', s.snapshotId, 'manifest')].sort());
    expect(second.events.filter((e) => e.type === 'blob')).toEqual([]);
    // The only blobs added are shards, and only those whose rows changed: none under the source.
    // The source's ancestors (/tmp…) are entries too, and other processes change their mtimes, so
    // the shard holding them may be new; every other shard is the first run's.
    const [one, two] = [first.summary.snapshotId, s.snapshotId].map((id) => decrypted(ws!.store, id, ws!.identity)) as [DecryptedSnapshot, DecryptedSnapshot];
    const rowsSql = 'SELECT hex(path), type, mode, uid, gid, mtime_ns, size, hex(target), rdev, link_group FROM entries';
    const oldRows = new Set(sqlite(one.db, rowsSql).map((r) => r.join('|')));
    const changed = sqlite(two.db, rowsSql).filter((r) => !oldRows.has(r.join('|')));
    for (const [hexPath] of changed) expect(ws.src.startsWith(`/${Buffer.from(hexPath!, 'hex').toString()}`), `changed: ${hexPath}`).toBe(true);
    const newShards = two.shardBlobs.filter((h) => !one.shardBlobs.includes(h));
    two.shardBlobs.forEach((h, i) => {
      const holdsChanged = sqlite(two.shards[i]!, rowsSql).some((r) => changed.some((c) => c.join('|') === r.join('|')));
      expect(newShards.includes(h), `shard ${i}`).toBe(holdsChanged);
    });
    expect(added.filter((k) => k.startsWith('blobs/')).sort()).toEqual(newShards.map((h) => `blobs/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`).sort());
    expect(s.shardsWritten).toBe(newShards.length);
    expect(s.shardsReused).toBe(two.shardBlobs.length - newShards.length);
    // The ancestors come first, all in the first shard: every other shard was reused.
    expect(two.shardBlobs.length).toBeGreaterThan(3);
    expect(newShards.filter((h) => h !== two.shardBlobs[0])).toEqual([]);
    // The state cache was not rewritten for unchanged files: every row is still the first run's.
    expect(sqlite(ws.indexPath, 'SELECT run, COUNT(*) FROM files GROUP BY run')).toEqual([[first.summary.snapshotId, String(first.summary.filesNew)]]);
  });

  it('restores (src/restore) each snapshot of an incremental series exactly', async () => {
    ws = makeWorkspace({ blobSizeLimit: '1MiB' });
    await buildRichTree(ws.src, { bigSize: 2 * 1024 * 1024 + 7 });
    const config = ws.config();
    const first = await backup(config);
    const copy = join(ws.root, 'copy-1');
    execFileSync('cp', ['-a', ws.src, copy]);
    // Changes: append, rewrite, delete, add, chmod, replace a file by a symlink.
    appendFileSync(join(ws.src, 'big.bin'), pseudoRandom(100_000, 77));
    writeFileSync(join(ws.src, 'text.txt'), 'rewritten\n');
    rmSync(join(ws.src, 'a.b'));
    writeFileSync(join(ws.src, 'new.bin'), pseudoRandom(300_000, 78));
    chmodSync(join(ws.src, 'exec.sh'), 0o700);
    rmSync(join(ws.src, 'a0'));
    symlinkSync('text.txt', join(ws.src, 'a0'));
    const second = await backup(config);
    expect(second.summary.filesUnchanged).toBeGreaterThan(20);
    // The cache forgot the deleted file and the file replaced by a symlink, and keeps the rest.
    const cached = sqlite(ws.indexPath, 'SELECT hex(path) FROM files').map((r) => Buffer.from(r[0]!, 'hex').toString());
    expect(cached).toContain(join(ws.src, 'new.bin').slice(1));
    expect(cached).toContain(join(ws.src, 'exec.sh').slice(1));
    for (const gone of ['a.b', 'a0']) expect(cached).not.toContain(join(ws.src, gone).slice(1));
    const storage = openStorage(config.storage);
    const identities = [parseIdentity(ws.identity)];
    const ignore = (_rel: Buffer, type: string): boolean => type === 'socket';
    try {
      for (const [id, expected] of [[first.summary.snapshotId, copy], [second.summary.snapshotId, ws.src]] as const) {
        const target = join(ws.root, `restore-${id}`);
        await runRestore({ storage, identities, snapshotId: id, target, tmpDir: ws.root });
        const restoredSrc = join(target, ws.src);
        expect(compareTrees(expected, restoredSrc, { ignore }), id).toEqual([]);
      }
    } finally {
      await storage.close();
    }
  });

  it('one byte changed in a large file uploads about one chunk', async () => {
    ws = makeWorkspace({ blobSizeLimit: '64MiB' });
    const big = join(ws.src, 'big.bin');
    writeFileSync(big, pseudoRandom(16 * 1024 * 1024, 11));
    const config = ws.config();
    const first = await backup(config);
    expect(first.summary.bytesNew).toBe(16 * 1024 * 1024);
    const fd = openSync(big, 'r+');
    writeSync(fd, Buffer.from([0x55]), 0, 1, 9_000_000);
    closeSync(fd);
    const second = await backup(config);
    const s = second.summary;
    expect(s.filesChanged).toBe(1);
    expect(s.bytesRead).toBe(16 * 1024 * 1024);
    // One chunk is 16–256 KiB for a 64 KiB average; a change can touch at most two chunks.
    expect(s.bytesNew).toBeGreaterThan(0);
    expect(s.bytesNew).toBeLessThanOrEqual(2 * 256 * 1024);
    expect(s.bytesUploaded).toBeLessThan(2 * 256 * 1024 + 4096);
    expect(s.blobsUploaded).toBe(1);
  });

  it('deduplicates identical content across files, within one run', async () => {
    ws = makeWorkspace();
    const data = pseudoRandom(3 * 1024 * 1024, 5);
    writeFileSync(join(ws.src, 'a.bin'), data);
    writeFileSync(join(ws.src, 'b.bin'), data);
    mkdirSync(join(ws.src, 'small'));
    for (let i = 0; i < 50; i++) writeFileSync(join(ws.src, 'small', `s${i}`), 'same small content\n');
    const { summary } = await backup(ws.config());
    expect(summary.bytesRead).toBe(2 * data.length + 50 * 19);
    expect(summary.bytesNew).toBe(data.length + 19);
  });

  it('writes no plaintext to the store: no file name, no content, only hashes and snapshot ids as keys', async () => {
    ws = makeWorkspace();
    await buildRichTree(ws.src);
    const secret = 'VAULTIK-DISTINCTIVE-CONTENT-7f3a9c';
    writeFileSync(join(ws.src, 'secret-notes-file.txt'), `${secret}\n`.repeat(2000));
    writeFileSync(join(ws.src, 'tiny-secret.txt'), 'TINYSECRET42');
    const { summary } = await backup(ws.config());
    const needles = [secret, 'TINYSECRET42', 'secret-notes-file', 'tiny-secret', 'deep.txt', 'hello, vaultik', ws.src.slice(1), 'big.bin', ...ODD_NAMES.filter((n) => n.length > 5)];
    for (const [key, size] of storeObjects(ws.store)) {
      expect(key).toMatch(/^(blobs\/[0-9a-f]{2}\/[0-9a-f]{2}\/[0-9a-f]{64}|index\/testhost-[0-9TZ.]+\.[0-9a-f]{64}\.(db\.zst\.age|manifest\.json\.zst))$/);
      expect(size).toBeGreaterThan(0);
      const bytes = readFileSync(join(ws.store, key));
      const views: Buffer[] = [bytes];
      // The manifest is only compressed (keyless by design): look inside it too.
      if (key.endsWith('.manifest.json.zst')) views.push(decompress(bytes));
      for (const v of views) {
        for (const needle of needles) {
          expect(v.includes(Buffer.from(needle)), `${key} contains ${JSON.stringify(needle)}`).toBe(false);
          expect(v.includes(Buffer.from(needle, 'utf16le')), `${key} contains ${JSON.stringify(needle)} (UTF-16)`).toBe(false);
        }
      }
    }
    expect(summary.warnings).toBe(0);
  });

  // A file that changes while it is read: test/backup/changing.test.ts.

  it('stops cleanly when aborted: no snapshot; the next run reuses every uploaded blob', async () => {
    ws = makeWorkspace({ blobSizeLimit: '1MiB' });
    for (let i = 0; i < 8; i++) writeFileSync(join(ws.src, `f${i}.bin`), pseudoRandom(1024 * 1024, 100 + i));
    const config = ws.config();
    const controller = new AbortController();
    const uploaded: string[] = [];
    const err = await backup(config, {
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === 'blob') {
          uploaded.push(e.hash);
          if (uploaded.length === 3) controller.abort(new VaultikError('interrupted by SIGINT', ExitCode.INTERRUPTED));
        }
      },
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(VaultikError);
    expect((err as VaultikError).exitCode).toBe(ExitCode.INTERRUPTED);
    expect(metadataObjects(ws)).toEqual([]);
    const blobsAfterAbort = [...storeObjects(ws.store).keys()].filter((k) => k.startsWith('blobs/'));
    expect(blobsAfterAbort.length).toBeGreaterThanOrEqual(3);
    // No leftovers next to the cache (spool files, the half-built metadata DB).
    expect(listTree(ws.cacheDir).map((n) => n.rel.toString()).filter((n) => !n.startsWith('index.sqlite'))).toEqual([]);

    const { summary } = await backup(config);
    expect(summary.warnings).toBe(0);
    const { db, shardBlobs } = decrypted(ws.store, summary.snapshotId, ws.identity);
    const referenced = new Set([...sqlite(db, 'SELECT lower(hex(hash)) FROM blobs').map((r) => r[0]!), ...shardBlobs]);
    for (const key of blobsAfterAbort) expect(referenced.has(key.split('/')[3]!), `${key} reused`).toBe(true);
    // Only what had not been uploaded is uploaded again.
    expect(summary.bytesNew).toBeLessThanOrEqual(8 * 1024 * 1024 - uploaded.length * 700 * 1024);
  });

  it('a rejected blob upload fails the run with the store error: no snapshot; the next run completes', async () => {
    ws = makeWorkspace({ blobSizeLimit: '1MiB' });
    for (let i = 0; i < 8; i++) writeFileSync(join(ws.src, `f${i}.bin`), pseudoRandom(1024 * 1024, 200 + i));
    const config = ws.config();
    const storage = openStorage(config.storage);
    // The real store, but the third blob put is refused (a credential that lost its permission).
    let blobPuts = 0;
    const refused = new StorageError('access denied', 'permission', 'blobs/');
    const writer: StoreWriter = {
      description: storage.description,
      put: (key, body, options) => (key.startsWith('blobs/') && ++blobPuts === 3 ? Promise.reject(refused) : storage.put(key, body, options)),
    };
    try {
      await expect(runBackup(config, { storage: writer, workers: 2, progressIntervalMs: 0 })).rejects.toBe(refused);
    } finally {
      await storage.close();
    }
    expect(metadataObjects(ws)).toEqual([]);
    expect(listTree(ws.cacheDir).map((n) => n.rel.toString()).filter((n) => !n.startsWith('index.sqlite'))).toEqual([]);
    const { summary } = await backup(config);
    expect(summary.warnings).toBe(0);
    expect(metadataObjects(ws)).toHaveLength(1);
  });

  it('leaves the local store and the state cache out when they lie inside a source dir', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'data.txt'), 'data');
    const store = join(ws.src, 'backup-store');
    const cacheDir = join(ws.src, 'state');
    mkdirSync(store);
    mkdirSync(cacheDir);
    writeFileSync(join(cacheDir, 'unrelated.txt'), 'kept');
    const config = { ...ws.config(), storage: { type: 'local' as const, path: store, prefix: '' }, indexPath: join(cacheDir, 'idx.sqlite') };
    await backup(config);
    const { summary } = await backup(config);
    expect(summary.warnings).toBe(0);
    const { db } = decrypted(store, summary.snapshotId, ws.identity);
    const names = sqlite(db, 'SELECT CAST(path AS TEXT) FROM entries').map((r) => r[0]!.slice(ws!.src.length - 1));
    expect(names.filter((n) => n.startsWith('/')).sort()).toEqual(['/data.txt', '/state', '/state/unrelated.txt']);
  });

  it('refuses to write an empty snapshot when no source dir exists; one missing dir is a warning', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'a.txt'), 'a');
    const missing = join(ws.root, 'unmounted');
    const none = await backup({ ...ws.config(), sourceDirs: [missing] }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(String(none)).toContain(`none of the source directories can be backed up (${missing}: no such directory)`);
    expect(storeObjects(ws.store).size).toBe(0);
    const { summary, events } = await backup({ ...ws.config(), sourceDirs: [ws.src, missing] });
    expect(summary.warnings).toBe(1);
    expect(events.find((e) => e.type === 'warning')).toMatchObject({ kind: 'vanished' });
    expect(summary.files).toBe(1);
  });

  it('backs up several source dirs with per-source excludes and hard links between them', async () => {
    ws = makeWorkspace();
    const a = join(ws.src, 'a');
    const ab = join(ws.src, 'a-b');
    mkdirSync(join(a, 'cache'), { recursive: true });
    mkdirSync(join(ab, 'cache'), { recursive: true });
    writeFileSync(join(a, 'cache', 'x'), 'a cache');
    writeFileSync(join(ab, 'cache', 'x'), 'a-b cache');
    writeFileSync(join(a, 'keep.log'), 'log');
    writeFileSync(join(a, 'shared'), 'linked content');
    linkSync(join(a, 'shared'), join(ab, 'shared-link'));
    symlinkSync('shared', join(a, 'sym'));
    const base = ws.config();
    const config: Config = { ...base, sourceDirs: [a, ab], exclude: [`${a}/cache`, '*.log'] };
    const { summary } = await backup(config);
    expect(summary.warnings).toBe(0);
    const { db } = decrypted(ws.store, summary.snapshotId, ws.identity);
    const rows = sqlite(db, 'SELECT CAST(path AS TEXT), link_group FROM entries ORDER BY path').map((r) => [r[0]!.slice(ws!.src.length - 1), r[1]!]);
    const inside = rows.filter(([p]) => p!.startsWith('/'));
    // The two names of the inode share one group number (a stable id, not a counter).
    const group = inside.find(([p]) => p === '/a/shared')![1]!;
    expect(group).toMatch(/^\d+$/);
    expect(inside).toEqual([
      ['/a', ''],
      ['/a-b', ''],
      ['/a-b/cache', ''],
      ['/a-b/cache/x', ''],
      ['/a-b/shared-link', group],
      ['/a/shared', group],
      ['/a/sym', ''],
    ]);
    // The first path in byte order ('a-b/…' < 'a/…') carries the content.
    const carriers = sqlite(db, 'SELECT DISTINCT CAST(path AS TEXT) FROM file_chunks').map((r) => r[0]!.slice(ws!.src.length - 1));
    expect(carriers).toContain('/a-b/shared-link');
    expect(carriers).not.toContain('/a/shared');
    // Ancestors shared by both sources appear (once: paths are the table's primary key).
    const all = sqlite(db, 'SELECT CAST(path AS TEXT) FROM entries').map((r) => '/' + r[0]!);
    expect(all).toContain(ws.src);
    expect(all).toContain(ws.root);
  });
});

function decompress(b: Buffer): Buffer {
  return runTool('zstd', ['-d', '-c'], b);
}
