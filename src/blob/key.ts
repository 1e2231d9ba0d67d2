/** Where a blob lives in the store: named by the SHA-256 of its stored (encrypted) bytes. */
import { VaultikError, ExitCode } from '../errors.js';

const HASH = /^[0-9a-f]{64}$/;

/**
 * `blobs/<h0h1>/<h2h3>/<hash>` for a lower-case hex SHA-256.
 * @throws VaultikError (DATA) when `hash` is not 64 lower-case hex digits (it comes from metadata).
 */
export function blobKey(hash: string): string {
  if (!HASH.test(hash)) throw new VaultikError(`invalid blob hash "${hash}"`, ExitCode.DATA);
  return `blobs/${hash.slice(0, 2)}/${hash.slice(2, 4)}/${hash}`;
}

/**
 * The hash of a blob key, or null when `key` (relative to the prefix) is not a blob key.
 * Used by prune and verify when listing `blobs/`.
 */
export function blobHashOf(key: string): string | null {
  const m = /^blobs\/([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key);
  if (!m || !m[3]!.startsWith(m[1]! + m[2]!)) return null;
  return m[3]!;
}
