/**
 * Issue 16 item 15: every command's --json output is JSON Lines: one object per line, each with
 * a `type` saying what it is (README.md, "JSON output"). The real CLI (dist/cli/bin.js) on a real
 * tree with hard links; every stdout line is parsed on its own.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { linkSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cleanEnv, ensureBuilt, runCli, writeBackupConfig } from '../backup/cli.js';
import { jsonLines } from '../helpers/io.js';
import { makeTempDir } from '../helpers/tmp.js';
import { makeKey, writeKeyFile } from '../restore/helpers.js';

const tmp = makeTempDir('vaultik-json-lines-');
afterAll(tmp.cleanup);
const key = makeKey();
const keyFile = writeKeyFile(key, join(tmp.dir, 'key.txt'));
const src = join(tmp.dir, 'src');
const store = join(tmp.dir, 'store');
const url = `file://${store}`;
const config = join(tmp.dir, 'backup.yaml');
const env = cleanEnv({ HOME: tmp.dir, VAULTIK_PRIVATE_KEY: keyFile });

beforeAll(() => {
  ensureBuilt();
  mkdirSync(store);
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'a'), 'a\n');
  writeFileSync(join(src, 'sub', 'b'), 'b\n');
  linkSync(join(src, 'a'), join(src, 'a-link'));
  writeBackupConfig(config, { src, store, recipient: key.recipient, indexPath: join(tmp.dir, 'index.sqlite') });
}, 120_000);

/** Runs `args` with --json, exit `code`; returns its lines, each of which has a string type. */
async function lines(args: string[], code = 0): Promise<{ type: string; [k: string]: unknown }[]> {
  const r = await runCli([...args, '--json'], env);
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
  const parsed = jsonLines(r.stdout);
  expect(parsed.length, args.join(' ')).toBeGreaterThan(0);
  for (const l of parsed) expect(typeof l.type, `${args.join(' ')}: ${JSON.stringify(l)}`).toBe('string');
  return parsed;
}

describe('--json is JSON Lines for every command (issue 16 item 15)', () => {
  it('backup, snapshots, ls, restore, fetch, verify, forget, prune', async () => {
    expect((await lines(['backup', config])).at(-1)).toMatchObject({ type: 'summary', files: 3, hardLinks: 1 });
    const snaps = await lines(['snapshots', url, 'pc']);
    expect(snaps).toEqual([expect.objectContaining({ type: 'snapshot', host: 'h' })]);
    const id = snaps[0]!.id as string;

    const ls = await lines(['ls', url, 'pc', 'latest', src]);
    expect(ls.every((l) => l.type === 'entry')).toBe(true);
    expect(ls.map((l) => l.path)).toEqual([src, `${src}/a`, `${src}/a-link`, `${src}/sub`, `${src}/sub/b`]);

    const restore = await lines(['restore', url, 'pc', id, join(tmp.dir, 'r')]);
    expect(restore.at(-1)).toMatchObject({ type: 'summary', files: 3, hardLinks: 1 });
    expect((await lines(['fetch', url, 'pc', id, `${src}/sub`, join(tmp.dir, 'f')])).at(-1)).toMatchObject({ type: 'summary' });

    expect(await lines(['verify', url, 'pc'])).toEqual([expect.objectContaining({ type: 'summary', exitCode: 0 })]);
    expect(await lines(['forget', url, 'pc', '--keep-last', '1', '--dry-run'])).toEqual([expect.objectContaining({ type: 'summary', dryRun: true })]);
    expect(await lines(['prune', url, 'pc', '--dry-run'])).toEqual([expect.objectContaining({ type: 'summary', dryRun: true, exitCode: 0 })]);
  });

  it('text output: sizes in IEC units (KiB, MiB) in backup, restore, verify, prune and snapshots alike', async () => {
    const human = async (args: string[]): Promise<string> => {
      const r = await runCli(args, env);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      return r.stdout;
    };
    const outputs = [
      await human(['backup', config]),
      await human(['restore', url, 'pc', 'latest', join(tmp.dir, 'r-text')]),
      await human(['verify', url, 'pc']),
      await human(['prune', url, 'pc', '--dry-run']),
      await human(['snapshots', url, 'pc']),
    ];
    for (const out of outputs) {
      expect(out).toMatch(/\d (B|KiB|MiB)\b/);
      expect(out).not.toMatch(/\d ?(kB|KB|MB|GB)\b/);
    }
  });
});
