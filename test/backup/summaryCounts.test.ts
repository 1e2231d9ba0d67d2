/**
 * Issue 16 item 15: what backup and restore report adds up, and --json carries raw paths.
 * - Hard links: the other names of a file are their own category ("2 hard links"), so new +
 *   changed + unchanged + hard links = files, in the text summary and in --json.
 * - restore's files line says how many were written and how many linked.
 * - A --json warning's path is the path itself, not the quoted form the text output shows.
 * The real CLI (dist/cli/bin.js) on a real tree.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { chmodSync, chownSync, linkSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { MAIN, cleanEnv, ensureBuilt, runCli, startNode, writeBackupConfig, type CliResult } from './cli.js';
import { jsonLines } from '../helpers/io.js';
import { makeTempDir } from '../helpers/tmp.js';
import { makeKey, writeKeyFile } from '../restore/helpers.js';

const tmp = makeTempDir('vaultik-summary-counts-');
afterAll(tmp.cleanup);
const key = makeKey();
const keyFile = writeKeyFile(key, join(tmp.dir, 'key.txt'));
const src = join(tmp.dir, 'src');
const store = join(tmp.dir, 'store');
const url = `file://${store}`;
const config = join(tmp.dir, 'backup.yaml');


beforeAll(() => {
  ensureBuilt();
  mkdirSync(store);
  mkdirSync(join(src, 'sub'), { recursive: true });
  // 8 distinct files, two of them with one more name each: 10 file names.
  for (let i = 0; i < 8; i++) writeFileSync(join(src, i < 4 ? `f${i}` : `sub/f${i}`), `content ${i}\n`);
  linkSync(join(src, 'f0'), join(src, 'f0-link'));
  linkSync(join(src, 'sub/f5'), join(src, 'sub/f5-link'));
  writeBackupConfig(config, { src, store, recipient: key.recipient, indexPath: join(tmp.dir, 'state', 'index.sqlite') });
}, 120_000);

describe('summaries add up (issue 16 item 15)', () => {
  it('backup: new + changed + unchanged + hard links = files, text and --json', async () => {
    const first = await runCli(['backup', config], cleanEnv({ HOME: tmp.dir }));
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^files: +10 \(8 new, 0 changed, 0 unchanged, 2 hard links\), /m);

    writeFileSync(join(src, 'f1'), 'changed content, longer\n');
    const second = await runCli(['backup', config, '--json'], cleanEnv({ HOME: tmp.dir }));
    expect(second.code, second.stderr).toBe(0);
    const summary = jsonLines(second.stdout).find((l) => l.type === 'summary')!;
    expect(summary).toMatchObject({ files: 10, filesNew: 0, filesChanged: 1, filesUnchanged: 7, hardLinks: 2 });
    const n = (k: string): number => summary[k] as number;
    expect(n('filesNew') + n('filesChanged') + n('filesUnchanged') + n('hardLinks')).toBe(n('files'));
    for (const p of jsonLines(second.stdout).filter((l) => l.type === 'progress')) {
      expect((p.filesNew as number) + (p.filesChanged as number) + (p.filesUnchanged as number) + (p.hardLinks as number)).toBeLessThanOrEqual(p.files as number);
    }
  });

  it('restore: files = written + hard links, text and --json', async () => {
    const env = cleanEnv({ HOME: tmp.dir, VAULTIK_PRIVATE_KEY: keyFile });
    const r = await runCli(['restore', url, 'pc', 'latest', join(tmp.dir, 'restored')], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^files: +10 \(8 written, 2 hard links\), \d+ dirs/m);
    const j = await runCli(['restore', url, 'pc', 'latest', join(tmp.dir, 'restored-json'), '--json'], env);
    expect(j.code, j.stderr).toBe(0);
    const summary = jsonLines(j.stdout).find((l) => l.type === 'summary')!;
    expect(summary).toMatchObject({ files: 10, hardLinks: 2 });
  });

  it("a --json warning carries the raw path; only the text output quotes it", async () => {
    // As root, back up as nobody (root reads everything); otherwise the mode keeps this user out.
    const isRoot = process.getuid?.() === 0;
    const ids = isRoot ? { uid: 65534, gid: 65534 } : {};
    const probe = spawnSync(process.execPath, ['--version'], ids);
    expect(probe.error?.message, `${process.execPath} must be executable by uid 65534 for this test`).toBeUndefined();
    const work = join(tmp.dir, 'nobody');
    const wsrc = join(work, 'src');
    const wstore = join(work, 'store');
    const secret = join(wsrc, "it's private");
    mkdirSync(secret, { recursive: true });
    mkdirSync(wstore);
    writeFileSync(join(secret, 'inner'), 'hidden\n');
    writeFileSync(join(wsrc, 'public'), 'public\n');
    const cfg = join(work, 'backup.yaml');
    writeBackupConfig(cfg, { src: wsrc, store: wstore, recipient: key.recipient, indexPath: join(work, 'index.sqlite') });
    chmodSync(tmp.dir, 0o755);
    if (isRoot) {
      spawnSync('chown', ['-R', '65534:65534', work]);
      chownSync(secret, 0, 0);
    }
    chmodSync(secret, 0o700);
    if (!isRoot) chmodSync(secret, 0o000);
    const run = (args: string[]): Promise<CliResult> => startNode([MAIN, ...args], { PATH: process.env.PATH, HOME: work }, ids).done;
    try {
      const j = await run(['backup', cfg, '--json']);
      expect(j.code, j.stderr).toBe(3);
      const warnings = jsonLines(j.stdout).filter((l) => l.type === 'warning');
      expect(warnings.map((w) => w.path)).toEqual([secret]);
      const t = await run(['backup', cfg]);
      expect(t.code, t.stderr).toBe(3);
      // The text output escapes the quote inside its quoted path.
      expect(t.stderr).toContain(`'${wsrc}/it\\x27s private'`);
    } finally {
      chmodSync(secret, 0o700);
    }
  });
});
