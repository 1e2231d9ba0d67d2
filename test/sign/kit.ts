/**
 * What the signing tests share: real keys from `ssh-keygen` in a temp directory, and running
 * `ssh-keygen -Y verify` / `-Y sign` on files.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { SignError } from '../../src/sign/index.js';
import { requireTool, runTool } from '../helpers/tools.js';

export const FIXTURES = fileURLToPath(new URL('../fixtures/sshsig/', import.meta.url));
export const fixture = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');

let counter = 0;

/** A fresh key made by `ssh-keygen -t <type>` in `dir`; its path (the public key is `.pub`). */
export function sshKeygen(dir: string, type = 'ed25519', passphrase = '', comment = 'test'): string {
  const path = join(dir, `key${++counter}_${type}`);
  runTool('ssh-keygen', ['-q', '-t', type, '-N', passphrase, '-C', comment, '-f', path]);
  return path;
}

/** The fixture private key, copied with mode 0600 so ssh-keygen accepts it. */
export function fixtureKeyFile(dir: string): string {
  const path = join(dir, 'fixture_key');
  copyFileSync(join(FIXTURES, 'host1_ed25519'), path);
  chmodSync(path, 0o600);
  return path;
}

/**
 * `ssh-keygen -Y verify`: whether it accepts `signature` of `message`, with its output (for
 * the assertion messages).
 */
export function sshVerify(
  dir: string,
  o: { allowedSigners: string; principal: string; namespace: string; message: Uint8Array | string; signature: string },
): { ok: boolean; output: string } {
  requireTool('ssh-keygen');
  const n = ++counter;
  const allowed = join(dir, `allowed_signers${n}`);
  const sig = join(dir, `message${n}.sig`);
  writeFileSync(allowed, o.allowedSigners);
  writeFileSync(sig, o.signature);
  const r = spawnSync('ssh-keygen', ['-Y', 'verify', '-f', allowed, '-I', o.principal, '-n', o.namespace, '-s', sig], {
    input: o.message,
    encoding: 'utf8',
  });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`.trim() };
}

/** `ssh-keygen -Y sign`: the armored signature of `message`. */
export function sshSign(dir: string, keyPath: string, namespace: string, message: Uint8Array | string): string {
  const file = join(dir, `signed${++counter}`);
  writeFileSync(file, message);
  runTool('ssh-keygen', ['-Y', 'sign', '-f', keyPath, '-n', namespace, file]);
  return readFileSync(`${file}.sig`, 'utf8');
}

/** The SignError `fn` throws; fails the test when it throws nothing or something else. */
export function refusal(fn: () => unknown): SignError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SignError);
    return err as SignError;
  }
  throw new Error('expected a SignError');
}
