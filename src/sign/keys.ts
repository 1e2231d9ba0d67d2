/**
 * SSH keys for signing: public key lines (`ssh-ed25519 AAAA… comment`), key blobs, fingerprints,
 * and the unencrypted OpenSSH private key file (`openssh-key-v1`) a backup host signs with.
 *
 * Only Ed25519 signs and verifies: it is OpenSSH's default, deterministic, and has one encoding.
 * Other key types still parse as public keys (an allowed_signers file shared with other uses
 * may list them) but never verify. No error message holds key material.
 */
import { createHash, createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import type { Stats } from 'node:fs';
import { dearmor } from './armor.js';
import { readNamedFile, SignError } from './errors.js';
import { decodeBase64Padded, WireError, WireReader, wireString } from './wire.js';

export const ED25519 = 'ssh-ed25519';
const ED25519_SIZE = 32;
// DER prefixes of Ed25519 keys (RFC 8410): node:crypto imports raw keys wrapped in these.
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const KEY_MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const KEY_TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9@._-]{0,63}$/;
// The block size of cipher "none": the private section is padded to a multiple of it.
const NONE_BLOCK = 8;

const unsupported = (what: string, type: string): SignError =>
  new SignError('key', `${what} key type ${type} is not supported: use ssh-keygen -t ed25519`);

/** An SSH public key: its type and wire blob. Only an Ed25519 key can `verify`. */
export class SshPublicKey {
  private keyObject: KeyObject | undefined;

  private constructor(
    readonly type: string,
    readonly blob: Buffer,
    readonly comment: string,
  ) {}

  /**
   * A key from its wire blob (`string type, …`). An Ed25519 blob must be exactly its type and 32
   * bytes; another type is kept as it is.
   * @throws SignError 'key' on a malformed blob.
   */
  static fromBlob(blob: Uint8Array, comment = ''): SshPublicKey {
    const b = Buffer.from(blob);
    let type: string;
    try {
      const r = new WireReader(b);
      type = r.text();
      if (type === ED25519) {
        if (r.string().length !== ED25519_SIZE) throw new Error(`an Ed25519 key is ${ED25519_SIZE} bytes`);
        r.end();
      }
    } catch (err) {
      throw new SignError('key', `malformed SSH public key: ${(err as Error).message}`);
    }
    if (!KEY_TYPE_RE.test(type)) throw new SignError('key', 'malformed SSH public key: invalid key type name');
    return new SshPublicKey(type, b, comment);
  }

  /** A key from its raw 32 bytes. */
  static ed25519(raw: Uint8Array, comment = ''): SshPublicKey {
    return SshPublicKey.fromBlob(Buffer.concat([wireString(ED25519), wireString(raw)]), comment);
  }

  /** `SHA256:` and the unpadded base64 of the blob's SHA-256, as `ssh-keygen -l` prints it. */
  get fingerprint(): string {
    return 'SHA256:' + createHash('sha256').update(this.blob).digest('base64').replace(/=+$/, '');
  }

  /** The 32 raw bytes of an Ed25519 key. @throws SignError 'key' for another type. */
  get raw(): Buffer {
    if (this.type !== ED25519) throw unsupported('public', this.type);
    return this.blob.subarray(this.blob.length - ED25519_SIZE);
  }

  equals(other: SshPublicKey): boolean {
    return this.blob.equals(other.blob);
  }

  /** The public key line (`ssh-ed25519 AAAA… comment`), as in a `.pub` file. */
  toString(): string {
    const line = `${this.type} ${this.blob.toString('base64')}`;
    return this.comment === '' ? line : `${line} ${this.comment}`;
  }

  /**
   * Checks an Ed25519 signature of `data`.
   * @throws SignError 'key' when the key is not Ed25519.
   */
  verify(data: Uint8Array, signature: Uint8Array): boolean {
    this.keyObject ??= createPublicKey({ key: Buffer.concat([SPKI_PREFIX, this.raw]), format: 'der', type: 'spki' });
    if (signature.length !== 64) return false;
    try {
      return cryptoVerify(null, data, this.keyObject, signature);
    } catch {
      return false;
    }
  }
}

/**
 * Parses a public key line: `<type> <base64 blob> [comment]`, as in a `.pub` file.
 * @throws SignError 'key' when the line is malformed or its type and blob disagree.
 */
export function parsePublicKey(line: string): SshPublicKey {
  const m = /^\s*(\S+)\s+(\S+)(?:\s+(.*?))?\s*$/.exec(line);
  if (!m) throw new SignError('key', 'malformed SSH public key line: expected "<type> <base64> [comment]"');
  const [, type, b64, comment] = m as unknown as [string, string, string, string | undefined];
  if (!KEY_TYPE_RE.test(type)) throw new SignError('key', 'malformed SSH public key line: invalid key type name');
  const blob = decodeBase64Padded(b64);
  if (blob === null) throw new SignError('key', `malformed SSH public key line: the ${type} key is not valid base64`);
  const key = SshPublicKey.fromBlob(blob, comment ?? '');
  if (key.type !== type) throw new SignError('key', `malformed SSH public key line: the line says ${type}, the key is ${key.type}`);
  return key;
}

/** An Ed25519 private key that signs. `toString()` names only its public key. */
export class SigningKey {
  private constructor(
    private readonly keyObject: KeyObject,
    readonly publicKey: SshPublicKey,
  ) {}

  /** @throws SignError 'key' unless `seed` is 32 bytes. */
  static fromSeed(seed: Uint8Array, comment = ''): SigningKey {
    if (seed.length !== ED25519_SIZE) throw new SignError('key', `an Ed25519 seed is ${ED25519_SIZE} bytes, got ${seed.length}`);
    const keyObject = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' });
    const raw = createPublicKey(keyObject).export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
    return new SigningKey(keyObject, SshPublicKey.ed25519(raw, comment));
  }

  /** The 64-byte Ed25519 signature of `data`. */
  sign(data: Uint8Array): Buffer {
    return cryptoSign(null, data, this.keyObject);
  }

  toString(): string {
    return `[SSH signing key ${this.publicKey.fingerprint}]`;
  }
}

/**
 * Parses an OpenSSH private key file (`-----BEGIN OPENSSH PRIVATE KEY-----`, as `ssh-keygen`
 * writes it) holding one unencrypted Ed25519 key. Checks the two check-ints, the padding, and
 * that the public key in the clear matches the private part.
 * @param source names the file in error messages.
 * @throws SignError 'key' naming `source` and the reason, never the key.
 */
export function parsePrivateKey(text: string, source: string): SigningKey {
  const fail = (reason: string): SignError => new SignError('key', `SSH private key ${source}: ${reason}`);
  const trimmed = text.trimStart();
  if (/^(ssh-|ecdsa-|sk-)/.test(trimmed)) throw fail('this is a public key line; give the private key file (without .pub)');
  const pem = /^-----BEGIN ([A-Z0-9 ]+)-----/.exec(trimmed);
  if (pem && pem[1] !== 'OPENSSH PRIVATE KEY') {
    throw fail(`is a "${pem[1]!}" PEM file, not an OpenSSH private key: create one with ssh-keygen -t ed25519`);
  }
  const bytes = dearmor(text, 'OPENSSH PRIVATE KEY');
  if (!Buffer.isBuffer(bytes)) throw fail(`not an OpenSSH private key: the file ${bytes.reason}`);
  if (!bytes.subarray(0, KEY_MAGIC.length).equals(KEY_MAGIC)) throw fail('not an openssh-key-v1 file');
  try {
    const r = new WireReader(bytes.subarray(KEY_MAGIC.length));
    const cipher = r.text();
    const kdf = r.text();
    r.string(); // KDF options: empty for "none"
    const count = r.uint32();
    if (count !== 1) throw new Error(`holds ${count} keys; vaultik signs with a file of exactly one`);
    const publicKey = SshPublicKey.fromBlob(r.string());
    // The type is in the clear even in an encrypted file: say the more useful thing first.
    if (publicKey.type !== ED25519) throw new Error(`signing key type ${publicKey.type} is not supported: use ssh-keygen -t ed25519`);
    if (cipher !== 'none' || kdf !== 'none') {
      throw new Error(
        `is encrypted with a passphrase (cipher ${cipher}); vaultik signs unattended and cannot ask for it: ` +
          `use a key without one (ssh-keygen -t ed25519 -N '' -f FILE) readable only by the backup user`,
      );
    }
    const priv = new WireReader(r.string());
    r.end();
    if (priv.remaining % NONE_BLOCK !== 0) throw new Error(`the private section is not a multiple of ${NONE_BLOCK} bytes`);
    // Equal check-ints are how OpenSSH tells a right passphrase; here they catch corruption.
    if (priv.uint32() !== priv.uint32()) throw new Error('the check-ints differ (corrupt file)');
    const type = priv.text();
    if (type !== ED25519) throw new Error(`the private part is of type ${type}, the public part ${ED25519}`);
    const pub = priv.string();
    const secret = priv.string();
    const comment = priv.string().toString('utf8');
    const padding = priv.bytes(priv.remaining);
    if (!padding.every((b, i) => b === i + 1)) throw new Error('invalid padding after the key (corrupt file)');
    if (secret.length !== 2 * ED25519_SIZE) throw new Error('the Ed25519 private part has the wrong size');
    if (!pub.equals(publicKey.raw) || !secret.subarray(ED25519_SIZE).equals(pub)) {
      throw new Error('the public key in the file does not match its private part (corrupt file)');
    }
    const key = SigningKey.fromSeed(secret.subarray(0, ED25519_SIZE), comment);
    if (!key.publicKey.raw.equals(pub)) throw new Error('the public key in the file does not match its private part (corrupt file)');
    return key;
  } catch (err) {
    const reason = (err as Error).message;
    throw fail(err instanceof WireError ? `malformed openssh-key-v1 data (${reason})` : reason);
  }
}

/**
 * ssh-keygen's rule (sshkey_perm_ok): a key file of ours that others may read or write is
 * refused, so a leaked key is not made worse by a signature that still verifies.
 */
function tooOpen(st: Stats): string | undefined {
  if (st.uid !== process.getuid?.() || (st.mode & 0o077) === 0) return undefined;
  const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
  return `permissions ${mode} are too open: others may read it; chmod 600 it (ssh-keygen refuses it too)`;
}

/**
 * Reads and parses the private key file at `path` (see parsePrivateKey).
 * @throws SignError 'key' when it cannot be read or parsed, or when it is ours and others may
 *   read or write it.
 */
export async function loadSigningKey(path: string): Promise<SigningKey> {
  return parsePrivateKey(await readNamedFile(path, 'key', 'SSH private key', tooOpen), path);
}
