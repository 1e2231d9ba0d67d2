/**
 * What a snapshot signature signs: a short text naming the snapshot and the SHA-256 of its two
 * top objects, so anyone holding the store can rebuild it from object names and `sha256sum`,
 * and check it with `ssh-keygen -Y verify -n vaultik-snapshot` (docs/FORMAT.md).
 */
import { SignError } from './errors.js';

/** The SSHSIG namespace of snapshot signatures: a key's signature for another use never counts. */
export const SNAPSHOT_NAMESPACE = 'vaultik-snapshot';

const HEX64 = /^[0-9a-f]{64}$/;
// The characters of a snapshot id (src/snapshot/id.ts): no space or line break to forge a line.
const ID = /^[A-Za-z0-9._-]+$/;

/**
 * The statement for a snapshot, exactly:
 *     vaultik snapshot signature v1\nsnapshot <id>\nroot <sha256>\nmanifest <sha256>\n
 * @param root the lower-case hex SHA-256 of the stored root object (`<id>.db.zst.age`).
 * @param manifest the same of the manifest object (`<id>.manifest.json.zst`).
 * @throws SignError 'statement' when a field is not of that form.
 */
export function snapshotStatement(s: { snapshot: string; root: string; manifest: string }): string {
  if (!ID.test(s.snapshot)) throw new SignError('statement', `invalid snapshot id for a signature: ${JSON.stringify(s.snapshot)}`);
  for (const [name, hash] of [
    ['root', s.root],
    ['manifest', s.manifest],
  ] as const) {
    if (!HEX64.test(hash)) throw new SignError('statement', `the ${name} hash of snapshot ${s.snapshot} is not 64 lower-case hex digits`);
  }
  return `vaultik snapshot signature v1\nsnapshot ${s.snapshot}\nroot ${s.root}\nmanifest ${s.manifest}\n`;
}
