/**
 * Test kit for backup: a temp workspace (source tree, local store, state cache, config file), a
 * test key pair (the *test* may hold the private key to verify; the backup never sees it), store
 * inspection, and metadata decryption with the standard `age`, `zstd` and `sqlite3` tools.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '../../src/config/index.js';
import { generateKeyPair } from '../../src/crypto/index.js';
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
 * Decrypts a metadata object (`<id>.db.zst.age`) with the `age` and `zstd` CLIs and returns the
 * path of the SQLite file. The identity is written to a private temp file only for this call
 * and removed afterwards: no key file exists while a backup runs.
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

/** Runs a query with the sqlite3 CLI; rows as arrays of strings (| separated, hex for BLOBs when asked). */
export function sqlite(db: string, sql: string): string[][] {
  const out = runTool('sqlite3', ['-readonly', db, sql]).toString('utf8');
  return out
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.split('|'));
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}
