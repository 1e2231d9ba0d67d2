/**
 * SSH signatures (SSHSIG), the format of `ssh-keygen -Y sign` and `ssh-keygen -Y verify`
 * (OpenSSH's PROTOCOL.sshsig), with Ed25519 keys only.
 *
 * The armored signature holds one blob:
 *     "SSHSIG" ‖ uint32 1 ‖ string public key ‖ string namespace ‖ string reserved
 *       ‖ string hash algorithm ‖ string signature (string "ssh-ed25519" ‖ string 64 bytes)
 * and what the key signs is
 *     "SSHSIG" ‖ string namespace ‖ string "" ‖ string hash algorithm ‖ string H(message)
 * so a signature made for one namespace (one purpose) is never valid for another.
 */
import { createHash } from 'node:crypto';
import { armor, dearmor } from './armor.js';
import { SignError } from './errors.js';
import { ED25519, SshPublicKey, type SigningKey } from './keys.js';
import { WireReader, wireString, wireUint32 } from './wire.js';

const MAGIC = Buffer.from('SSHSIG', 'latin1');
const VERSION = 1;
const LABEL = 'SSH SIGNATURE';
export type SshsigHash = 'sha256' | 'sha512';
const HASHES: readonly string[] = ['sha256', 'sha512'] satisfies SshsigHash[];
// ssh-keygen signs with sha512; so does vaultik, for byte-identical signatures.
const SIGN_HASH: SshsigHash = 'sha512';

/** The fields of an armored SSH signature, parsed but not yet verified. */
export interface SshSignature {
  publicKey: SshPublicKey;
  namespace: string;
  hashAlgorithm: SshsigHash;
  /** The raw 64-byte Ed25519 signature. */
  signature: Buffer;
}

function checkNamespace(namespace: string): void {
  // ssh-keygen refuses an empty namespace; a line break would make it unusable with -n.
  if (namespace === '' || /[\0\r\n]/.test(namespace)) throw new SignError('signature', 'an SSH signature namespace must be a non-empty single line');
}

/** The bytes the key signs for `message` in `namespace`. */
function signedData(namespace: string, hashAlgorithm: SshsigHash, message: Uint8Array): Buffer {
  const digest = createHash(hashAlgorithm).update(message).digest();
  return Buffer.concat([MAGIC, wireString(namespace), wireString(''), wireString(hashAlgorithm), wireString(digest)]);
}

/**
 * Signs `message` for `namespace`: the armored text `ssh-keygen -Y sign -n <namespace>` writes
 * for the same key and message, byte for byte (Ed25519 is deterministic).
 */
export function signMessage(key: SigningKey, namespace: string, message: Uint8Array): string {
  checkNamespace(namespace);
  const sig = key.sign(signedData(namespace, SIGN_HASH, message));
  const blob = Buffer.concat([
    MAGIC,
    wireUint32(VERSION),
    wireString(key.publicKey.blob),
    wireString(namespace),
    wireString(''),
    wireString(SIGN_HASH),
    wireString(Buffer.concat([wireString(ED25519), wireString(sig)])),
  ]);
  return armor(LABEL, blob);
}

/**
 * Parses an armored SSH signature (`-----BEGIN SSH SIGNATURE-----`).
 * @throws SignError 'signature' when it is malformed or truncated, of another version, hash
 *   algorithm or key type (certificates included).
 */
export function parseSignature(armored: string): SshSignature {
  const fail = (reason: string): SignError => new SignError('signature', `invalid SSH signature: ${reason}`);
  const blob = dearmor(armored, LABEL);
  if (!Buffer.isBuffer(blob)) throw fail(`the text ${blob.reason}`);
  if (!blob.subarray(0, MAGIC.length).equals(MAGIC)) throw fail('no SSHSIG magic');
  let fields: { keyBlob: Buffer; namespace: string; hash: string; sigType: string; sig: Buffer };
  try {
    const r = new WireReader(blob.subarray(MAGIC.length));
    const version = r.uint32();
    if (version !== VERSION) throw fail(`version ${version} (only ${VERSION} is defined)`);
    const keyBlob = r.string();
    const namespace = r.string().toString('utf8');
    r.string(); // reserved: ignored, as ssh-keygen does (the signed data always has it empty)
    const hash = r.text();
    const inner = new WireReader(r.string());
    r.end();
    const sigType = inner.text();
    const sig = inner.string();
    inner.end();
    fields = { keyBlob, namespace, hash, sigType, sig };
  } catch (err) {
    if (err instanceof SignError) throw err;
    throw fail(`malformed blob (${(err as Error).message})`);
  }
  let publicKey: SshPublicKey;
  try {
    publicKey = SshPublicKey.fromBlob(fields.keyBlob);
  } catch (err) {
    throw fail((err as Error).message);
  }
  if (publicKey.type.includes('-cert-')) throw fail(`signed with a certificate (${publicKey.type}); vaultik verifies plain Ed25519 keys only`);
  if (publicKey.type !== ED25519) throw fail(`key type ${publicKey.type} is not supported (vaultik verifies Ed25519 signatures only)`);
  if (fields.sigType !== publicKey.type) throw fail(`a ${fields.sigType} signature made with a ${publicKey.type} key`);
  if (fields.sig.length !== 64) throw fail('an Ed25519 signature is 64 bytes');
  if (!HASHES.includes(fields.hash)) throw fail(`hash algorithm "${fields.hash}" is not sha256 or sha512`);
  return { publicKey, namespace: fields.namespace, hashAlgorithm: fields.hash as SshsigHash, signature: fields.sig };
}

/**
 * Whether `sig` is its key's signature of `message` in `namespace` (both the namespace written
 * in the signature and the one signed must be `namespace`). Says nothing of whether the key is
 * trusted: that is allowed_signers' part (verifySignature).
 */
export function checkSignature(sig: SshSignature, namespace: string, message: Uint8Array): boolean {
  if (sig.namespace !== namespace) return false;
  return sig.publicKey.verify(signedData(namespace, sig.hashAlgorithm, message), sig.signature);
}
