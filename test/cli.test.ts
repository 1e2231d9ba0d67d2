import { describe, it, expect } from 'vitest';
import { PassThrough } from 'node:stream';
import { main } from '../src/cli/main.js';
import type { CommandIO } from '../src/cli/command.js';

function capture(): { io: CommandIO; out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let o = '';
  let e = '';
  stdout.on('data', (d: Buffer) => (o += d.toString()));
  stderr.on('data', (d: Buffer) => (e += d.toString()));
  const io: CommandIO = { stdout, stderr, env: {}, isTTY: false, signal: new AbortController().signal };
  return { io, out: () => o, err: () => e };
}

describe('cli', () => {
  it('--help lists every command of DESIGN.md', async () => {
    const c = capture();
    expect(await main(['--help'], c.io)).toBe(0);
    for (const name of ['backup', 'restore', 'fetch', 'prune']) expect(c.out()).toMatch(new RegExp(`^  ${name} `, 'm'));
  });

  it('an unknown command is a usage error (exit 2)', async () => {
    const c = capture();
    expect(await main(['frobnicate'], c.io)).toBe(2);
    expect(c.err()).toContain("unknown command 'frobnicate'");
  });
});
