/**
 * allowed_signers and verifySignature: every verdict is checked against `ssh-keygen -Y verify`
 * on the same file, principal, namespace and signature, and each refusal has its reason.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  loadAllowedSigners,
  matchPatternList,
  parseAllowedSigners,
  parsePrivateKey,
  signMessage,
  SNAPSHOT_NAMESPACE,
  verifySignature,
  type VerifyFailure,
} from '../../src/sign/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { fixture, refusal, sshKeygen, sshSign, sshVerify } from './kit.js';

const tmp = makeTempDir('vaultik-allowed-');
afterAll(tmp.cleanup);

const NS = SNAPSHOT_NAMESPACE;
const keyA = parsePrivateKey(fixture('host1_ed25519'), 'host1_ed25519');
const keyBPath = sshKeygen(tmp.dir);
const keyB = parsePrivateKey(readFileSync(keyBPath, 'utf8'), keyBPath);
const rsaLine = readFileSync(`${sshKeygen(tmp.dir, 'rsa')}.pub`, 'utf8').trim();
const A = keyA.publicKey.toString();
const B = keyB.publicKey.toString();
const message = Buffer.from(fixture('statement.txt'));
const signature = signMessage(keyA, NS, message);

describe('verifySignature agrees with ssh-keygen -Y verify', () => {
  // [allowed_signers text, principal, expected: true or the reason of the refusal]
  const cases: [string, string, true | VerifyFailure][] = [
    [`host1 ${A}`, 'host1', true],
    [`host1 ${A}`, 'host2', 'no-signer'],
    [`host1 ${B}`, 'host1', 'wrong-key'],
    [`host1 ${B}\nhost1 ${A}`, 'host1', true],
    [`${rsaLine.replace(/^/, 'host1 ')}\nhost1 ${A}`, 'host1', true],
    [`host* ${A}`, 'host1', true],
    [`host* ${A}`, 'web1', 'no-signer'],
    [`h?st1 ${A}`, 'host1', true],
    [`h?st1 ${A}`, 'hoost1', 'no-signer'],
    [`web1,host1 ${A}`, 'host1', true],
    [`"web1,host1" ${A}`, 'host1', true],
    [`*,!host2 ${A}`, 'host1', true],
    [`*,!host2 ${A}`, 'host2', 'no-signer'],
    [`HOST1 ${A}`, 'host1', 'no-signer'],
    [`host1 namespaces="vaultik-*" ${A}`, 'host1', true],
    [`host1 NAMESPACES="file,vaultik-snapshot" ${A}`, 'host1', true],
    [`host1 namespaces="file" ${A}`, 'host1', 'namespace-not-allowed'],
    [`host1 namespaces="*,!vaultik-snapshot" ${A}`, 'host1', 'namespace-not-allowed'],
    [`host1 valid-after="20000101Z" ${A}`, 'host1', true],
    [`host1 valid-after="20990101Z" ${A}`, 'host1', 'not-yet-valid'],
    [`host1 valid-before="20000101120000Z" ${A}`, 'host1', 'expired'],
    [`host1 valid-after="200001011200Z",valid-before="20990101" ${A}`, 'host1', true],
    [`host1 cert-authority ${A}`, 'host1', 'no-signer'],
    [`  # comment\n\nhost1 ${A} a comment with spaces\n`, 'host1', true],
  ];
  for (const [text, principal, expected] of cases) {
    it(`${text.replace(/(ssh-\S+) \S+/g, '$1 …').replace(/\n/g, ' / ')} -I ${principal}: ${String(expected)}`, () => {
      const r = verifySignature({ allowedSigners: parseAllowedSigners(text, 'as'), principal, namespace: NS, message, signature });
      if (expected === true) {
        expect(r, JSON.stringify(r)).toMatchObject({ ok: true, fingerprint: keyA.publicKey.fingerprint });
      } else {
        expect(r).toMatchObject({ ok: false, reason: expected });
      }
      const ssh = sshVerify(tmp.dir, { allowedSigners: `${text}\n`, principal, namespace: NS, message, signature });
      expect(ssh.ok, ssh.output).toBe(expected === true);
    });
  }

  it('the reasons read well and name the fingerprint, never the key', () => {
    const refuse = (text: string, principal = 'host1', namespace = NS, msg: Uint8Array = message, sig = signature): string => {
      const r = verifySignature({ allowedSigners: parseAllowedSigners(text, 'as'), principal, namespace, message: msg, signature: sig });
      if (r.ok) throw new Error('expected a refusal');
      expect(r.message).not.toContain(A.split(' ')[1]);
      return r.message;
    };
    expect(refuse(`host1 ${A}`, 'host2')).toBe('no allowed signer for principal "host2"');
    expect(refuse(`host1 cert-authority ${A}`)).toMatch(/only cert-authority lines match it; vaultik does not verify certificates/);
    expect(refuse(`host1 ${B}`)).toBe(`key ${keyA.publicKey.fingerprint} is not an allowed signer for principal "host1"`);
    expect(refuse(`host1 namespaces="file" ${A}`)).toBe('as:1 does not allow namespace "vaultik-snapshot" for this key');
    expect(refuse(`host1 ${A}`, 'host1', 'file')).toBe('the signature is for namespace "vaultik-snapshot", not "file"');
    expect(refuse(`host1 ${A}`, 'host1', NS, Buffer.from('other'))).toBe(
      `the signature by ${keyA.publicKey.fingerprint} does not match the message`,
    );
    expect(refuse(`host1 ${A}`, 'host1', NS, message, signature.slice(0, 100))).toMatch(/^invalid SSH signature: the text has no -----END/);
  });

  it('valid-after / valid-before are checked at `at`', () => {
    const allowedSigners = parseAllowedSigners(`host1 valid-after="20260101Z",valid-before="20270101Z" ${A}`, 'as');
    const at = (iso: string): boolean =>
      verifySignature({ allowedSigners, principal: 'host1', namespace: NS, message, signature, at: new Date(iso) }).ok;
    expect(at('2025-12-31T23:59:59Z')).toBe(false);
    expect(at('2026-01-01T00:00:00Z')).toBe(true);
    expect(at('2027-01-01T00:00:00Z')).toBe(true);
    expect(at('2027-01-01T00:00:01Z')).toBe(false);
  });

  it('a signature by ssh-keygen with a key of the file verifies', () => {
    const sig = sshSign(tmp.dir, keyBPath, NS, message);
    const r = verifySignature({ allowedSigners: parseAllowedSigners(`host* ${B}`, 'as'), principal: 'host7', namespace: NS, message, signature: sig });
    expect(r).toMatchObject({ ok: true, fingerprint: keyB.publicKey.fingerprint });
  });
});

describe('parse errors name the file and line', () => {
  // [line, error; ssh-keygen too refuses the line unless the third is false]
  const cases: [string, RegExp, boolean?][] = [
    ['host1', /^f:3: expected "principals \[options\] keytype base64"$/],
    [`host1 foo="x" ${A}`, /^f:3: unknown option foo$/],
    [`host1 namespaces=file ${A}`, /^f:3: unknown or malformed option at "namespaces=file" \(values go in double quotes\)$/],
    [`host1 namespaces="a",namespaces="b" ${A}`, /^f:3: multiple "namespaces" options$/],
    [`host1 valid-after="2024" ${A}`, /^f:3: invalid valid-after time "2024"/],
    // ssh-keygen's strptime takes Feb 30 as Mar 1; vaultik refuses an impossible date.
    [`host1 valid-after="20240230Z" ${A}`, /^f:3: invalid valid-after time "20240230Z"/, false],
    [`host1 valid-after="20250101Z",valid-before="20240101Z" ${A}`, /^f:3: valid-before is not after valid-after$/],
    ['host1 namespaces="x"', /^f:3: missing key after the options$/],
    ['host1 namespaces="x ssh-ed25519 AAAA', /^f:3: unterminated quote in the options$/],
    ['host1 ssh-ed25519 AAAA!', /^f:3: malformed SSH public key line: the ssh-ed25519 key is not valid base64$/],
    [`host1 cert-authority,namespaces="x", ${A}`, /^f:3: unknown or malformed option/],
  ];
  for (const [line, expected, sshRefuses = true] of cases) {
    it(line.replace(/(ssh-\S+) \S{20,}/g, '$1 …'), () => {
      const text = `# signers\n\n${line}\nhost2 ${A}\n`;
      const err = refusal(() => parseAllowedSigners(text, 'f'));
      expect(err.kind).toBe('allowed-signers');
      expect(err.message).toMatch(expected);
      // ssh-keygen refuses the same line when it reads it (it skips lines of other principals).
      const ssh = sshVerify(tmp.dir, { allowedSigners: text, principal: 'host1', namespace: NS, message, signature });
      expect(ssh.ok, ssh.output).toBe(!sshRefuses);
    });
  }

  it('the same file without the bad line parses (so the cases above fail for their line)', () => {
    expect(parseAllowedSigners(`# signers\n\nhost2 ${A}\n`, 'f')).toHaveLength(1);
  });

  it('loadAllowedSigners reads a file and names it', async () => {
    const path = join(tmp.dir, 'allowed');
    writeFileSync(path, `host1 ${A}\nbad\n`);
    await expect(loadAllowedSigners(path)).rejects.toThrow(`${path}:2: expected`);
    await expect(loadAllowedSigners(join(tmp.dir, 'none'))).rejects.toThrow(/cannot read allowed signers file .*none: ENOENT/);
    expect(await loadAllowedSigners(join(import.meta.dirname, '../fixtures/sshsig/allowed_signers'))).toMatchObject([
      { principals: 'host1', line: 1, certAuthority: false },
    ]);
  });
});

describe('matchPatternList (ssh_config PATTERNS)', () => {
  it('matches *, ? and negation like OpenSSH', () => {
    expect(matchPatternList('host1', '*')).toBe(true);
    expect(matchPatternList('', '*')).toBe(true);
    expect(matchPatternList('host1', 'h*1')).toBe(true);
    expect(matchPatternList('host12', 'h*1')).toBe(false);
    expect(matchPatternList('h1', 'h?1')).toBe(false);
    expect(matchPatternList('ab1', 'a*b*1')).toBe(true);
    expect(matchPatternList('host1', '!host1')).toBe(false);
    expect(matchPatternList('host1', 'x,!y,host?')).toBe(true);
    expect(matchPatternList('db-eu-1', '*-eu-*,!db-*')).toBe(false);
  });
});
