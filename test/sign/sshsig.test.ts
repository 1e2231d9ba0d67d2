/**
 * SSHSIG signatures: vaultik's are ssh-keygen's byte for byte, ssh-keygen verifies them, vaultik
 * verifies ssh-keygen's, and damage of any kind is refused by both.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { checkSignature, parsePrivateKey, parsePublicKey, parseSignature, signMessage, SNAPSHOT_NAMESPACE } from '../../src/sign/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { fixture, fixtureKeyFile, sshKeygen, sshSign, sshVerify } from './kit.js';

const tmp = makeTempDir('vaultik-sshsig-');
afterAll(tmp.cleanup);

const NS = SNAPSHOT_NAMESPACE;
const fixtureKey = parsePrivateKey(fixture('host1_ed25519'), 'host1_ed25519');
const statement = Buffer.from(fixture('statement.txt'));

/** Accepted by vaultik (parse and check) for `namespace`; false when refused either way. */
function vaultikAccepts(armored: string, namespace: string, message: Uint8Array): boolean {
  try {
    return checkSignature(parseSignature(armored), namespace, message);
  } catch {
    return false;
  }
}

function reArmor(blob: Buffer): string {
  return `-----BEGIN SSH SIGNATURE-----\n${blob.toString('base64').replace(/.{70}(?!$)/g, '$&\n')}\n-----END SSH SIGNATURE-----\n`;
}
function blobOf(armored: string): Buffer {
  return Buffer.from(armored.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

describe('fixed vectors (test/fixtures/sshsig, made by ssh-keygen)', () => {
  it('vaultik signs the statement to exactly the bytes of ssh-keygen -Y sign', () => {
    expect(signMessage(fixtureKey, NS, statement)).toBe(fixture('statement.sha512.sig'));
  });

  it('vaultik verifies the sha512 and the sha256 signature, and only for their message and namespace', () => {
    for (const [file, hash] of [
      ['statement.sha512.sig', 'sha512'],
      ['statement.sha256.sig', 'sha256'],
    ] as const) {
      const sig = parseSignature(fixture(file));
      expect(sig.hashAlgorithm).toBe(hash);
      expect(sig.namespace).toBe(NS);
      expect(sig.publicKey.equals(fixtureKey.publicKey)).toBe(true);
      expect(checkSignature(sig, NS, statement)).toBe(true);
      expect(checkSignature(sig, NS, Buffer.from(fixture('statement.txt').replace('root 4', 'root 5')))).toBe(false);
      expect(checkSignature(sig, 'file', statement)).toBe(false);
    }
  });
});

describe('vaultik → ssh-keygen -Y verify', () => {
  const keyPath = sshKeygen(tmp.dir);
  const key = parsePrivateKey(readFileSync(keyPath, 'utf8'), keyPath);
  const allowed = `host1 ${key.publicKey.toString()}\n`;
  const message = Buffer.from('vaultik snapshot signature v1\nsnapshot host1-20261206T000000.000Z\n');
  const signature = signMessage(key, NS, message);

  it('accepts the signature for its principal, namespace and message', () => {
    const r = sshVerify(tmp.dir, { allowedSigners: allowed, principal: 'host1', namespace: NS, message, signature });
    expect(r.ok, r.output).toBe(true);
    expect(r.output).toContain(key.publicKey.fingerprint);
  });

  it('refuses a changed message, another principal, another namespace', () => {
    const base = { allowedSigners: allowed, principal: 'host1', namespace: NS, message, signature };
    for (const change of [
      { message: Buffer.concat([message, Buffer.from('x')]) },
      { principal: 'host2' },
      { namespace: 'file' },
    ]) {
      const r = sshVerify(tmp.dir, { ...base, ...change });
      expect(r.ok, `${JSON.stringify(Object.keys(change))}: ${r.output}`).toBe(false);
    }
  });

  it('matches ssh-keygen for messages of many sizes (empty, binary, 1 MiB)', () => {
    for (const m of [Buffer.alloc(0), Buffer.from([0, 255, 10, 13]), Buffer.alloc(1 << 20, 7)]) {
      const s = signMessage(key, NS, m);
      expect(sshSign(tmp.dir, keyPath, NS, m)).toBe(s);
      expect(sshVerify(tmp.dir, { allowedSigners: allowed, principal: 'host1', namespace: NS, message: m, signature: s }).ok).toBe(true);
    }
  });
});

describe('ssh-keygen -Y sign → vaultik', () => {
  it('verifies a signature made by ssh-keygen with a fresh key', () => {
    const keyPath = sshKeygen(tmp.dir);
    const message = Buffer.from('some statement\n');
    const sig = parseSignature(sshSign(tmp.dir, keyPath, NS, message));
    expect(sig.publicKey.equals(parsePublicKey(readFileSync(`${keyPath}.pub`, 'utf8')))).toBe(true);
    expect(checkSignature(sig, NS, message)).toBe(true);
  });

  it('the fixture key copied with mode 0600 signs the statement to the fixture bytes again', () => {
    expect(sshSign(tmp.dir, fixtureKeyFile(tmp.dir), NS, statement)).toBe(fixture('statement.sha512.sig'));
  });

  it('refuses an RSA signature by naming its key type', () => {
    const armored = sshSign(tmp.dir, sshKeygen(tmp.dir, 'rsa'), NS, 'x');
    expect(() => parseSignature(armored)).toThrow(/key type ssh-rsa is not supported \(vaultik verifies Ed25519 signatures only\)/);
  });
});

describe('damage', () => {
  const good = fixture('statement.sha512.sig');
  const blob = blobOf(good);

  it('the untouched blob, re-armored by the test, still verifies (so the cases below fail for their damage)', () => {
    expect(reArmor(blob)).toBe(good);
    expect(vaultikAccepts(reArmor(blob), NS, statement)).toBe(true);
  });

  it('every single flipped bit of the blob is refused by vaultik and by ssh-keygen', () => {
    const allowed = fixture('allowed_signers');
    // Every byte by vaultik; a spread of them by ssh-keygen (a process each).
    for (let i = 0; i < blob.length; i++) {
      const bad = Buffer.from(blob);
      bad[i]! ^= 1 << i % 8;
      const armored = reArmor(bad);
      expect(vaultikAccepts(armored, NS, statement), `byte ${i}`).toBe(false);
      if (i % 17 === 0) {
        const r = sshVerify(tmp.dir, { allowedSigners: allowed, principal: 'host1', namespace: NS, message: statement, signature: armored });
        expect(r.ok, `ssh-keygen, byte ${i}: ${r.output}`).toBe(false);
      }
    }
  });

  it('a truncated armor, a truncated blob, trailing bytes, another version: refused with a reason', () => {
    const lines = good.split('\n');
    expect(() => parseSignature(lines.slice(0, 3).join('\n'))).toThrow(/invalid SSH signature: the text has no -----END SSH SIGNATURE----- line/);
    expect(() => parseSignature(reArmor(blob.subarray(0, blob.length - 5)))).toThrow(/malformed blob \(truncated\)/);
    expect(() => parseSignature(reArmor(Buffer.concat([blob, Buffer.from([0])])))).toThrow(/trailing bytes/);
    const v2 = Buffer.from(blob);
    v2.writeUInt32BE(2, 6);
    expect(() => parseSignature(reArmor(v2))).toThrow(/version 2 \(only 1 is defined\)/);
    expect(() => parseSignature('')).toThrow(/does not start with -----BEGIN SSH SIGNATURE-----/);
    expect(() => parseSignature(good.replace('U1NIU0lH', 'U1NIU0l*'))).toThrow(/invalid base64/);
  });

  it('a signature for another namespace does not verify for vaultik-snapshot', () => {
    const other = signMessage(fixtureKey, 'file', statement);
    expect(parseSignature(other).namespace).toBe('file');
    expect(vaultikAccepts(other, NS, statement)).toBe(false);
    expect(vaultikAccepts(other, 'file', statement)).toBe(true);
  });

  it('an empty or multi-line namespace is refused when signing', () => {
    expect(() => signMessage(fixtureKey, '', statement)).toThrow(/non-empty single line/);
    expect(() => signMessage(fixtureKey, 'a\nb', statement)).toThrow(/non-empty single line/);
  });
});
