/**
 * A file that changes while it is read (issue 16 item 1): it is read again a bounded number of
 * times; a read that found it stable is stored with no warning; when every read saw a change, the
 * last read is stored with a 'changed' warning (exit 3) and the summary says so. Small files (the
 * synchronous and the asynchronous reader) and large files (streamed, chunks packed while read),
 * on a first backup and on an incremental one.
 *
 * Exact changes come from the engine's onFileRead observer (called after each read, before the
 * change check: the test appends there); the real thing, a writer appending in a tight loop in
 * another process, is tested with the engine and with the CLI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { READ_ATTEMPTS, type BackupEvent, type BackupSummary, type BackupTuning } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { parseIdentity } from '../../src/crypto/index.js';
import { runRestore } from '../../src/restore/index.js';
import { openStorage } from '../../src/storage/index.js';
import { pseudoRandom } from '../helpers/tree.js';
import { ensureBuilt, runCli } from './cli.js';
import { backupWithEvents, makeWorkspace, sqlite, type Workspace } from './helpers.js';

let ws: Workspace | undefined;
let writer: ChildProcess | undefined;
afterEach(() => {
  writer?.kill('SIGKILL');
  writer = undefined;
  ws?.cleanup();
  ws = undefined;
});

type Warning = Extract<BackupEvent, { type: 'warning' }>;

async function backup(
  config: Config,
  extra: { onFileRead?: (absPath: Buffer, read: number) => void; tuning?: BackupTuning } = {},
): Promise<{ summary: BackupSummary; warnings: Warning[] }> {
  const { summary, events } = await backupWithEvents(config, extra);
  return { summary, warnings: events.filter((e): e is Warning => e.type === 'warning') };
}

/** Restores `snapshotId` and returns the bytes of `abs` in it (undefined: not in the snapshot). */
async function restored(w: Workspace, snapshotId: string, abs: string): Promise<Buffer | undefined> {
  const storage = openStorage(w.config().storage);
  const target = join(w.root, `restore-${snapshotId}`);
  try {
    const r = await runRestore({ storage, identities: [parseIdentity(w.identity)], snapshotId, target, tmpDir: w.root });
    expect(r.failed).toBe(0);
  } finally {
    await storage.close();
  }
  try {
    return readFileSync(join(target, abs));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** An observer that appends `bytes` to `path` after the reads numbered in `reads`, and notes the size each read saw. */
function appender(path: string, reads: (n: number) => boolean, bytes = 1000): { hook: (absPath: Buffer, read: number) => void; seen: number[] } {
  const seen: number[] = [];
  let extra = 0;
  return {
    seen,
    hook: (absPath, read) => {
      if (absPath.toString() !== path) return;
      seen.push(statSync(path).size);
      if (reads(read)) appendFileSync(path, pseudoRandom(bytes, 7000 + extra++));
    },
  };
}

const KINDS = [
  { name: 'a large file (streamed)', size: 3 * 1024 * 1024, tuning: {} },
  { name: 'a small file (synchronous reader)', size: 40_000, tuning: { syncSmallReads: true } },
  { name: 'a small file (asynchronous reader)', size: 40_000, tuning: { syncSmallReads: false } },
] as const;

describe.each(KINDS)('$name that changes while it is read', ({ size, tuning }) => {
  it('changing during every read: the last read is stored with a warning, on a first backup; the next run reads it again', async () => {
    ws = makeWorkspace();
    const busy = join(ws.src, 'busy.log');
    writeFileSync(busy, pseudoRandom(size, 1));
    writeFileSync(join(ws.src, 'calm.txt'), 'calm\n');
    const config = ws.config();
    const always = appender(busy, () => true);
    const { summary, warnings } = await backup(config, { onFileRead: always.hook, tuning });
    // What the snapshot holds: the bytes of the last read, which began at the size it saw.
    const last = always.seen.at(-1)!;
    const content = await restored(ws, summary.snapshotId, busy);
    expect(content, 'busy.log is in the snapshot').toBeDefined();
    expect(content!.length).toBe(last);
    expect(content!.equals(readFileSync(busy).subarray(0, last))).toBe(true);
    // Read a bounded number of times, then warned about once.
    expect(always.seen).toHaveLength(READ_ATTEMPTS);
    expect(warnings.map((w) => w.kind)).toEqual(['changed']);
    expect(warnings[0]!.path).toContain('busy.log');
    expect(warnings[0]!.message).toMatch(new RegExp(`changed while it was read, ${READ_ATTEMPTS} times \\(size[a-z, -]*\\): '.*busy\\.log'; stored as last read$`));
    expect(summary).toMatchObject({ warnings: 1, filesChangedWhileRead: 1, filesReread: 1, filesNew: 2 });
    // The state cache records it under a ctime no stat has, so no later stat can match it.
    expect(sqlite(ws.indexPath, `SELECT ctime_ns FROM files WHERE path = x'${Buffer.from(busy.slice(1)).toString('hex')}'`)).toEqual([['-1']]);

    // The next run does not take it for unchanged: it reads it again, finds it stable and
    // stores it whole, with no warning.
    const next = await backup(config, { tuning });
    expect(next.warnings).toEqual([]);
    expect(next.summary).toMatchObject({ warnings: 0, filesChangedWhileRead: 0, filesChanged: 1, filesUnchanged: 1 });
    expect((await restored(ws, next.summary.snapshotId, busy))!.equals(readFileSync(busy))).toBe(true);
  });

  it('changing during every read of an incremental backup: the last read replaces the previous version', async () => {
    ws = makeWorkspace();
    const busy = join(ws.src, 'busy.log');
    writeFileSync(busy, pseudoRandom(size, 2));
    const config = ws.config();
    const first = await backup(config, { tuning });
    expect(first.summary.warnings).toBe(0);
    appendFileSync(busy, 'one more line\n');
    const always = appender(busy, () => true);
    const { summary, warnings } = await backup(config, { onFileRead: always.hook, tuning });
    const content = await restored(ws, summary.snapshotId, busy);
    expect(content!.length).toBe(always.seen.at(-1)!);
    expect(content!.length).toBe(size + 14 + (READ_ATTEMPTS - 1) * 1000);
    expect(content!.equals(readFileSync(busy).subarray(0, content!.length))).toBe(true);
    expect(warnings.map((w) => w.kind)).toEqual(['changed']);
    expect(summary).toMatchObject({ warnings: 1, filesChangedWhileRead: 1, filesChanged: 1 });
  });

  it('changing during the first read only: stored as the stable re-read, no warning, on a first and an incremental backup', async () => {
    ws = makeWorkspace();
    const busy = join(ws.src, 'busy.log');
    writeFileSync(busy, pseudoRandom(size, 3));
    const config = ws.config();
    for (const round of [1, 2]) {
      if (round === 2) appendFileSync(busy, 'changed since the first backup\n');
      const once = appender(busy, (n) => n === 1);
      const { summary, warnings } = await backup(config, { onFileRead: once.hook, tuning });
      expect(warnings, `round ${round}`).toEqual([]);
      expect(once.seen).toHaveLength(2);
      expect(summary).toMatchObject({ warnings: 0, filesChangedWhileRead: 0, filesReread: 1 });
      expect((await restored(ws, summary.snapshotId, busy))!.equals(readFileSync(busy)), `round ${round}`).toBe(true);
      // The cache holds the stat of the stable read: a third run finds it unchanged.
      if (round === 2) {
        const again = await backup(config, { tuning });
        expect(again.summary).toMatchObject({ filesUnchanged: 1, bytesRead: 0 });
      }
    }
  });
});

describe('chunks of a read that is thrown away', () => {
  it('cost no more than their new chunks: a re-read dedups against them, and the snapshot restores', async () => {
    ws = makeWorkspace({ chunkSize: '64KiB', blobSizeLimit: '256MiB' });
    const busy = join(ws.src, 'busy.bin');
    // Each read sees a new first megabyte (a rewrite, not an append): three reads, three versions.
    const base = pseudoRandom(4 * 1024 * 1024, 4);
    writeFileSync(busy, base);
    let version = 0;
    const { summary } = await backup(ws.config(), {
      onFileRead: (abs) => {
        if (abs.toString() !== busy) return;
        const fd = pseudoRandom(1024 * 1024, 9000 + ++version);
        const next = Buffer.concat([fd, base.subarray(fd.length)]);
        writeFileSync(busy, next);
      },
    });
    expect(summary.filesChangedWhileRead).toBe(1);
    // The stored file is the third read: the second rewrite's bytes.
    const content = await restored(ws, summary.snapshotId, busy);
    expect(content!.equals(Buffer.concat([pseudoRandom(1024 * 1024, 9002), base.subarray(1024 * 1024)]))).toBe(true);
    // New data: three versions of the first megabyte and the shared rest once, not three times.
    expect(summary.bytesNew).toBeLessThan(4 * 1024 * 1024 + 2 * (1024 * 1024 + 256 * 1024));
  });
});

/** A workspace whose source holds calm.txt and a 16 MiB busy.log that a shell appends to in a tight loop; its path. */
async function busyWorkspace(seed: number): Promise<{ w: Workspace; busy: string }> {
  const w = (ws = makeWorkspace({ chunkSize: '1MiB', blobSizeLimit: '256MiB' }));
  const busy = join(w.src, 'busy.log');
  writeFileSync(busy, pseudoRandom(16 * 1024 * 1024, seed));
  writeFileSync(join(w.src, 'calm.txt'), 'calm');
  await startAppender(busy);
  return { w, busy };
}

/** Starts a shell appending to `path` in a tight loop; resolves once it is really appending. */
async function startAppender(path: string): Promise<void> {
  writer = spawn('sh', ['-c', `while :; do printf x >> '${path}'; done`], { stdio: 'ignore' });
  // A loaded machine may not schedule it at once.
  const start = statSync(path).size;
  for (let i = 0; i < 500 && statSync(path).size === start; i++) await new Promise((r) => setTimeout(r, 10));
  expect(statSync(path).size).toBeGreaterThan(start);
}

async function stopAppender(): Promise<void> {
  const w = writer!;
  writer = undefined;
  const exited = new Promise((r) => w.once('exit', r));
  w.kill('SIGKILL');
  await exited;
}

describe('a file another process appends to all the time', () => {
  beforeAll(() => ensureBuilt(), 120_000);

  it('engine: is in the first snapshot as a consistent prefix of the file, with a warning', async () => {
    const { w, busy } = await busyWorkspace(5);
    const { summary, warnings } = await backup(w.config());
    await stopAppender();
    const content = await restored(w, summary.snapshotId, busy);
    expect(content, 'busy.log is in the snapshot').toBeDefined();
    expect(content!.length).toBeGreaterThanOrEqual(16 * 1024 * 1024);
    expect(content!.equals(readFileSync(busy).subarray(0, content!.length))).toBe(true);
    expect(warnings.map((w) => w.kind)).toEqual(['changed']);
    expect(summary.filesChangedWhileRead).toBe(1);
  });

  it('CLI: exit 3 with the warning, and the summary says it was stored as last read (--cron, text, --json; first and incremental)', async () => {
    const { w } = await busyWorkspace(6);
    const cron = await runCli(['backup', w.configPath, '--cron']);
    expect(cron.code).toBe(3);
    expect(cron.stdout).toBe('');
    expect(cron.stderr).toMatch(new RegExp(`^warning: file changed while it was read, ${READ_ATTEMPTS} times \\(.*\\): '.*busy\\.log'; stored as last read$`, 'm'));
    expect(cron.stderr).toMatch(/^vaultik backup: completed with 1 warning; snapshot testhost-\S+ was written; 1 file changed while read; stored as last read$/m);

    const text = await runCli(['backup', w.configPath]);
    expect(text.code).toBe(3);
    expect(text.stdout).toMatch(/^warnings: {2}1 \(see above\); 1 file changed while read; stored as last read$/m);
    expect(text.stdout).toMatch(/^files: +2 \(0 new, 1 changed, 1 unchanged\)/m);

    const json = await runCli(['backup', w.configPath, '--json']);
    await stopAppender();
    expect(json.code).toBe(3);
    const events = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.filter((e) => e.type === 'warning')).toEqual([
      expect.objectContaining({ kind: 'changed', path: expect.stringContaining('busy.log'), reads: READ_ATTEMPTS }),
    ]);
    expect(events.at(-1)).toMatchObject({ type: 'summary', warnings: 1, filesChangedWhileRead: 1, filesReread: 1 });
  }, 60_000);
});
