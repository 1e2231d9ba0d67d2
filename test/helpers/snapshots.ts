/**
 * Finding a snapshot's objects in a store by its id, for tests (index objects are named by
 * their content hash, so a test that knows only the id looks them up in the listing).
 */
import { createHash } from 'node:crypto';
import { listSnapshots, manifestKey, metadataKey, type SnapshotListing } from '../../src/snapshot/index.js';
import type { Storage } from '../../src/storage/index.js';

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
