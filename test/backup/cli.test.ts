/**
 * `vaultik backup` as a user runs it: the real CLI in a child process, against s3rver (directly
 * and through the write-only fault proxy) and the local store. Exit codes, --cron silence and
 * failures, --json, the lock, SIGINT, bad configs. No VAULTIK_PRIVATE_KEY and no identity file
 * exist while a backup runs; the tests decrypt afterwards with the standard tools.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { acquireLock, lockPathFor } from '../../src/cache/index.js';
import { startFaultProxy, WRITE_OPERATIONS, type FaultProxy } from '../helpers/faultProxy.js';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.js';
import { buildRichTree, listTree, pseudoRandom } from '../helpers/tree.js';
import { hasTool } from '../helpers/tools.js';
import { cleanEnv, ensureBuilt, MAIN, runCli, startCli } from './cli.js';
import { decryptSnapshot, makeWorkspace, sqlite, type Workspace } from './helpers.js';

let s3: S3rverHandle;
let ws: Workspace | undefined;

beforeAll(async () => {
  ensureBuilt();
  s3 = await startS3rver();
}, 120_000);
afterAll(async () => {
  await s3?.stop();
});
afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

/** Objects s3rver holds under `prefix`: key → file with the bytes. */
function s3Objects(prefix: string): Map<string, string> {
  const root = join(s3.directory, s3.bucket);
  const out = new Map<string, string>();
  const visit = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) visit(path);
      else if (name.endsWith('._S3rver_object')) out.set(path.slice(root.length + 1, -'._S3rver_object'.length), path);
    }
  };
  visit(root);
  return new Map([...out].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]));
}

function s3Yaml(endpoint: string, prefix: string, bucket = s3.bucket): string {
  return `s3: {endpoint: '${endpoint}', bucket: ${bucket}, prefix: ${prefix}, region: us-east-1, access_key_id: S3RVER, secret_access_key: S3RVER}`;
}

/** A TCP port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('vaultik backup (real CLI)', () => {
  it('runs through the package executable: package.json bin is a built file with a node shebang', async () => {
    expect(MAIN.endsWith(join('dist', 'cli', 'bin.js'))).toBe(true);
    expect(readFileSync(MAIN, 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version);
  });

  it('--cron prints nothing on success, first run and no-change run, to s3rver', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'a.txt'), 'alpha');
    writeFileSync(join(ws.src, 'b.bin'), pseudoRandom(300_000, 9));
    ws.writeConfig('', s3Yaml(s3.endpoint, 'cron/'));
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['backup', ws.configPath, '--cron']);
      expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
    }
    // Libraries print process warnings (the AWS SDK's Node-version notice on Node < 22, say);
    // --cron drops them. A preload stands in for such a library on any Node: it warns when the
    // backup opens its first connection to the store.
    const warnOnConnect = [
      '--import',
      "data:text/javascript,import dc from 'node:diagnostics_channel'; let once = false; dc.subscribe('net.client.socket', () => { if (!once) { once = true; process.emitWarning('a library warning while connecting', 'LibraryWarning'); } });",
    ];
    const plain = await runCli(['backup', ws.configPath], cleanEnv(), warnOnConnect);
    expect(plain.code).toBe(0);
    expect(plain.stderr).toContain('LibraryWarning: a library warning while connecting');
    expect(await runCli(['backup', ws.configPath, '--cron'], cleanEnv(), warnOnConnect)).toMatchObject({ code: 0, stdout: '', stderr: '' });
    const metas = [...s3Objects('cron/').keys()].filter((k) => k.endsWith('.db.zst.age'));
    expect(metas).toHaveLength(4);
  });

  it('without --cron prints a summary on stdout and nothing on stderr (no SDK notice)', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'a.txt'), 'alpha');
    ws.writeConfig('', s3Yaml(s3.endpoint, 'plain/'));
    const r = await runCli(['backup', ws.configPath]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^snapshot testhost-\d{8}T\d{6}\.\d{3}Z saved to s3:\/\//);
    expect(r.stdout).toMatch(/^files: +1 \(1 new, 0 changed, 0 unchanged\)/m);
    expect(r.stdout).toMatch(/^added: /m);
  });

  it('--cron is loud on failure: unreachable endpoint, missing bucket (exit 6, one line on stderr)', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'a.txt'), 'alpha');
    ws.writeConfig('', s3Yaml(`http://127.0.0.1:${await closedPort()}`, 'x/'));
    const env = cleanEnv({ VAULTIK_RETRY_TIME: '0' });
    const unreachable = await runCli(['backup', ws.configPath, '--cron'], env);
    expect(unreachable.code).toBe(6);
    expect(unreachable.stdout).toBe('');
    expect(unreachable.stderr).toMatch(/^vaultik backup: cannot reach http:\/\/127\.0\.0\.1:\d+/);
    expect(unreachable.stderr.trimEnd().split('\n')).toHaveLength(1);

    ws.writeConfig('', s3Yaml(s3.endpoint, 'x/', 'no-such-bucket'));
    const bucket = await runCli(['backup', ws.configPath, '--cron'], env);
    expect(bucket.code).toBe(6);
    expect(bucket.stdout).toBe('');
    expect(bucket.stderr).toMatch(/^vaultik backup: .*no-such-bucket/);
    expect(bucket.stderr.trimEnd().split('\n')).toHaveLength(1);
    // Nothing was recorded as uploaded: the next run against a good store uploads everything.
    ws.writeConfig('', s3Yaml(s3.endpoint, 'x/'));
    const ok = await runCli(['backup', ws.configPath, '--json']);
    expect(ok.code).toBe(0);
    const summary = JSON.parse(ok.stdout.trim().split('\n').at(-1)!) as { type: string; bytesNew: number };
    expect(summary).toMatchObject({ type: 'summary', bytesNew: 5 });
  });

  it('runs with a write-only credential (fault proxy) and stores every entry type; age+zstd+sqlite3 list every path', async () => {
    ws = makeWorkspace({ blobSizeLimit: '1MiB' });
    await buildRichTree(ws.src);
    const proxy: FaultProxy = await startFaultProxy(s3.endpoint, { writeOnly: true });
    try {
      ws.writeConfig('', s3Yaml(proxy.endpoint, 'wo/'));
      const first = await runCli(['backup', ws.configPath, '--cron']);
      expect(first).toMatchObject({ code: 0, stdout: '', stderr: '' });
      const second = await runCli(['backup', ws.configPath, '--cron']);
      expect(second).toMatchObject({ code: 0, stdout: '', stderr: '' });
      const ops = new Set(proxy.requests.map((r) => r.op));
      for (const op of ops) expect(WRITE_OPERATIONS.has(op), `operation ${op}`).toBe(true);
      expect(proxy.requests.every((r) => r.status === 200)).toBe(true);
    } finally {
      await proxy.close();
    }
    const objects = s3Objects('wo/');
    const metas = [...objects.keys()].filter((k) => k.endsWith('.db.zst.age')).sort();
    expect(metas).toHaveLength(2);
    // The root, then the shards it lists (blobs in the bucket), decrypted with the stock CLIs.
    const { db, shardBlobs } = decryptSnapshot(objects.get(metas[1]!)!, (key) => objects.get(key)!, ws.identity);
    expect(shardBlobs.length).toBeGreaterThanOrEqual(1);
    const paths = new Set(sqlite(db, 'SELECT hex(path) FROM entries').map((r) => Buffer.from(r[0]!, 'hex').toString('latin1')));
    for (const n of listTree(ws.src)) {
      const p = Buffer.concat([Buffer.from(ws.src.slice(1) + '/'), n.rel]).toString('latin1');
      expect(paths.has(p), `missing ${JSON.stringify(p)}`).toBe(true);
    }
    // Every blob the snapshot references, data and shards, is in the bucket, under its hash.
    for (const hash of [...(sqlite(db, 'SELECT lower(hex(hash)) FROM blobs') as [string][]).map(([h]) => h), ...shardBlobs]) {
      expect(objects.has(`blobs/${hash.slice(0, 2)}/${hash.slice(2, 4)}/${hash}`)).toBe(true);
    }
  });

  // Exit 3 for a file that changes while it is read: test/backup/changing.test.ts.

  it('exits 7 while another backup holds the lock, and names its pid', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'a.txt'), 'alpha');
    const lock = acquireLock(lockPathFor(ws.indexPath));
    try {
      const r = await runCli(['backup', ws.configPath, '--cron']);
      expect(r.code).toBe(7);
      expect(r.stderr).toContain(`another backup holds the state cache lock (pid ${process.pid}`);
    } finally {
      lock.release();
    }
    expect((await runCli(['backup', ws.configPath, '--cron'])).code).toBe(0);
  });

  it('bad configs: every problem as <file>:<line>: <key>: <message>, exit 2, nothing done', async () => {
    ws = makeWorkspace();
    writeFileSync(
      ws.configPath,
      [
        `source_dirs: [${ws.src}]`,
        'age_recipient: age1notarealkey',
        `local: {path: ${ws.store}}`,
        'index_path: relative/index.sqlite',
        'chunk_size: 10M',
        'full_scan_interval: 5 parsecs',
        'exclued: ["*.log"]',
        '',
      ].join('\n'),
    );
    const r = await runCli(['backup', ws.configPath, '--cron']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    const f = ws.configPath;
    expect(r.stderr).toContain(`${f}:2: age_recipient: `);
    expect(r.stderr).toContain(`${f}:4: index_path: `);
    expect(r.stderr).toContain(`${f}:5: chunk_size: `);
    expect(r.stderr).toContain(`${f}:6: full_scan_interval: `);
    expect(r.stderr).toMatch(new RegExp(`${f.replace(/[.]/g, '\\.')}:7: exclued: .*exclude`));
    expect(readdirSync(ws.store)).toEqual([]);

    writeFileSync(ws.configPath, `source_dirs: [${ws.src}]\nlocal: {path: ${ws.store}}\n`);
    const missing = await runCli(['backup', ws.configPath]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/recipient/);

    const nofile = await runCli(['backup', join(ws.root, 'nope.yaml')]);
    expect(nofile.code).toBe(2);
    expect(nofile.stderr).toContain('nope.yaml');

    expect((await runCli(['backup'])).code).toBe(2);
    expect((await runCli(['backup', ws.configPath, '--cron', '--json'])).code).toBe(2);
    // The config is checked before the daemon starts (its behaviour: test/daemon).
    const daemon = await runCli(['backup', ws.configPath, '--daemon']);
    expect(daemon.code).toBe(2);
    expect(daemon.stderr).toMatch(/recipient/);
  });

  it('SIGINT mid-run: exit 130, no snapshot; the next run reuses the uploaded blobs', async () => {
    ws = makeWorkspace({ blobSizeLimit: '1MiB' });
    for (let i = 0; i < 12; i++) writeFileSync(join(ws.src, `f${i}.bin`), pseudoRandom(1024 * 1024, 200 + i));
    const proxy = await startFaultProxy(s3.endpoint);
    try {
      // Slow uploads, so the run is surely still going when the signal comes.
      const removeDelay = proxy.addFault({ match: 'PutObject', fault: { kind: 'delay', ms: 150 } });
      ws.writeConfig('', s3Yaml(proxy.endpoint, 'sigint/'));
      const { child, done } = startCli(['backup', ws.configPath, '--cron']);
      const deadline = Date.now() + 20_000;
      while (!proxy.requests.some((r) => r.op === 'PutObject' && r.status === 200) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      await new Promise((r) => setTimeout(r, 100));
      child.kill('SIGINT');
      const r = await done;
      expect(r.code).toBe(130);
      expect(r.stderr).toMatch(/^vaultik backup: interrupted by SIGINT/);
      const afterAbort = s3Objects('sigint/');
      expect([...afterAbort.keys()].filter((k) => k.startsWith('index/'))).toEqual([]);
      const uploaded = [...afterAbort.keys()].filter((k) => k.startsWith('blobs/'));
      expect(uploaded.length).toBeGreaterThanOrEqual(1);
      expect(uploaded.length).toBeLessThan(12);

      removeDelay();
      proxy.resetStats();
      const again = await runCli(['backup', ws.configPath, '--json']);
      expect(again.code).toBe(0);
      const summary = JSON.parse(again.stdout.trim().split('\n').at(-1)!) as { snapshotBlobs: number; blobsUploaded: number };
      // Blobs of the interrupted run are referenced, not uploaded again.
      const puts = proxy.requests.filter((q) => q.op === 'PutObject' && q.key?.includes('/blobs/')).map((q) => q.key!.split('/').at(-1));
      for (const key of uploaded) expect(puts).not.toContain(key.split('/').at(-1));
      // The new snapshot references the interrupted run's recorded blobs instead of uploading
      // their content again. A put still in flight when the signal came may land unrecorded
      // (its content goes up again, newly encrypted, and the orphan waits for prune), so the
      // count is at most, not exactly, what the interrupted run left in the store.
      const reused = summary.snapshotBlobs - summary.blobsUploaded;
      expect(reused).toBeGreaterThanOrEqual(1);
      expect(reused).toBeLessThanOrEqual(uploaded.length);
    } finally {
      await proxy.close();
    }
  });

  // The summary's counters prove it from the inside (engine tests); strace, where installed,
  // proves it from the outside: no system call opens a source file that is not a directory.
  it.runIf(hasTool('strace'))('a no-change run opens no source file (strace)', async () => {
    ws = makeWorkspace();
    await buildRichTree(ws.src);
    const opened = async (): Promise<string[]> => {
      const trace = join(ws!.root, 'trace.txt');
      const r = await new Promise<number | null>((resolve) => {
        const child = spawn('strace', ['-f', '-qq', '-e', 'trace=open,openat,openat2', '-o', trace, process.execPath, MAIN, 'backup', ws!.configPath, '--cron'], {
          env: cleanEnv(),
          stdio: 'ignore',
        });
        child.once('close', resolve);
      });
      expect(r).toBe(0);
      return readFileSync(trace, 'latin1')
        .split('\n')
        .filter((l) => l.includes(`"${ws!.src}/`) && !l.includes('O_DIRECTORY') && !/= -1 /.test(l));
    };
    const first = await opened();
    expect(first.length).toBeGreaterThan(20); // the method sees the files the first run reads
    expect(await opened()).toEqual([]);
  });

  it('--json writes one JSON object per line: start, progress, summary', async () => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'a.txt'), 'alpha');
    const r = await runCli(['backup', ws.configPath, '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string });
    expect(lines[0]).toMatchObject({ type: 'start' });
    expect(lines.some((l) => l.type === 'progress')).toBe(true);
    expect(lines.at(-1)).toMatchObject({ type: 'summary', files: 1, filesNew: 1, warnings: 0 });
  });
});
