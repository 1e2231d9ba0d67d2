/**
 * Finding a snapshot's objects in a store by its id, for tests (index objects are named by
 * their content hash, so a test that knows only the id looks them up in the listing).
 */
import { createHash } from 'node:crypto';
import { readdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { listSnapshots, manifestKey, metadataKey, parseIndexName, type IndexObjectKind, type SnapshotListing } from '../../src/snapshot/index.js';
import { LocalStorage, type Storage } from '../../src/storage/index.js';

/** The listing of snapshot `id`; fails the test when the store has no such snapshot. */
export async function listingOf(storage: Storage, indexPrefix: string, id: string): Promise<SnapshotListing> {
  const found = (await listSnapshots(storage, indexPrefix)).find((s) => s.id === id);
  if (!found) throw new Error(`test: no snapshot ${id} under ${indexPrefix}`);
  return found;
}

/**
 * Puts `bytes` as a root or manifest of snapshot `id`, named by their hash as vaultik names them
 * (what someone with write access to the store can do); returns the key.
 */
export async function putIndexObject(storage: Pick<Storage, 'put'>, kind: 'root' | 'manifest', indexPrefix: string, id: string, bytes: Buffer): Promise<string> {
  const hash = createHash('sha256').update(bytes).digest('hex');
  const key = kind === 'root' ? metadataKey(indexPrefix, id, hash) : manifestKey(indexPrefix, id, hash);
  await storage.put(key, bytes);
  return key;
}

/**
 * The key of snapshot `id`'s root (or manifest) among `keys`; fails the test unless exactly one
 * matches.
 */
export function findIndexKey(keys: Iterable<string>, indexPrefix: string, id: string, kind: IndexObjectKind = 'root'): string {
  const found = [...keys].filter((k) => {
    if (!k.startsWith(indexPrefix)) return false;
    const parsed = parseIndexName(k.slice(indexPrefix.length));
    return parsed?.id === id && parsed.kind === kind;
  });
  if (found.length !== 1) throw new Error(`test: ${found.length} ${kind} objects of ${id} under ${indexPrefix}`);
  return found[0]!;
}

/** The file of snapshot `id`'s root (or manifest) in a local store at `storeDir`, prefix 'index/'. */
export function localIndexFile(storeDir: string, id: string, kind: IndexObjectKind = 'root'): string {
  const names = readdirSync(join(storeDir, 'index')).map((n) => `index/${n}`);
  return join(storeDir, findIndexKey(names, 'index/', id, kind));
}

/**
 * Makes the store record `key` at `time`, as if it had been uploaded then (a test's snapshot at
 * a made-up time must look honest to the store-clock checks): the file's mtime in a local store,
 * lastModified in an in-memory one. S3 sets its own time: returns false there.
 */
export function setStoreTime(storage: object, key: string, time: Date): boolean {
  if (storage instanceof LocalStorage) {
    utimesSync(join(storage.root, ...key.split('/')), time, time);
    return true;
  }
  const objects = (storage as { objects?: unknown }).objects;
  const entry = objects instanceof Map ? (objects.get(key) as { lastModified?: Date } | undefined) : undefined;
  if (entry?.lastModified === undefined) return false;
  entry.lastModified = time;
  return true;
}
