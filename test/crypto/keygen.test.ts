/** `vaultik keygen`, called as the CLI would, checked against `age-keygen -y` and `age`. */
import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { keygenCommand } from '../../src/cli/commands/keygen.js';
import { UsageError } from '../../src/errors.js';
import { encrypt, parseRecipient } from '../../src/crypto/index.js';
import { runTool } from '../helpers/tools.js';
import { captureIO } from '../helpers/io.js';
import { makeTempDir } from '../helpers/tmp.js';

const tmp = makeTempDir();
afterAll(tmp.cleanup);

describe('vaultik keygen', () => {
  it('writes an age-keygen style identity file with mode 0600', async () => {
    const file = join(tmp.dir, 'key.txt');
    const c = captureIO();
    expect(await keygenCommand.run(['-o', file], c.io)).toBe(0);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^# created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n# public key: age1[a-z0-9]{58}\nAGE-SECRET-KEY-1[A-Z0-9]{58}\n$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const pub = /Public key: (age1\S+)\n/.exec(c.err())![1]!;
    expect(text).toContain(`# public key: ${pub}\n`);
    expect(c.out()).toBe('');
    // The stock tools agree: same public key, and they decrypt what we encrypt to it.
    expect(runTool('age-keygen', ['-y', file]).toString().trim()).toBe(pub);
    const plain = Buffer.from('hello from vaultik keygen');
    expect(runTool('age', ['-d', '-i', file], encrypt(plain, [parseRecipient(pub)])).equals(plain)).toBe(true);
  });

  it('refuses to overwrite an existing file', async () => {
    const file = join(tmp.dir, 'existing.txt');
    writeFileSync(file, 'precious\n');
    await expect(keygenCommand.run(['-o', file], captureIO().io)).rejects.toBeInstanceOf(UsageError);
    expect(readFileSync(file, 'utf8')).toBe('precious\n');
  });

  it('prints the identity on stdout without -o, and -y gives the recipient back', async () => {
    const c = captureIO();
    expect(await keygenCommand.run([], c.io)).toBe(0);
    const pub = /Public key: (age1\S+)/.exec(c.err())![1]!;
    expect(runTool('age-keygen', ['-y'], c.out()).toString().trim()).toBe(pub);
    const file = join(tmp.dir, 'from-stdout.txt');
    writeFileSync(file, c.out());
    const y = captureIO();
    expect(await keygenCommand.run(['-y', file], y.io)).toBe(0);
    expect(y.out()).toBe(`${pub}\n`);
  });

  it('rejects stray arguments', async () => {
    await expect(keygenCommand.run(['extra'], captureIO().io)).rejects.toBeInstanceOf(UsageError);
    await expect(keygenCommand.run(['--bogus'], captureIO().io)).rejects.toBeInstanceOf(UsageError);
  });
});
