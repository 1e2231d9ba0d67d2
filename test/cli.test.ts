import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, expect } from 'vitest';
import { generateKeyPair } from '../src/crypto/index.js';
import { main } from '../src/cli/main.js';
import { captureIO } from './helpers/io.js';

describe('cli', () => {
  it('--help lists the commands of the original specification (backup, restore, fetch, prune)', async () => {
    const c = captureIO();
    expect(await main(['--help'], c.io)).toBe(0);
    for (const name of ['backup', 'restore', 'fetch', 'prune']) expect(c.out()).toMatch(new RegExp(`^  ${name} `, 'm'));
  });

  it('an unknown command is a usage error (exit 2)', async () => {
    const c = captureIO();
    expect(await main(['frobnicate'], c.io)).toBe(2);
    expect(c.err()).toContain("unknown command 'frobnicate'");
  });
});

describe('store arguments', () => {
  it('<bucket> <prefix> together with --config: a usage error that says to give one of them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vaultik-cli-'));
    try {
      const store = join(dir, 'store');
      mkdirSync(store);
      const config = join(dir, 'vaultik.yaml');
      writeFileSync(config, `source_dirs: [${dir}]\nage_recipient: ${generateKeyPair().recipient}\nlocal: {path: ${store}}\nindex_path: ${join(dir, 'cache.sqlite')}\n`);
      const c = captureIO();
      expect(await main(['snapshots', 'vb', 'p/', '--config', config], c.io)).toBe(2);
      expect(c.err()).toMatch(/names the store: give either <bucket> <prefix> or --config, not both \(got 'vb' 'p\/'\)/);
      const ok = captureIO();
      expect(await main(['snapshots', '--config', config], ok.io)).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
