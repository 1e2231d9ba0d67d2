import { describe, it, expect } from 'vitest';
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
