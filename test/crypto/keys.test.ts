import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AgeError,
  encrypt,
  generateKeyPair,
  identityToRecipient,
  loadIdentities,
  parseIdentity,
  parseIdentityFile,
  parseRecipient,
  parseRecipientsFile,
  Recipient,
} from '../../src/crypto/index.js';
import { decodeBech32, encodeBech32 } from '../../src/crypto/encoding.js';
import { ExitCode } from '../../src/errors.js';
import { runTool } from '../helpers/tools.js';
import { makeTempDir } from '../helpers/tmp.js';

const tmp = makeTempDir();
afterAll(tmp.cleanup);

function ageError(fn: () => unknown): AgeError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AgeError) return err;
    throw err;
  }
  throw new Error('expected an AgeError');
}

/** Replaces character `i` of `s` by another character of the bech32 alphabet. */
function mutate(s: string, i: number): string {
  const upper = s === s.toUpperCase();
  const other = s[i]!.toLowerCase() === 'q' ? 'p' : 'q';
  return s.slice(0, i) + (upper ? other.toUpperCase() : other) + s.slice(i + 1);
}

describe('age keys', () => {
  it('generates key pairs that age-keygen agrees with', () => {
    for (let i = 0; i < 3; i++) {
      const kp = generateKeyPair();
      expect(kp.identity).toMatch(/^AGE-SECRET-KEY-1[0-9A-Z]{58}$/);
      expect(kp.recipient).toMatch(/^age1[0-9a-z]{58}$/);
      expect(runTool('age-keygen', ['-y'], kp.identity + '\n').toString().trim()).toBe(kp.recipient);
      expect(identityToRecipient(kp.identity)).toBe(kp.recipient);
      expect(parseRecipient(kp.recipient).toString()).toBe(kp.recipient);
      expect(parseIdentity(kp.identity).encode()).toBe(kp.identity);
    }
  });

  it('parses identity files written by age-keygen', () => {
    const file = join(tmp.dir, 'keygen.txt');
    runTool('age-keygen', ['-o', file]);
    const text = readFileSync(file, 'utf8');
    const pub = /# public key: (age1\S+)/.exec(text)![1]!;
    const ids = parseIdentityFile(text);
    expect(ids).toHaveLength(1);
    expect(ids[0]!.recipient.toString()).toBe(pub);
  });

  it('reads several identities, comments, blank lines and CRLF', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const ids = parseIdentityFile(`# first\r\n${a.identity}\r\n\r\n  # second\n${b.identity}\n`);
    expect(ids.map((i) => i.recipient.toString())).toEqual([a.recipient, b.recipient]);
  });

  it('parses recipients files', () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    const rs = parseRecipientsFile(`# team\n${a.recipient}\n\n${b.recipient}\n`);
    expect(rs.map(String)).toEqual([a.recipient, b.recipient]);
    const err = ageError(() => parseRecipientsFile(`${a.recipient}\nssh-ed25519 AAAA\n`));
    expect(err.message).toContain('line 2');
    expect(ageError(() => parseRecipientsFile('# nothing\n')).message).toContain('no age recipient');
  });

  it('rejects bech32 checksum errors', () => {
    const kp = generateKeyPair();
    for (const i of [4, 20, kp.recipient.length - 1]) {
      const err = ageError(() => parseRecipient(mutate(kp.recipient, i)));
      expect(err.kind).toBe('key');
      expect(err.exitCode).toBe(ExitCode.USAGE);
      expect(err.message).toMatch(/checksum/);
    }
    const err = ageError(() => parseIdentity(mutate(kp.identity, 30)));
    expect(err.message).toMatch(/checksum/);
    expect(err.message).not.toContain(kp.identity.slice(16));
  });

  it('rejects the wrong human-readable part', () => {
    const kp = generateKeyPair();
    const key = decodeBech32(kp.recipient).data;
    expect(ageError(() => parseRecipient(encodeBech32('agx', key))).message).toMatch(/age1/);
    expect(ageError(() => parseRecipient(kp.identity)).kind).toBe('key');
    expect(ageError(() => parseIdentity(kp.recipient)).kind).toBe('key');
    expect(ageError(() => parseIdentity(encodeBech32('AGE-PLUGIN-FOO-', key))).kind).toBe('key');
  });

  it('applies age case rules: identities upper case, recipients lower case, never mixed', () => {
    const kp = generateKeyPair();
    expect(ageError(() => parseIdentity(kp.identity.toLowerCase())).message).toMatch(/upper-case/);
    expect(ageError(() => parseRecipient(kp.recipient.toUpperCase())).kind).toBe('key');
    const mixed = kp.identity.slice(0, 20) + kp.identity.slice(20).toLowerCase();
    expect(ageError(() => parseIdentity(mixed)).message).toMatch(/mixed case/);
    // age-keygen agrees that a lower-case identity is invalid.
    expect(() => runTool('age-keygen', ['-y'], kp.identity.toLowerCase() + '\n')).toThrow();
  });

  it('rejects wrong key lengths and bad padding', () => {
    expect(ageError(() => parseRecipient(encodeBech32('age', Buffer.alloc(31, 1)))).message).toMatch(/length/);
    expect(ageError(() => parseIdentity(encodeBech32('AGE-SECRET-KEY-', Buffer.alloc(33, 1)))).message).toMatch(/length/);
    // BIP-173 checksum vectors decode; a bad one does not.
    expect(decodeBech32('A12UEL5L').hrp).toBe('A');
    expect(decodeBech32('abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw').data.length).toBe(20);
    expect(() => decodeBech32('A1G7SGD8')).toThrow(/checksum/);
    expect(() => decodeBech32('10a06t8')).toThrow(/separator/);
    expect(() => decodeBech32('x1b4n0q5v')).toThrow(/character/);
  });

  it('refuses to encrypt to a low-order recipient', () => {
    const zero = Recipient.fromPublicKey(Buffer.alloc(32));
    expect(ageError(() => encrypt(Buffer.from('x'), [zero])).kind).toBe('key');
  });

  it('loads VAULTIK_PRIVATE_KEY as a key or an identity file path', async () => {
    const a = generateKeyPair();
    const b = generateKeyPair();
    expect((await loadIdentities(`${a.identity}\n`)).map((i) => i.recipient.toString())).toEqual([a.recipient]);
    const file = join(tmp.dir, 'ids.txt');
    writeFileSync(file, `# created: now\n# public key: ${a.recipient}\n${a.identity}\n${b.identity}\n`, { mode: 0o600 });
    expect((await loadIdentities(file)).map((i) => i.recipient.toString())).toEqual([a.recipient, b.recipient]);
    await expect(loadIdentities(join(tmp.dir, 'missing'))).rejects.toMatchObject({ kind: 'key', message: expect.stringContaining('ENOENT') as unknown });
    await expect(loadIdentities('  ')).rejects.toMatchObject({ kind: 'key' });
    const bad = join(tmp.dir, 'bad.txt');
    writeFileSync(bad, `${a.identity}\nAGE-SECRET-KEY-1QQQQ\n`);
    await expect(loadIdentities(bad)).rejects.toMatchObject({ kind: 'key', message: expect.stringContaining('line 2') as unknown });
    // An identity never prints itself.
    expect(String(parseIdentity(a.identity))).not.toContain('AGE-SECRET-KEY');
  });
});
