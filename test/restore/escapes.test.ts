/**
 * Hostile names cannot drive the terminal: `ls` (plain and -l, link targets) and the restore
 * messages escape control characters (C0 with ESC, CR and LF, DEL, C1 as UTF-8 or raw bytes);
 * --json keeps the exact names. Real files with such names, a real snapshot, the real CLI.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import { escapeControls, escapeControlText } from '../../src/fs/paths.js';
import { openStorage } from '../../src/storage/index.js';
import { captureIO, jsonLines } from '../helpers/io.js';
import { makeTempDir } from '../helpers/tmp.js';
import { makeKey, snapshotTree, writeKeyFile } from './helpers.js';

const tmp = makeTempDir('vaultik-escapes-');
afterAll(tmp.cleanup);
const key = makeKey();
const keyFile = writeKeyFile(key, join(tmp.dir, 'key.txt'));
const src = join(tmp.dir, 'src');
const store = join(tmp.dir, 'store');
const url = `file://${store}`;
const EVIL = 'a\x1b[2Jb\nfake';
const C1 = 'c1-\u009b31m';

beforeAll(async () => {
  mkdirSync(src);
  writeFileSync(join(src, EVIL), 'x');
  writeFileSync(join(src, C1), 'y');
  writeFileSync(join(src, 'cr\rdel\x7f'), 'z');
  writeFileSync(Buffer.from(`${src}/raw-\x9b-\xff`, 'latin1'), 'w');
  symlinkSync('\x1b]0;title\x07target', join(src, 'link'));
  mkdirSync(store, { recursive: true }); // vaultik never creates a store's root
  await snapshotTree(openStorage({ type: 'local', path: store, prefix: 'pc/' }), src, { recipients: key.recipients, tmp: tmp.dir, host: 'laptop' });
}, 60_000);

/** No raw control character inside a line: only the line feeds that end entries. */
function expectClean(out: string, lines: number): void {
  expect(out).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f\x80-\x9f]/); // eslint-disable-line no-control-regex
  expect(out.split('\n')).toHaveLength(lines + 1);
}

describe('control characters in names', () => {
  it('ls escapes them, plain and -l (link targets too); --json keeps the names', async () => {
    const c = captureIO({ VAULTIK_PRIVATE_KEY: keyFile }, 'latin1');
    expect(await main(['ls', url, 'pc', 'latest', src], c.io)).toBe(0);
    expectClean(c.out(), 6);
    const lines = c.out().split('\n');
    expect(lines).toContain(`${src}/a\\x1b[2Jb\\x0afake`);
    expect(lines).toContain(`${src}/c1-\\xc2\\x9b31m`);
    expect(lines).toContain(`${src}/cr\\x0ddel\\x7f`);
    // Not UTF-8: other bytes stay as they are (read here as latin1), a raw C1 byte is escaped.
    expect(lines).toContain(`${src}/raw-\\x9b-\xff`);

    const l = captureIO({ VAULTIK_PRIVATE_KEY: keyFile }, 'latin1');
    expect(await main(['ls', url, 'pc', 'latest', src, '-l'], l.io)).toBe(0);
    expectClean(l.out(), 6);
    expect(l.out()).toMatch(/\/link -> \\x1b\]0;title\\x07target$/m);

    const j = captureIO({ VAULTIK_PRIVATE_KEY: keyFile });
    expect(await main(['ls', url, 'pc', 'latest', src, '--json'], j.io)).toBe(0);
    const rows = jsonLines(j.out()) as unknown as { path: string; target?: string }[];
    expect(rows.map((r) => r.path)).toContain(`${src}/${EVIL}`);
    expect(rows.find((r) => r.path === `${src}/link`)?.target).toBe('\x1b]0;title\x07target');
  });

  it('escapeControls leaves text, backslashes doubled, and escapes controls only', () => {
    expect(escapeControls(Buffer.from('café/ő/日本')).toString()).toBe('café/ő/日本');
    expect(escapeControls(Buffer.from('a\\b')).toString()).toBe('a\\\\b');
    expect(escapeControls(Buffer.from([0x61, 0x09, 0xc2, 0x85, 0xc3])).toString('latin1')).toBe('a\\x09\\xc2\\x85\xc3');
    expect(escapeControlText('no such file: /x/\x1b[31m\u0085')).toBe('no such file: /x/\\x1b[31m\\u0085');
  });
});
