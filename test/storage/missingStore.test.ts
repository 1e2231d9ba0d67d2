/**
 * A local store whose directory is missing (a USB disk not mounted) is an error (exit 6), never
 * created silently: creating it would fill the root file system, and reading it would report
 * "no snapshots".
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { generateKeyPair } from '../../src/crypto/index.js';
import { runMain } from '../helpers/io.js';

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'vaultik-missing-'));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('a missing local store', () => {
  it('backup exits 6 and creates nothing', async () => {
    const src = join(root, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'a.txt'), 'hello');
    const store = join(root, 'mnt', 'usb', 'backup');
    const { recipient } = generateKeyPair();
    const config = join(root, 'vaultik.yaml');
    writeFileSync(
      config,
      [`source_dirs: [${src}]`, `age_recipient: ${recipient}`, `local: {path: ${store}, prefix: host1}`, `index_path: ${join(root, 'cache', 'i.sqlite')}`].join('\n') + '\n',
    );
    const r = await runMain(['backup', config, '--json'], {});
    expect(r.code).toBe(6);
    expect(r.stderr).toContain(`local store ${store} does not exist`);
    expect(existsSync(join(root, 'mnt'))).toBe(false);
  });

  for (const args of [['snapshots'], ['restore', '{url}', 'x/', 'latest', '{target}'], ['verify']]) {
    it(`${args[0]} exits 6`, async () => {
      const store = join(root, 'nonexistent');
      const url = pathToFileURL(store).href;
      const argv = args.length === 1 ? [args[0]!, url, 'x/'] : args.map((a) => a.replace('{url}', url).replace('{target}', join(root, 'out')));
      const { identity } = generateKeyPair();
      const r = await runMain(argv, { VAULTIK_PRIVATE_KEY: identity });
      expect(r.code).toBe(6);
      expect(r.stderr).toContain(`local store ${store} does not exist`);
      expect(existsSync(store)).toBe(false);
    });
  }
});
