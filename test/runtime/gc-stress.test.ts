/**
 * Node 24.19+ aborts a process whose native addon frees an ObjectWrap-based object in a GC that
 * runs outside a JS context; better-sqlite3 <= 12 did that for every Statement, so every backup
 * died with SIGABRT on Node 24 (issue "Runs on the Node.js people have"). These tests force
 * collections across statement churn, worker exits and whole CLI runs, on whatever Node runs the
 * suite (.ci/run runs it on Node 22 and on Node 24).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, ensureBuilt, REPO, runCli, startNode } from '../backup/cli.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { compareTrees } from '../helpers/tree.js';

/** A preload that collects garbage every few milliseconds for the whole life of the process. */
const GC_OFTEN = `data:text/javascript,setInterval(() => globalThis.gc(), 3).unref();`;

let ws: Workspace | undefined;
beforeAll(() => ensureBuilt(), 120_000);
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

describe(`SQLite under forced garbage collection (node ${process.version})`, () => {
  it('survives statement churn and worker exits', async () => {
    const child = new URL('./gc-stress-child.mjs', import.meta.url);
    const dist = pathToFileURL(join(REPO, 'dist') + '/').href;
    const r = await startNode(['--expose-gc', child.pathname, dist]).done;
    expect({ code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
    expect(r.stdout.trim()).toBe('ok caches=40 workers=6');
  });

  it('backs up, backs up again and restores with collections every 3 ms', async () => {
    ws = makeWorkspace();
    mkdirSync(join(ws.src, 'd'));
    for (let i = 0; i < 300; i++) writeFileSync(join(ws.src, 'd', `f${i}.txt`), `file ${i}\n`.repeat(i + 1));
    writeFileSync(join(ws.src, 'big.bin'), Buffer.alloc(600_000, 7));
    ws.writeConfig();
    const gcArgs = ['--expose-gc', '--import', GC_OFTEN];
    for (const label of ['first', 'no-change']) {
      const r = await runCli(['backup', ws.configPath, '--cron'], cleanEnv(), gcArgs);
      expect({ label, code: r.code, signal: r.signal, stderr: r.stderr }).toEqual({ label, code: 0, signal: null, stderr: '' });
    }
    const target = join(ws.root, 'restored');
    const keyEnv = cleanEnv({ VAULTIK_PRIVATE_KEY: ws.identity });
    const r = await runCli(['restore', `file://${ws.store}`, '', 'latest', target], keyEnv, gcArgs);
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null });
    expect(compareTrees(ws.src, join(target, ws.src))).toEqual([]);
  });
});
