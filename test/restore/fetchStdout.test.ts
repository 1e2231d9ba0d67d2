/**
 * `fetch … -` writes the file's bytes to stdout (like `restic dump`), nothing else; a directory
 * is a usage error. fetch's summary names what it wrote, not the directory it wrote into.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../helpers/tmp.js';
import { localSnapshot, runCli, spawnCli } from './helpers.js';

const tmp = makeTempDir('vaultik-fetch-stdout-');
afterAll(tmp.cleanup);
// Every byte value, invalid UTF-8 included, over more than one chunk.
const content = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => i)), randomBytes(300_000)]);
let src = '';
let url = '';
let keyFile = '';

beforeAll(async () => {
  const made = await localSnapshot(tmp.dir, (dir) => {
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'sub', 'data.bin'), content);
  });
  ({ src, keyFile } = made);
  url = `file://${made.store}`;
}, 60_000);

/** Runs the CLI and keeps stdout as bytes. */
function runBytes(args: string[], cwd: string): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, { VAULTIK_PRIVATE_KEY: keyFile }, cwd);
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
}

describe('fetch', () => {
  it('`-` writes the file to stdout, byte for byte, and creates no file named "-"', async () => {
    const cwd = join(tmp.dir, 'cwd1');
    mkdirSync(cwd);
    const r = await runBytes(['fetch', url, 'pc', 'latest', `${src}/sub/data.bin`, '-'], cwd);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.equals(content)).toBe(true);
    expect(existsSync(join(cwd, '-'))).toBe(false);
  });

  it('`-` for a directory is a usage error (exit 2), nothing on stdout', async () => {
    const cwd = join(tmp.dir, 'cwd2');
    mkdirSync(cwd);
    const r = await runBytes(['fetch', url, 'pc', 'latest', `${src}/sub`, '-'], cwd);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout.length).toBe(0);
    expect(r.stderr).toMatch(/directory/);
    expect(existsSync(join(cwd, '-'))).toBe(false);
  });

  it('the summary names the file written, into a directory or at a path', async () => {
    const dir = join(tmp.dir, 'into');
    mkdirSync(dir);
    const a = await runCli(['fetch', url, 'pc', 'latest', `${src}/sub/data.bin`, dir], { VAULTIK_PRIVATE_KEY: keyFile });
    expect(a.code, a.stderr).toBe(0);
    expect(a.stdout).toContain(`into ${join(dir, 'data.bin')}\n`);
    const path = join(tmp.dir, 'renamed.bin');
    const b = await runCli(['fetch', url, 'pc', 'latest', `${src}/sub/data.bin`, path, '--json'], { VAULTIK_PRIVATE_KEY: keyFile });
    expect(b.code, b.stderr).toBe(0);
    expect(b.stdout).toContain(`"target":${JSON.stringify(path)}`);
  });
});
