/**
 * Test kit for backup: a temp workspace (source tree, local store, state cache, config file), a
 * test key pair (the *test* may hold the private key to verify; the backup never sees it), store
 * inspection, and metadata decryption with the standard `age`, `zstd` and `sqlite3` tools.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runBackup, type BackupDeps, type BackupEvent, type BackupSummary } from '../../src/backup/index.js';
import { loadConfig, type Config } from '../../src/config/index.js';
import { generateKeyPair } from '../../src/crypto/index.js';
import { openStorage } from '../../src/storage/index.js';
import { runTool } from '../helpers/tools.js';

export interface Workspace {
  root: string;
  src: string;
  store: string;
  cacheDir: string;
  indexPath: string;
  configPath: string;
  /** The private key, in memory only: written to disk by decryptMetadata, after the backups. */
  identity: string;
  recipient: string;
  /** Rewrites the config file (extra YAML lines appended) and returns the loaded config. */
  writeConfig(extra?: string, storeYaml?: string): Config;
  config(): Config;
  cleanup(): void;
}

/** A fresh workspace. The identity file lives outside every path the backup touches. */
export function makeWorkspace(options: { chunkSize?: string; blobSizeLimit?: string } = {}): Workspace {
  const root = mkdtempSync(join(tmpdir(), 'vaultik-backup-'));
  const src = join(root, 'src');
  const store = join(root, 'store');
  const cacheDir = join(root, 'cache');
  for (const d of [src, store, cacheDir]) mkdirSync(d);
  const { identity, recipient } = generateKeyPair();
  const indexPath = join(cacheDir, 'index.sqlite');
  const configPath = join(root, 'vaultik.yaml');
  const ws: Workspace = {
    root,
    src,
    store,
    cacheDir,
    indexPath,
    configPath,
    identity,
    recipient,
    writeConfig(extra = '', storeYaml = `local: {path: ${store}}`) {
      writeFileSync(
        configPath,
        [
          `source_dirs: [${src}]`,
          `age_recipient: ${recipient}`,
          storeYaml,
          `index_path: ${indexPath}`,
          `chunk_size: ${options.chunkSize ?? '64KiB'}`,
          `blob_size_limit: ${options.blobSizeLimit ?? '4MiB'}`,
          'hostname: testhost',
          extra,
        ].join('\n') + '\n',
      );
      return loadConfig(configPath);
    },
    config: () => loadConfig(configPath),
    cleanup: () => {
      try {
        execFileSync('chmod', ['-R', 'u+rwX', root]);
      } catch {
        // best effort
      }
      rmSync(root, { recursive: true, force: true });
    },
  };
  ws.writeConfig();
  return ws;
}

/** Every regular file under `dir`, as paths relative to it. */
export function listFiles(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, rel))) {
    const r = rel === '' ? name : `${rel}/${name}`;
    const st = statSync(join(dir, r));
    if (st.isDirectory()) out.push(...listFiles(dir, r));
    else out.push(r);
  }
  return out.sort();
}

/** Object keys and sizes of a local store. */
export function storeObjects(store: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const key of listFiles(store)) m.set(key, statSync(join(store, key)).size);
  return m;
}

/**
 * Decrypts a metadata object (a snapshot root `<id>.db.zst.age`, or a shard blob) with the `age`
 * and `zstd` CLIs and returns the path of the SQLite file. The identity is written to a private
 * temp file only for this call and removed afterwards: no key file exists while a backup runs.
 */
export function decryptMetadata(objectPath: string, identity: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'vaultik-verify-'));
  const keyFile = join(dir, 'key.txt');
  writeFileSync(keyFile, identity + '\n', { mode: 0o600 });
  try {
    const plain = runTool('age', ['-d', '-i', keyFile, objectPath]);
    const db = join(dir, 'snapshot.db');
    writeFileSync(db, runTool('zstd', ['-d', '-c'], plain));
    return db;
  } finally {
    rmSync(keyFile, { force: true });
  }
}

/** A snapshot's metadata decrypted with the `age`, `zstd` and `sqlite3` CLIs (decryptSnapshot). */
export interface DecryptedSnapshot {
  /** The root DB: tables `snapshot` and `shards`. */
  root: string;
  /** Each shard DB (entries, file_chunks, chunks, blobs), in path order. */
  shards: string[];
  /** The shards' blob hashes (hex), in path order. */
  shardBlobs: string[];
  /**
   * One DB for queries over the whole snapshot, built by the sqlite3 CLI: the root's tables and
   * every shard's rows (entries and file_chunks as they are; a chunk or blob listed by several
   * shards once).
   */
  db: string;
}

/**
 * Decrypts a snapshot with the stock CLIs, as a user without vaultik would: the root
 * (`index/<id>.db.zst.age` at `rootPath`), then each shard its `shards` table lists, stored as
 * the blob `blobs/<h0h1>/<h2h3>/<hash>` (`objectPath` maps that key to a file).
 */
export function decryptSnapshot(rootPath: string, objectPath: (key: string) => string, identity: string): DecryptedSnapshot {
  const root = decryptMetadata(rootPath, identity);
  const shardBlobs = sqlite(root, 'SELECT lower(hex(blob)) FROM shards ORDER BY first_path').map((r) => r[0]!);
  const shards = shardBlobs.map((h) => decryptMetadata(objectPath(`blobs/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`), identity));
  const db = join(mkdtempSync(join(tmpdir(), 'vaultik-verify-')), 'snapshot.db');
  sqlite(db, `ATTACH '${root}' AS r; CREATE TABLE snapshot AS SELECT * FROM r.snapshot; CREATE TABLE shards AS SELECT * FROM r.shards;`, { write: true });
  shards.forEach((shard, i) => {
    const create = i === 0 ? ['entries', 'file_chunks', 'chunks', 'blobs'].map((t) => `CREATE TABLE ${t} AS SELECT * FROM s.${t} WHERE 0;`).join(' ') : '';
    sqlite(
      db,
      `ATTACH '${shard}' AS s; ${create}
       INSERT INTO entries SELECT * FROM s.entries; INSERT INTO file_chunks SELECT * FROM s.file_chunks;
       INSERT INTO chunks SELECT * FROM s.chunks WHERE id NOT IN (SELECT id FROM chunks);
       INSERT INTO blobs SELECT * FROM s.blobs WHERE hash NOT IN (SELECT hash FROM blobs);`,
      { write: true },
    );
  });
  return { root, shards, shardBlobs, db };
}

/**
 * Runs a query with the sqlite3 CLI (read-only unless `write`); rows as arrays of strings (|
 * separated, hex for BLOBs when asked).
 */
export function sqlite(db: string, sql: string, options: { write?: boolean } = {}): string[][] {
  const out = runTool('sqlite3', [...(options.write ? [] : ['-readonly']), db, sql]).toString('utf8');
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('|'));
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}

/**
 * runBackup in process to `config`'s store (opened and closed here) with 2 workers and no
 * progress events; resolves to the summary and every event it emitted (also passed to
 * `deps.onEvent` as they come).
 */
export async function backupWithEvents(config: Config, deps: Omit<BackupDeps, 'storage'> = {}): Promise<{ summary: BackupSummary; events: BackupEvent[] }> {
  const events: BackupEvent[] = [];
  const storage = openStorage(config.storage);
  try {
    const summary = await runBackup(config, {
      storage,
      workers: 2,
      progressIntervalMs: 0,
      ...deps,
      onEvent: (e) => {
        events.push(e);
        deps.onEvent?.(e);
      },
    });
    return { summary, events };
  } finally {
    await storage.close();
  }
}
