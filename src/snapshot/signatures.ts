/**
 * Snapshot signatures, the reader's side (docs/FORMAT.md "Signatures"): keyless, from object
 * names and one small object per snapshot. A snapshot's signature is the object
 * `<id>.<sha256 of its root>.sig`; it signs the statement built from the id and the hashes in
 * the names of its root and its one manifest, with the snapshot's host part as the principal,
 * so a key allowed only for `host1` cannot vouch for `host2`'s snapshots.
 */
import { ExitCode, UsageError, VaultikError } from '../errors.js';
import { SNAPSHOT_NAMESPACE, snapshotStatement, verifySignature, type AllowedSigner } from '../sign/index.js';
import type { Storage } from '../storage/types.js';
import { TaskWindow } from '../util/concurrency.js';
import { compareSnapshots } from './id.js';
import { resolveSnapshotId, type IndexObject, type SnapshotListing } from './list.js';
import { readSmallObject } from './manifest.js';

/**
 * What a snapshot's signature says, checked against an allowed_signers file:
 * - `valid`: a key allowed for the snapshot's host signed exactly its root and manifest;
 * - `unsigned`: no signature object for its root (never signed, or its root was replaced);
 * - `invalid`: a signature that does not verify, or nothing definite to check it against;
 * - `not-allowed`: a valid signature by a key the file does not allow for this host (or not
 *   for this namespace, or not at the time the store recorded the snapshot).
 */
export type SignatureStatus =
  | { state: 'valid'; fingerprint: string; signer: string }
  | { state: 'unsigned' | 'invalid' | 'not-allowed'; reason: string };

/** A signature object is an armored Ed25519 SSHSIG of a few hundred bytes: refuse far more. */
const MAX_SIGNATURE_BYTES = 16 * 1024;

/** The signature object of the snapshot's root, when the store holds one. */
export function signatureOf(s: Pick<SnapshotListing, 'root' | 'signatures'>): IndexObject | undefined {
  return s.signatures.find((o) => o.sha256 === s.root.sha256);
}

/**
 * Checks one snapshot's signature (see SignatureStatus). The time restrictions of the signer's
 * line (valid-after, valid-before) are checked at the store's time of the root: when the
 * snapshot was written, which whoever writes to an S3 store cannot choose.
 * @throws StorageError from the store.
 */
export async function checkSnapshotSignature(
  storage: Storage,
  s: SnapshotListing,
  allowedSigners: readonly AllowedSigner[],
  signal?: AbortSignal,
): Promise<SignatureStatus> {
  const object = signatureOf(s);
  if (!object) return { state: 'unsigned', reason: 'unsigned' };
  if (s.manifests.length !== 1) {
    return { state: 'invalid', reason: `signature invalid: it signs one manifest and the snapshot has ${s.manifests.length}` };
  }
  const tooLarge = (): Error => new VaultikError(`more than ${MAX_SIGNATURE_BYTES} bytes, not a signature`, ExitCode.DATA);
  let bytes: Buffer | undefined;
  try {
    bytes = await readSmallObject(storage, object.key, MAX_SIGNATURE_BYTES, tooLarge, signal);
  } catch (err) {
    if (err instanceof VaultikError && err.exitCode === ExitCode.DATA) return { state: 'invalid', reason: `signature invalid: ${err.message}` };
    throw err;
  }
  if (bytes === undefined) return { state: 'unsigned', reason: 'unsigned (its signature was removed meanwhile)' };
  const message = Buffer.from(snapshotStatement({ snapshot: s.id, root: s.root.sha256, manifest: s.manifests[0]!.sha256 }));
  const r = verifySignature({ allowedSigners, principal: s.host, namespace: SNAPSHOT_NAMESPACE, message, signature: bytes.toString('utf8'), at: s.storeTime });
  if (r.ok) return { state: 'valid', fingerprint: r.fingerprint, signer: `${r.signer.file}:${r.signer.line}` };
  if (r.reason === 'malformed' || r.reason === 'namespace' || r.reason === 'bad-signature') {
    return { state: 'invalid', reason: `signature invalid: ${r.message}` };
  }
  return { state: 'not-allowed', reason: `signed by a key not allowed for host ${s.host}: ${r.message}` };
}

/**
 * Checks the signature of every snapshot, `concurrency` at a time (one small GET each).
 * @returns id → status.
 * @throws StorageError from the store; the abort reason.
 */
export async function checkSnapshotSignatures(
  storage: Storage,
  snapshots: readonly SnapshotListing[],
  allowedSigners: readonly AllowedSigner[],
  options: { concurrency?: number; signal?: AbortSignal } = {},
): Promise<Map<string, SignatureStatus>> {
  const out = new Map<string, SignatureStatus>();
  const window = new TaskWindow(options.concurrency ?? 8);
  for (const s of snapshots) {
    await window.add(async () => out.set(s.id, await checkSnapshotSignature(storage, s, allowedSigners, options.signal)), options.signal);
  }
  await window.drain();
  return out;
}

/**
 * Checks every signature and makes each snapshot without a valid one *suspect* (its reason
 * added to `suspect`): `latest` then skips it and forget's policy gives it no keep slot, as it
 * does for any other suspect (src/snapshot/list.ts, src/prune/forget.ts).
 * @returns id → status.
 */
export async function judgeSignatures(
  storage: Storage,
  snapshots: readonly SnapshotListing[],
  allowedSigners: readonly AllowedSigner[],
  options: { concurrency?: number; signal?: AbortSignal } = {},
): Promise<Map<string, SignatureStatus>> {
  const statuses = await checkSnapshotSignatures(storage, snapshots, allowedSigners, options);
  for (const s of snapshots) {
    const st = statuses.get(s.id);
    if (st && st.state !== 'valid') s.suspect.push(st.reason);
  }
  return statuses;
}

/**
 * resolveSnapshotId for a reader that requires signatures (restore, fetch, ls with --signers):
 * `latest` is the newest snapshot with a valid signature that is otherwise above suspicion;
 * a snapshot named by id must have a valid signature.
 * @param snapshots the listing; signatures are checked here (and marked as judgeSignatures does).
 * @throws VaultikError DATA when the snapshot is not validly signed, or for `latest` when none
 *   is; UsageError as resolveSnapshotId.
 */
export async function resolveSignedSnapshot(
  storage: Storage,
  snapshots: readonly SnapshotListing[],
  idOrLatest: string,
  host: string | undefined,
  allowedSigners: readonly AllowedSigner[],
  signal?: AbortSignal,
): Promise<SnapshotListing> {
  const candidates = snapshots.filter((s) => host === undefined || s.host === host);
  if (idOrLatest !== 'latest') {
    const s = resolveSnapshotId(candidates, idOrLatest);
    const st = await checkSnapshotSignature(storage, s, allowedSigners, signal);
    if (st.state !== 'valid') throw new VaultikError(`snapshot ${s.id} is refused: ${st.reason} (--signers requires a valid signature)`, ExitCode.DATA);
    return s;
  }
  const statuses = await judgeSignatures(storage, candidates, allowedSigners, signal ? { signal } : {});
  const signed = candidates.filter((s) => statuses.get(s.id)?.state === 'valid');
  if (signed.length === 0) {
    if (candidates.length === 0) return resolveSnapshotId(candidates, idOrLatest); // its "no snapshots" message
    const newest = [...candidates].sort(compareSnapshots).at(-1)!;
    const what = host === undefined ? 'in this store' : `of host '${host}'`;
    throw new VaultikError(
      `no snapshot ${what} has a valid signature (--signers); the newest, ${newest.id}, is ${newest.suspect.join('; ')}`,
      ExitCode.DATA,
    );
  }
  try {
    return resolveSnapshotId(signed, 'latest');
  } catch (err) {
    // Every signed one is suspect for another reason (its clock): name them as resolveSnapshotId does.
    if (err instanceof UsageError) throw new VaultikError(err.message, ExitCode.DATA, { cause: err });
    throw err;
  }
}
