/**
 * The commands as a user runs them: the real CLI in a child process with a fresh HOME, no state
 * cache and no config — only the store and VAULTIK_PRIVATE_KEY — restores a rich tree; fetch,
 * ls and snapshots (keyless) through the CLI; --config for the store; argument errors.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../../src/cli/main.js';
import { ExitCode } from '../../src/errors.js';
import { openStorage } from '../../src/storage/index.js';
import { buildRichTree, compareTrees, type TypeName } from '../helpers/tree.js';
import { captureIO, jsonLines } from '../helpers/io.js';
import { makeTempDir } from '../helpers/tmp.js';
import { jsonSummary, makeKey, runCli, snapshotTree, writeKeyFile, type SnapshotTreeResult } from './helpers.js';
import { modeString } from '../../src/cli/commands/ls.js';

const tmp = makeTempDir('vaultik-restore-cli-');
afterAll(tmp.cleanup);
const key = makeKey();
const keyFile = writeKeyFile(key, join(tmp.dir, 'key.txt'));
const src = join(tmp.dir, 'src');
const store = join(tmp.dir, 'store');
// vaultik never creates the store directory itself.
mkdirSync(store);
const url = `file://${store}`;
let snaps: SnapshotTreeResult[] = [];

const ignore = (_rel: Buffer, type: TypeName): boolean => type === 'socket';

beforeAll(async () => {
  mkdirSync(src);
  await buildRichTree(src, { bigSize: 600_000 });
  const storage = openStorage({ type: 'local', path: store, prefix: 'pc/' });
  snaps = [
    await snapshotTree(storage, src, { recipients: key.recipients, tmp: tmp.dir, host: 'laptop' }),
    await snapshotTree(storage, src, { recipients: key.recipients, tmp: tmp.dir, host: 'laptop' }),
  ];
}, 60_000);

describe('vaultik restore/fetch/ls/snapshots', () => {
  it('restores on a "fresh machine": child process, empty HOME, only the store and the key', async () => {
    const home = join(tmp.dir, 'fresh-home');
    mkdirSync(home);
    const target = join(tmp.dir, 'fresh-target');
    const r = await runCli(['restore', url, 'pc', 'latest', target], { HOME: home, VAULTIK_PRIVATE_KEY: keyFile, TMPDIR: home });
    expect(r.stdout).toMatch(/^restored snapshot laptop-.*\nfiles: +[\d,]+ \([\d,]+ written, 2 hard links\), [\d,]+ dirs, [\d,]+ symlinks/);
    expect(r.code).toBe(0);
    expect(compareTrees(src, join(target, src), { ignore, owners: true })).toEqual([]);
    // The decrypted metadata was a temp file: gone.
    const { readdirSync } = await import('node:fs');
    expect(readdirSync(home)).toEqual([]);
  });

  it('real `vaultik backup` on one "machine", restore on another: two child processes, separate HOMEs', async () => {
    const srcHome = join(tmp.dir, 'source-home');
    const freshHome = join(tmp.dir, 'fresh-home-2');
    mkdirSync(srcHome);
    mkdirSync(freshHome);
    const store2 = join(tmp.dir, 'store2');
    mkdirSync(store2);
    const cfg = join(srcHome, 'vaultik.yaml');
    writeFileSync(
      cfg,
      [`source_dirs: [${JSON.stringify(src)}]`, `age_recipient: ${key.recipient}`, `local: {path: ${JSON.stringify(store2)}, prefix: box}`, 'chunk_size: 64KiB', 'blob_size_limit: 1MiB', 'hostname: box'].join('\n') + '\n',
    );
    const b = await runCli(['backup', cfg], { HOME: srcHome });
    expect(b.code, b.stderr).toBe(0);
    const target = join(tmp.dir, 'fresh-target-2');
    const r = await runCli(['restore', `file://${store2}`, 'box', 'latest', target, '--json'], { HOME: freshHome, VAULTIK_PRIVATE_KEY: keyFile, TMPDIR: freshHome });
    expect(r.code, r.stderr).toBe(0);
    expect(jsonSummary(r.stdout).failed).toBe(0);
    expect(compareTrees(src, join(target, src), { ignore, owners: true })).toEqual([]);
  });

  it('fetch through the CLI, with the key given as a string', async () => {
    const out = join(tmp.dir, 'fetched.txt');
    const c = captureIO({ VAULTIK_PRIVATE_KEY: key.identity }, 'latin1');
    expect(await main(['fetch', url, 'pc', snaps[0]!.id, `${src}/text.txt`, out], c.io)).toBe(0);
    expect(readFileSync(out, 'utf8')).toBe('hello, vaultik\n');
    const j = captureIO({ VAULTIK_PRIVATE_KEY: key.identity }, 'latin1');
    expect(await main(['fetch', url, 'pc', 'latest', `${src}/text.txt`, out, '--json'], j.io)).toBe(ExitCode.USAGE);
    expect(j.err()).toContain('already exists');
  });

  it('snapshots lists ids, hosts, times and stored sizes without a key (--json too)', async () => {
    const c = captureIO({}, 'latin1');
    expect(await main(['snapshots', url, 'pc'], c.io)).toBe(0);
    const lines = c.out().trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+HOST\s+TIME \(UTC\)\s+BLOBS\s+STORED$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(snaps.map((s) => s.id));
    const j = captureIO({}, 'latin1');
    expect(await main(['snapshots', url, 'pc', '--json'], j.io)).toBe(0);
    const rows = jsonLines(j.out()) as unknown as { type: string; id: string; host: string; blobs: number; blobBytes: number }[];
    expect(rows.every((r) => r.type === 'snapshot')).toBe(true);
    expect(rows.map((r) => r.id)).toEqual(snaps.map((s) => s.id));
    expect(rows[0]!.host).toBe('laptop');
    // From the keyless manifest: the data blobs and the shards.
    const stored = [...snaps[0]!.blobs, ...snaps[0]!.shards];
    expect(snaps[0]!.shards.length).toBeGreaterThan(0);
    expect(rows[0]!.blobs).toBe(stored.length);
    expect(rows[0]!.blobBytes).toBe(stored.reduce((a, b) => a + b.size, 0));
  });

  it('ls lists paths (raw bytes), -l the long form, --json objects', async () => {
    const c = captureIO({ VAULTIK_PRIVATE_KEY: keyFile }, 'latin1');
    expect(await main(['ls', url, 'pc', 'latest', src], c.io)).toBe(0);
    const paths = c.out().split('\n');
    expect(paths[0]).toBe(src);
    expect(paths).toContain(`${src}/a/b/c/deep.txt`);
    // A non-UTF-8 name comes out as its bytes (read here as latin1).
    expect(paths).toContain(`${src}/names/f\xff\xfe`);
    const l = captureIO({ VAULTIK_PRIVATE_KEY: keyFile }, 'latin1');
    expect(await main(['ls', url, 'pc', 'latest', `${src}/links`, '-l'], l.io)).toBe(0);
    expect(l.out()).toMatch(/^lrwxrwxrwx +\d+ +\d+ +0 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d .*\/links\/rel -> \.\.\/text\.txt$/m);
    const j = captureIO({ VAULTIK_PRIVATE_KEY: keyFile }, 'latin1');
    expect(await main(['ls', url, 'pc', 'latest', `${src}/setuid`, '--json'], j.io)).toBe(0);
    const rows = jsonLines(j.out());
    expect(rows).toEqual([expect.objectContaining({ type: 'entry', path: `${src}/setuid`, kind: 'file', mode: 0o4755, size: 4 })]);
    expect(modeString('file', 0o4755)).toBe('-rwsr-xr-x');
    expect(modeString('dir', 0o1777)).toBe('drwxrwxrwt');
  });

  it('--config takes the store from a config file', async () => {
    const cfg = join(tmp.dir, 'vaultik.yaml');
    writeFileSync(cfg, [`source_dirs: [${src}]`, `age_recipient: ${key.recipient}`, `local: {path: ${store}, prefix: pc}`].join('\n') + '\n');
    const c = captureIO({ VAULTIK_PRIVATE_KEY: keyFile }, 'latin1');
    const code = await main(['snapshots', '--config', cfg, '--json'], c.io);
    expect(c.err()).toBe('');
    expect(code).toBe(0);
    expect(jsonLines(c.out()).length).toBe(2);
  });

  it('on a terminal: a live progress line on stderr, the summary on stdout', async () => {
    const c = captureIO({ VAULTIK_PRIVATE_KEY: keyFile }, 'latin1');
    c.io.isTTY = true;
    expect(await main(['restore', url, 'pc', 'latest', join(tmp.dir, 'tty-target')], c.io)).toBe(0);
    expect(c.err()).toContain('\r\x1b[2Krestoring laptop-');
    expect(c.err()).toMatch(/restoring laptop-\S+: [\d,]+\/[\d,]+ files · /);
    expect(c.out()).toMatch(/^restored snapshot laptop-/);
    expect(c.out()).toMatch(/^duration: +\S+ \(.*\/s\)$/m);
  });

  it('argument errors: missing key, missing arguments, bad patterns (exit 2)', async () => {
    const a = captureIO({}, 'latin1');
    expect(await main(['restore', url, 'pc', 'latest', join(tmp.dir, 'x')], a.io)).toBe(ExitCode.USAGE);
    expect(a.err()).toContain('set VAULTIK_PRIVATE_KEY');
    const b = captureIO({ VAULTIK_PRIVATE_KEY: keyFile }, 'latin1');
    expect(await main(['restore', url, 'pc'], b.io)).toBe(ExitCode.USAGE);
    expect(b.err()).toContain('usage: vaultik restore');
    const c = captureIO({ VAULTIK_PRIVATE_KEY: keyFile }, 'latin1');
    expect(await main(['restore', url, 'pc', 'latest', join(tmp.dir, 'y'), '--include', '[oops'], c.io)).toBe(ExitCode.USAGE);
    expect(c.err()).toContain('--include');
    const d = captureIO({ VAULTIK_PRIVATE_KEY: 'AGE-SECRET-KEY-1NOTAKEY' }, 'latin1');
    expect(await main(['ls', url, 'pc', 'latest'], d.io)).toBe(ExitCode.USAGE);
    expect(d.err()).not.toContain('NOTAKEY');
  });
});
