/**
 * SSH key files: vaultik reads what `ssh-keygen` writes, computes the fingerprints it prints,
 * and refuses (with a message that names no key material) what it cannot sign with.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSigningKey, parsePrivateKey, parsePublicKey, SigningKey, SshPublicKey, type SignError } from '../../src/sign/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { runTool } from '../helpers/tools.js';
import { fixture, fixtureKeyFile, refusal, sshKeygen } from './kit.js';

const tmp = makeTempDir('vaultik-sign-');
afterAll(tmp.cleanup);

const FIXTURE_FP = 'SHA256:Zfl/P6/4KAYbPb0+9een3Vh/dvPS3s/mI49tlfo2Qbs';

/** The base64 body of a key file or public key line: what must never show in an error. */
function secretsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const body = text.split('\n').filter((l) => !l.startsWith('-----') && l.trim() !== '');
  return body.map((l) => l.slice(0, 30));
}

/** Re-armors openssh-key-v1 bytes the way ssh-keygen does. */
function armorKey(bytes: Buffer): string {
  const b64 = bytes.toString('base64').replace(/.{70}/g, '$&\n');
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64.replace(/\n$/, '')}\n-----END OPENSSH PRIVATE KEY-----\n`;
}
function keyBytes(text: string): Buffer {
  return Buffer.from(text.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

describe('the fixture key (made once by ssh-keygen)', () => {
  it('parses; its public key and fingerprint are those of host1_ed25519.pub and ssh-keygen -l', () => {
    const key = parsePrivateKey(fixture('host1_ed25519'), 'host1_ed25519');
    const pub = parsePublicKey(fixture('host1_ed25519.pub'));
    expect(key.publicKey.equals(pub)).toBe(true);
    expect(key.publicKey.toString()).toBe(fixture('host1_ed25519.pub').trim());
    expect(pub.fingerprint).toBe(FIXTURE_FP);
    expect(pub.comment).toBe('vaultik test fixture (not secret)');
    expect(String(key)).toBe(`[SSH signing key ${FIXTURE_FP}]`);
  });

  it('neither inspect nor JSON shows the private key', () => {
    const key = parsePrivateKey(fixture('host1_ed25519'), 'host1_ed25519');
    const seed = keyBytes(fixture('host1_ed25519')).subarray(0xa1, 0xa1 + 32);
    // The seed's place in the fixture: the test would pass vacuously if it were wrong.
    expect(parsePrivateKey(fixture('host1_ed25519'), 'x').sign(Buffer.from('m'))).toEqual(
      SigningKey.fromSeed(seed).sign(Buffer.from('m')),
    );
    for (const shown of [inspect(key, { depth: 9, showHidden: true }), JSON.stringify(key)]) {
      for (const enc of ['hex', 'base64'] as const) expect(shown).not.toContain(seed.toString(enc).slice(0, 16));
    }
  });
});

describe('keys made by ssh-keygen now', () => {
  it('an Ed25519 key file loads; fingerprint matches `ssh-keygen -lf`', async () => {
    const path = sshKeygen(tmp.dir, 'ed25519', '', 'host9 key');
    const key = await loadSigningKey(path);
    const printed = runTool('ssh-keygen', ['-lf', `${path}.pub`]).toString().split(' ')[1];
    expect(key.publicKey.fingerprint).toBe(printed);
    expect(key.publicKey.toString()).toBe(readFileSync(`${path}.pub`, 'utf8').trim());
  });

  it('an RSA key is refused, naming its type and how to make an Ed25519 one', async () => {
    const path = sshKeygen(tmp.dir, 'rsa');
    const err = await loadSigningKey(path).then(
      () => undefined,
      (e: unknown) => e as SignError,
    );
    expect(err?.message).toContain('signing key type ssh-rsa is not supported: use ssh-keygen -t ed25519');
    expect(err?.message).toContain(path);
    for (const s of secretsOf(path)) expect(err?.message).not.toContain(s);
  });

  it('an ECDSA key is refused likewise', () => {
    const path = sshKeygen(tmp.dir, 'ecdsa');
    expect(refusal(() => parsePrivateKey(readFileSync(path, 'utf8'), path)).message).toContain(
      'signing key type ecdsa-sha2-nistp256 is not supported',
    );
  });

  it('a passphrase-protected key is refused: a daemon cannot prompt; neither passphrase nor key is echoed', () => {
    const path = sshKeygen(tmp.dir, 'ed25519', 'secret-passphrase-xyz');
    const err = refusal(() => parsePrivateKey(readFileSync(path, 'utf8'), path));
    expect(err.kind).toBe('key');
    expect(err.message).toMatch(/encrypted with a passphrase .*cannot ask for it/);
    expect(err.message).not.toContain('secret-passphrase-xyz');
    for (const s of secretsOf(path)) expect(err.message).not.toContain(s);
  });

  it('a key file others may read is refused, as ssh-keygen refuses it; mode 0600 loads', async () => {
    const path = fixtureKeyFile(tmp.dir);
    chmodSync(path, 0o644);
    await expect(loadSigningKey(path)).rejects.toThrow(`SSH private key ${path}: permissions 0644 are too open`);
    const ssh = spawnSync('ssh-keygen', ['-Y', 'sign', '-f', path, '-n', 'x'], { input: 'm', encoding: 'utf8' });
    expect(ssh.status, ssh.stderr).not.toBe(0);
    expect(ssh.stderr).toContain('UNPROTECTED PRIVATE KEY FILE');
    chmodSync(path, 0o600);
    expect((await loadSigningKey(path)).publicKey.fingerprint).toBe(FIXTURE_FP);
  });

  it('an unreadable path says so', async () => {
    await expect(loadSigningKey(join(tmp.dir, 'nope'))).rejects.toThrow(/cannot read SSH private key .*nope: ENOENT/);
  });
});

describe('damaged or foreign key files are refused without echoing them', () => {
  const good = fixture('host1_ed25519');
  const bytes = keyBytes(good);
  // Offsets in the fixture (one Ed25519 key, cipher none): the private section starts with its
  // length at 0x62 (after magic, names, count and the 0x33-byte public blob).
  const PRIV = 0x62 + 4;

  const cases: [string, string, RegExp][] = [
    ['the public key line', fixture('host1_ed25519.pub'), /public key line; give the private key file/],
    ['a PKCS#8 PEM file', '-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n', /"PRIVATE KEY" PEM file, not an OpenSSH/],
    ['a truncated armor', good.slice(0, 200), /no -----END OPENSSH PRIVATE KEY----- line/],
    ['truncated bytes', armorKey(bytes.subarray(0, 150)), /malformed openssh-key-v1 data \(truncated\)/],
    ['garbage base64', good.replace(/\n[A-Za-z0-9+/]{10}/, '\n!!!!!!!!!!'), /invalid base64/],
    [
      'different check-ints',
      armorKey(Buffer.concat([bytes.subarray(0, PRIV), Buffer.from([bytes[PRIV]! ^ 1]), bytes.subarray(PRIV + 1)])),
      /check-ints differ/,
    ],
    [
      'a public part that does not match the private one',
      // Flip a byte of the clear public key (in the header's blob at 0x3e).
      armorKey(Buffer.concat([bytes.subarray(0, 0x40), Buffer.from([bytes[0x40]! ^ 1]), bytes.subarray(0x41)])),
      /does not match its private part/,
    ],
    ['bad padding', armorKey(Buffer.concat([bytes.subarray(0, bytes.length - 1), Buffer.from([9])])), /invalid padding/],
  ];
  for (const [name, text, expected] of cases) {
    it(name, () => {
      const err = refusal(() => parsePrivateKey(text, 'thekey'));
      expect(err.message).toMatch(expected);
      expect(err.message.startsWith('SSH private key thekey: ')).toBe(true);
      for (const s of secretsOf(join(import.meta.dirname, '../fixtures/sshsig/host1_ed25519'))) expect(err.message).not.toContain(s);
    });
  }

  it('the unchanged bytes, re-armored the same way, still parse (so the cases above fail for their damage)', () => {
    expect(parsePrivateKey(armorKey(bytes), 'thekey').publicKey.fingerprint).toBe(FIXTURE_FP);
  });
});

describe('public key lines', () => {
  it('parse without comment, refuse a type that disagrees with the blob or bad base64', () => {
    const [type, b64] = fixture('host1_ed25519.pub').split(' ') as [string, string];
    expect(parsePublicKey(`${type} ${b64}`).fingerprint).toBe(FIXTURE_FP);
    expect(() => parsePublicKey(`ssh-rsa ${b64}`)).toThrow(/the line says ssh-rsa, the key is ssh-ed25519/);
    expect(() => parsePublicKey(`${type} ${b64.slice(0, -2)}`)).toThrow(/not valid base64/);
    expect(() => parsePublicKey(type)).toThrow(/expected "<type> <base64> \[comment\]"/);
  });

  it('an RSA public key parses (it may sit in allowed_signers) but is not Ed25519', () => {
    const path = sshKeygen(tmp.dir, 'rsa');
    const key = parsePublicKey(readFileSync(`${path}.pub`, 'utf8'));
    expect(key.type).toBe('ssh-rsa');
    expect(key.fingerprint).toBe(runTool('ssh-keygen', ['-lf', `${path}.pub`]).toString().split(' ')[1]);
    expect(() => key.raw).toThrow(/public key type ssh-rsa is not supported/);
  });

  it('an Ed25519 blob of the wrong length is refused', () => {
    const blob = Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from('ssh-ed25519'), Buffer.from([0, 0, 0, 31]), Buffer.alloc(31)]);
    expect(() => SshPublicKey.fromBlob(blob)).toThrow(/an Ed25519 key is 32 bytes/);
  });
});
