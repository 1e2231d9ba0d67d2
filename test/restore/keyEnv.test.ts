/**
 * VAULTIK_PRIVATE_KEY holding an identity file's text (`"$(cat key.txt)"`, age-keygen's comment
 * lines first) is a key, not a path; and a malformed value is never echoed, by any command that
 * reads the key, on stderr or in --json output.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseIdentityFile } from '../../src/crypto/index.js';
import { openStorage } from '../../src/storage/index.js';
import { runMain } from '../helpers/io.js';
import { makeTempDir } from '../helpers/tmp.js';
import { runTool } from '../helpers/tools.js';
import { buildRichTree, compareTrees } from '../helpers/tree.js';
import { runCli, snapshotTree } from './helpers.js';

const tmp = makeTempDir('vaultik-keyenv-');
afterAll(tmp.cleanup);
const keyFile = join(tmp.dir, 'key.txt');
let keyText = '';
const src = join(tmp.dir, 'src');
const store = join(tmp.dir, 'store');
const url = `file://${store}`;

beforeAll(async () => {
  runTool('age-keygen', ['-o', keyFile]);
  keyText = readFileSync(keyFile, 'utf8');
  mkdirSync(src);
  await buildRichTree(src, { bigSize: 10_000 });
  const recipients = parseIdentityFile(keyText).map((id) => id.recipient);
  mkdirSync(store, { recursive: true }); // vaultik never creates a store's root
  await snapshotTree(openStorage({ type: 'local', path: store, prefix: 'pc/' }), src, { recipients, tmp: tmp.dir, host: 'laptop' });
}, 60_000);

describe('VAULTIK_PRIVATE_KEY', () => {
  it('holding the text of an age-keygen identity file (comments first) restores (CLI child process)', async () => {
    expect(keyText).toMatch(/^# created: /); // what makes the value look like no key at first
    const home = join(tmp.dir, 'home');
    mkdirSync(home);
    const target = join(tmp.dir, 'target');
    // As the shell passes "$(cat key.txt)": the trailing newline stripped.
    const r = await runCli(['restore', url, 'pc', 'latest', target], { HOME: home, TMPDIR: home, VAULTIK_PRIVATE_KEY: keyText.trimEnd() });
    expect(r.code, r.stderr).toBe(0);
    expect(compareTrees(src, join(target, src), { ignore: (_rel, type) => type === 'socket', owners: true })).toEqual([]);
  });

  it('a malformed value is never echoed: not by restore, ls, prune or verify --deep, not in --json', async () => {
    // A well-formed prefix and a broken key: a secret-looking value that is neither key nor path.
    const secretPart = 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ';
    const bad = [
      `# created: 2026-01-01T00:00:00Z\n# public key: age1xyz\n${secretPart}`,
      `${secretPart}X`,
      `not a key ${secretPart}`,
      `/no/such/dir/${secretPart}`,
    ];
    const commands = [
      ['restore', url, 'pc', 'latest', join(tmp.dir, 'never')],
      ['ls', url, 'pc', 'latest'],
      ['prune', url, 'pc', '--dry-run'],
      ['verify', url, 'pc', '--deep'],
    ];
    for (const value of bad) {
      for (const argv of commands) {
        for (const json of [false, true]) {
          const r = await runMain(json ? [...argv, '--json'] : argv, { HOME: tmp.dir, TMPDIR: tmp.dir, VAULTIK_PRIVATE_KEY: value });
          const what = `${argv[0]}${json ? ' --json' : ''} with value #${bad.indexOf(value)}`;
          expect(r.code, what).not.toBe(0);
          expect(r.stderr + r.stdout, what).toMatch(/VAULTIK_PRIVATE_KEY/);
          expect(r.stderr, what).not.toContain('AGE-SECRET-KEY-1Q');
          expect(r.stdout, what).not.toContain('AGE-SECRET-KEY-1Q');
        }
      }
    }
  }, 60_000);
});
