/**
 * X25519 recipients (`age1…`) and identities (`AGE-SECRET-KEY-1…`): parsing, generation, and
 * wrapping/unwrapping the 16-byte file key in an `X25519` header stanza, as in the age v1 spec.
 *
 * Error messages never contain a secret key.
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { AgeError } from './errors.js';
import { decodeBase64Strict, decodeBech32, encodeBase64, encodeBech32 } from './encoding.js';
import { hkdf, open, seal } from './primitives.js';
import type { Stanza } from './header.js';

const RECIPIENT_HRP = 'age';
const IDENTITY_HRP = 'AGE-SECRET-KEY-';
const X25519_LABEL = 'age-encryption.org/v1/X25519';
export const FILE_KEY_SIZE = 16;
const POINT_SIZE = 32;
// DER prefixes of X25519 keys (RFC 8410): node:crypto imports raw keys wrapped in these.
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const ZERO_NONCE = Buffer.alloc(12);

function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

function rawPublicKey(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
}

function rawPrivateKey(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length);
}

/**
 * X25519 shared secret.
 * @returns null when it is all zeros (a low-order share), which age forbids.
 */
function x25519(privateKey: KeyObject, publicKey: KeyObject): Buffer | null {
  let shared: Buffer;
  try {
    shared = diffieHellman({ privateKey, publicKey });
  } catch {
    // OpenSSL itself refuses to derive an all-zero secret.
    return null;
  }
  return shared.every((b) => b === 0) ? null : shared;
}

/** An X25519 age recipient: the public key a backup encrypts to. */
export class Recipient {
  private readonly keyObject: KeyObject;

  private constructor(readonly publicKey: Buffer) {
    this.keyObject = publicKeyObject(publicKey);
  }

  /** @throws AgeError 'key' unless `raw` is 32 bytes. */
  static fromPublicKey(raw: Uint8Array): Recipient {
    if (raw.length !== POINT_SIZE) throw new AgeError('key', `an X25519 public key is ${POINT_SIZE} bytes, got ${raw.length}`);
    return new Recipient(Buffer.from(raw));
  }

  /** The `age1…` string. */
  toString(): string {
    return encodeBech32(RECIPIENT_HRP, this.publicKey);
  }

  /** Wraps `fileKey` to this recipient with a fresh ephemeral key: one `X25519` stanza. */
  wrapFileKey(fileKey: Uint8Array): Stanza {
    const eph = generateKeyPairSync('x25519');
    const share = rawPublicKey(eph.publicKey);
    const shared = x25519(eph.privateKey, this.keyObject);
    // Only a low-order recipient key yields zero; parseRecipient accepts any 32 bytes, like age.
    if (shared === null) throw new AgeError('key', `recipient ${this.toString()} is a low-order point`);
    const wrapKey = hkdf(shared, Buffer.concat([share, this.publicKey]), X25519_LABEL);
    const [ct, tag] = seal(wrapKey, ZERO_NONCE, fileKey);
    return { args: ['X25519', encodeBase64(share)], body: Buffer.concat([ct, tag]) };
  }
}

/** An X25519 age identity: the private key that restores. `toString()` does not reveal it. */
export class Identity {
  readonly recipient: Recipient;

  private constructor(private readonly keyObject: KeyObject) {
    this.recipient = Recipient.fromPublicKey(rawPublicKey(createPublicKey(keyObject)));
  }

  /** @throws AgeError 'key' unless `raw` is 32 bytes. */
  static fromSecretKey(raw: Uint8Array): Identity {
    if (raw.length !== POINT_SIZE) throw new AgeError('key', `an X25519 secret key is ${POINT_SIZE} bytes, got ${raw.length}`);
    return new Identity(createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' }));
  }

  /** A fresh random identity. */
  static generate(): Identity {
    return new Identity(generateKeyPairSync('x25519').privateKey);
  }

  /** The `AGE-SECRET-KEY-1…` string. Handle with care. */
  encode(): string {
    return encodeBech32(IDENTITY_HRP, rawPrivateKey(this.keyObject));
  }

  toString(): string {
    return `[age identity for ${this.recipient.toString()}]`;
  }

  /**
   * Tries every stanza in order, like age: stanzas of other types, or X25519 stanzas whose body
   * does not authenticate with this key, are skipped.
   * @returns the 16-byte file key, or null when no stanza is for this identity.
   * @throws AgeError 'header' on a malformed X25519 stanza (wrong argument count, a share that is
   *   not 32 canonical bytes, a body that is not 32 bytes, a low-order share).
   */
  unwrapFileKey(stanzas: readonly Stanza[]): Buffer | null {
    for (const s of stanzas) {
      if (s.args[0] !== 'X25519') continue;
      if (s.args.length !== 2) throw new AgeError('header', 'invalid X25519 stanza: expected exactly one argument');
      const share = decodeBase64Strict(s.args[1]!);
      if (share === null || share.length !== POINT_SIZE) throw new AgeError('header', 'invalid X25519 stanza: bad ephemeral share');
      if (s.body.length !== FILE_KEY_SIZE + 16) throw new AgeError('header', 'invalid X25519 stanza: wrapped file key has the wrong size');
      const shared = x25519(this.keyObject, publicKeyObject(share));
      if (shared === null) throw new AgeError('header', 'invalid X25519 stanza: low-order ephemeral share');
      const wrapKey = hkdf(shared, Buffer.concat([share, this.recipient.publicKey]), X25519_LABEL);
      const fileKey = open(wrapKey, ZERO_NONCE, s.body);
      if (fileKey !== null) return fileKey;
    }
    return null;
  }
}

/**
 * Parses an `age1…` X25519 recipient (lower case, as age requires).
 * @throws AgeError 'key' with the reason (checksum, wrong prefix, length).
 */
export function parseRecipient(s: string): Recipient {
  let decoded: { hrp: string; data: Buffer };
  try {
    decoded = decodeBech32(s);
  } catch (err) {
    throw new AgeError('key', `malformed age recipient "${s}": ${(err as Error).message}`);
  }
  if (decoded.hrp !== RECIPIENT_HRP) {
    throw new AgeError('key', `malformed age recipient "${s}": expected an "age1…" X25519 recipient`);
  }
  if (decoded.data.length !== POINT_SIZE) throw new AgeError('key', `malformed age recipient "${s}": wrong key length`);
  return Recipient.fromPublicKey(decoded.data);
}

/**
 * Parses an `AGE-SECRET-KEY-1…` X25519 identity. Like age, only the upper-case form is valid.
 * @throws AgeError 'key' with the reason (never the key itself).
 */
export function parseIdentity(s: string): Identity {
  if (s.startsWith('AGE-SECRET-KEY-PQ-')) throw new AgeError('key', 'post-quantum (hybrid) age identities are not supported');
  let decoded: { hrp: string; data: Buffer };
  try {
    decoded = decodeBech32(s);
  } catch (err) {
    throw new AgeError('key', `malformed age identity: ${(err as Error).message}`);
  }
  if (decoded.hrp !== IDENTITY_HRP) {
    throw new AgeError('key', 'malformed age identity: expected an upper-case "AGE-SECRET-KEY-1…" X25519 identity');
  }
  if (decoded.data.length !== POINT_SIZE) throw new AgeError('key', 'malformed age identity: wrong key length');
  return Identity.fromSecretKey(decoded.data);
}

function keyLines(text: string): { line: string; n: number }[] {
  const out: { line: string; n: number }[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    out.push({ line, n: i + 1 });
  });
  return out;
}

/**
 * Parses an identity file as `age-keygen` writes it: one identity per line, `#` comments and
 * blank lines ignored.
 * @throws AgeError 'key' naming the bad line, or when the file holds no identity.
 */
export function parseIdentityFile(text: string): Identity[] {
  if (text.startsWith('age-encryption.org/')) {
    throw new AgeError('key', 'passphrase-encrypted identity files are not supported; decrypt it first with `age -d`');
  }
  const ids = keyLines(text).map(({ line, n }) => {
    try {
      return parseIdentity(line);
    } catch (err) {
      throw new AgeError('key', `identity file line ${n}: ${(err as Error).message}`);
    }
  });
  if (ids.length === 0) throw new AgeError('key', 'no age identity (AGE-SECRET-KEY-1…) found');
  return ids;
}

/**
 * Parses age's recipients-file format: one `age1…` recipient per line, `#` comments and blank
 * lines ignored.
 * @throws AgeError 'key' naming the bad line, or when the file holds no recipient.
 */
export function parseRecipientsFile(text: string): Recipient[] {
  const rs = keyLines(text).map(({ line, n }) => {
    try {
      return parseRecipient(line);
    } catch (err) {
      throw new AgeError('key', `recipients file line ${n}: ${(err as Error).message}`);
    }
  });
  if (rs.length === 0) throw new AgeError('key', 'no age recipient (age1…) found');
  return rs;
}

/** A fresh X25519 key pair, as strings. */
export function generateKeyPair(): { identity: string; recipient: string } {
  const id = Identity.generate();
  return { identity: id.encode(), recipient: id.recipient.toString() };
}

/**
 * The `age1…` recipient of an `AGE-SECRET-KEY-1…` identity (like `age-keygen -y`).
 * @throws AgeError 'key' when the identity is malformed.
 */
export function identityToRecipient(identity: string): string {
  return parseIdentity(identity.trim()).recipient.toString();
}

/**
 * Loads the identities named by `VAULTIK_PRIVATE_KEY`: either identity-file text (the key itself,
 * `AGE-SECRET-KEY-1…` lines, or a whole age-keygen file as `"$(cat key.txt)"` gives it, `#`
 * comments and blank lines included) or the path of an identity file.
 * Messages never contain the value (nor the path: a mistyped value may be a key).
 * @throws AgeError 'key' when the value is empty, the file cannot be read, or holds no valid
 *   identity.
 */
export async function loadIdentities(spec: string): Promise<Identity[]> {
  const trimmed = spec.trim();
  if (trimmed === '') throw new AgeError('key', 'VAULTIK_PRIVATE_KEY is empty: set it to an AGE-SECRET-KEY-1… key or an identity file path');
  // A path is one line; anything multi-line, commented or mentioning a key is the file's text.
  // Parsing it (instead of trying it as a path) keeps a key out of ENOENT messages.
  if (/[\r\n]/.test(trimmed) || trimmed.startsWith('#') || /AGE-SECRET-KEY-/i.test(trimmed)) {
    try {
      return parseIdentityFile(trimmed);
    } catch (err) {
      throw new AgeError('key', `VAULTIK_PRIVATE_KEY holds no valid age identity (${(err as Error).message})`, { cause: err });
    }
  }
  let text: string;
  try {
    text = await readFile(spec, 'utf8');
  } catch (err) {
    // No cause: Node's message quotes the path.
    const code = (err as NodeJS.ErrnoException).code;
    throw new AgeError('key', `VAULTIK_PRIVATE_KEY holds neither an age identity nor the path of a readable identity file (${code ?? 'read error'})`);
  }
  try {
    return parseIdentityFile(text);
  } catch (err) {
    throw new AgeError('key', `the identity file named by VAULTIK_PRIVATE_KEY: ${(err as Error).message}`, { cause: err });
  }
}
