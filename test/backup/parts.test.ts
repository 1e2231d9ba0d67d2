/**
 * The engine's parts on their own: the bounded queue, the per-source walk merge and
 * self-exclusion, the small-file reader, and the renderers' formatting.
 */
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { AsyncQueue } from '../../src/backup/queue.js';
import { readSmallFileSync } from '../../src/backup/smallFile.js';
import { excludeFor, scanSources, selfPaths, type SourceEntry } from '../../src/backup/index.js';
import { emptyProgress, type BackupSummary } from '../../src/backup/index.js';
import { SourceFileError, fileStatOf } from '../../src/fs/index.js';
import { CronRenderer, JsonRenderer, TextRenderer, progressText, summaryLines } from '../../src/cli/render/backup.js';
import { formatBytes, formatCount, formatDuration, formatRate } from '../../src/cli/render/format.js';
import { ProgressLine } from '../../src/cli/render/progress.js';
import { lstatSync } from 'node:fs';
import { makeTempDir } from '../helpers/tmp.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

let tmp: { dir: string; cleanup: () => void } | undefined;
afterEach(() => {
  tmp?.cleanup();
  tmp = undefined;
});

describe('AsyncQueue', () => {
  it('bounds pushes, drains after close, and aborts waiters', async () => {
    const q = new AsyncQueue<number>(2);
    await q.push(1);
    await q.push(2);
    let third = false;
    const p = q.push(3).then(() => (third = true));
    await tick();
    expect(third).toBe(false);
    expect(await q.take()).toBe(1);
    await p;
    q.close();
    expect([await q.take(), await q.take(), await q.take()]).toEqual([2, 3, undefined]);
    await expect(q.push(4)).rejects.toThrow('closed');

    const c = new AbortController();
    const q2 = new AsyncQueue<number>(1, c.signal);
    const waiting = q2.take();
    c.abort(new Error('bye'));
    await expect(waiting).rejects.toThrow('bye');
  });

  it('keeps order across many items (compaction)', async () => {
    const q = new AsyncQueue<number>(10_000);
    for (let i = 0; i < 5000; i++) await q.push(i);
    const got: number[] = [];
    for (let i = 0; i < 5000; i++) got.push((await q.take())!);
    expect(got).toEqual([...Array(5000).keys()]);
  });
});

describe('scanSources', () => {
  async function collect(config: Parameters<typeof scanSources>[0], self = { exact: [], prefixes: [] }): Promise<SourceEntry[]> {
    const out: SourceEntry[] = [];
    for await (const e of scanSources(config, { self, onWarning: () => undefined })) out.push(e);
    return out;
  }

  it('merges several sources in path order, shares ancestors, applies absolute excludes per source', async () => {
    tmp = makeTempDir('vaultik-scan-');
    const a = join(tmp.dir, 'a');
    const ab = join(tmp.dir, 'a-b');
    for (const d of [a, ab]) {
      mkdirSync(join(d, 'tmp'), { recursive: true });
      writeFileSync(join(d, 'tmp', 'f'), '');
      writeFileSync(join(d, 'x.log'), '');
    }
    const entries = await collect({ sourceDirs: [a, ab], exclude: [`${ab}/tmp`, '*.log'] });
    const rel = entries.map((e) => '/' + e.entry.path.toString()).filter((p) => p.startsWith(tmp!.dir + '/')).map((p) => p.slice(tmp!.dir.length));
    expect(rel).toEqual(['/a', '/a-b', '/a/tmp', '/a/tmp/f']);
    const paths = entries.map((e) => e.entry.path);
    expect([...paths].sort(Buffer.compare)).toEqual(paths);
    expect(new Set(paths.map((p) => p.toString('latin1'))).size).toBe(paths.length);
  });

  it('excludes the backup\'s own files: the local store, the cache file and its siblings by prefix', () => {
    tmp = makeTempDir('vaultik-self-');
    const src = join(tmp.dir, 'src');
    mkdirSync(join(src, 'state'), { recursive: true });
    const self = selfPaths({ storage: { type: 'local', path: join(src, 'store'), prefix: '' }, indexPath: join(src, 'state', 'idx.sqlite') });
    const ex = excludeFor({ exclude: [], sourceDirs: [src] }, src, self);
    expect(ex('store', true)).toBe(true);
    expect(ex('store/blobs', true)).toBe(false); // never asked: the walker does not descend
    expect(ex('state', true)).toBe(false);
    for (const n of ['idx.sqlite', 'idx.sqlite-wal', 'idx.sqlite.lock', 'idx.sqlite.work']) expect(ex(`state/${n}`, false)).toBe(true);
    expect(ex('state/other.sqlite', false)).toBe(false);
    expect(ex('idx.sqlite', false)).toBe(false);
    // A source that does not contain them is unaffected.
    const other = join(tmp.dir, 'other');
    mkdirSync(other);
    expect(excludeFor({ exclude: [], sourceDirs: [other] }, other, self)('store', true)).toBe(false);
  });

  it('groups hard links across sources; the first path in byte order leads', async () => {
    tmp = makeTempDir('vaultik-links-');
    const a = join(tmp.dir, 'a');
    const ab = join(tmp.dir, 'a-b');
    mkdirSync(a);
    mkdirSync(ab);
    writeFileSync(join(a, 'f'), 'x');
    const { linkSync } = await import('node:fs');
    linkSync(join(a, 'f'), join(ab, 'g'));
    symlinkSync('f', join(a, 's'));
    const entries = await collect({ sourceDirs: [a, ab], exclude: [] });
    const g = entries.find((e) => e.entry.path.toString().endsWith('a-b/g'))!;
    const f = entries.find((e) => e.entry.path.toString().endsWith('/a/f'))!;
    expect(g.entry.linkGroup).toBe(1);
    expect(g.hardLinkTo).toBeUndefined();
    expect(f.entry.linkGroup).toBe(1);
    expect(f.hardLinkTo?.equals(g.entry.path)).toBe(true);
  });
});

describe('readSmallFileSync', () => {
  it('reads a file whole, refuses a swapped file, reports a vanished one, defers a grown one', () => {
    tmp = makeTempDir('vaultik-small-');
    const f = join(tmp.dir, 'f');
    writeFileSync(f, 'hello');
    const st = fileStatOf(lstatSync(f, { bigint: true }));
    const r = readSmallFileSync(Buffer.from(f), st, 100);
    expect(r !== 'too-big' && r.data.toString()).toBe('hello');
    expect(r !== 'too-big' && r.changed).toBe(false);
    expect(readSmallFileSync(Buffer.from(f), st, 3)).toBe('too-big');
    const g = join(tmp.dir, 'g');
    writeFileSync(g, 'other');
    expect(() => readSmallFileSync(Buffer.from(g), st, 100)).toThrow(SourceFileError);
    symlinkSync(f, join(tmp.dir, 'link'));
    expect(() => readSmallFileSync(Buffer.from(join(tmp!.dir, 'link')), st, 100)).toThrow(/symlink/);
    try {
      readSmallFileSync(Buffer.from(join(tmp.dir, 'gone')), st, 100);
      expect.unreachable();
    } catch (err) {
      expect((err as SourceFileError).problem).toBe('vanished');
    }
  });
});

describe('renderers', () => {
  const summary: BackupSummary = {
    ...emptyProgress(),
    files: 3,
    filesNew: 2,
    filesUnchanged: 1,
    dirs: 1,
    bytesScanned: 3 * 1024 * 1024,
    bytesRead: 2 * 1024 * 1024,
    filesRead: 2,
    bytesNew: 2 * 1024 * 1024,
    bytesPacked: 1024 * 1024,
    blobsUploaded: 1,
    bytesUploaded: 1024 * 1024 + 300,
    snapshotId: 'h-20260101T000000.000Z',
    store: 'file:///s/',
    startTime: '2026-01-01T00:00:00.000Z',
    endTime: '2026-01-01T00:00:02.000Z',
    durationMs: 2000,
    shardsWritten: 1,
    shardsReused: 0,
    metadataBytes: 900,
    snapshotBlobs: 1,
    snapshotBlobBytes: 1024 * 1024 + 300,
    entries: 4,
  };

  it('formats sizes, rates and durations', () => {
    expect([formatBytes(0), formatBytes(1023), formatBytes(1536), formatBytes(10 * 1024 ** 3)]).toEqual(['0 B', '1023 B', '1.50 KiB', '10.0 GiB']);
    expect(formatRate(10 * 1024 * 1024, 2000)).toBe('5.00 MiB/s');
    expect(formatRate(1, 0)).toBe('-');
    expect([formatDuration(400), formatDuration(65_000), formatDuration(7_380_000)]).toEqual(['0.4s', '1m05s', '2h03m']);
    // Grouped like toLocaleString('en-US'), without loading ICU (and no "-0").
    expect(formatCount(-0.4)).toBe('0');
    for (const n of [0, 7, 999, 1000, 12_345, 1_234_567, 1e15, -1234.6, 999.5]) expect(formatCount(n), String(n)).toBe(Math.round(n).toLocaleString('en-US'));
  });

  it('progress text shows an ETA only once the walk is done', () => {
    const p = { type: 'progress' as const, elapsedMs: 1000, walkDone: false, ...emptyProgress(), bytesRead: 1024 * 1024, bytesToRead: 3 * 1024 * 1024 };
    expect(progressText(p)).not.toContain('ETA');
    expect(progressText({ ...p, walkDone: true })).toContain('ETA 2.0s');
  });

  it('text: summary on stdout, warnings on stderr; tty: progress line redrawn in place', () => {
    const out = new PassThrough();
    const err = new PassThrough();
    let o = '';
    let e = '';
    out.on('data', (d: Buffer) => (o += d.toString()));
    err.on('data', (d: Buffer) => (e += d.toString()));
    const r = new TextRenderer(out, err, true);
    r.onEvent({ type: 'progress', elapsedMs: 10, walkDone: false, ...emptyProgress(), files: 7 });
    r.onEvent({ type: 'warning', path: "'/x'", kind: 'vanished', message: "file vanished: '/x'" });
    r.done(summary);
    expect(e).toContain('\r\x1b[2K7 files');
    expect(e).toContain("\r\x1b[2Kwarning: file vanished: '/x'\n");
    expect(o.split('\n')[0]).toBe('snapshot h-20260101T000000.000Z saved to file:///s/');
    expect(summaryLines(summary).join('\n')).toContain('files:     3 (2 new, 0 changed, 1 unchanged)');
  });

  it('json: one parseable object per line; cron: silent unless warnings', () => {
    const out = new PassThrough();
    let o = '';
    out.on('data', (d: Buffer) => (o += d.toString()));
    const j = new JsonRenderer(out);
    j.onEvent({ type: 'summary', ...summary });
    j.failed(Object.assign(new Error('boom'), { exitCode: 6 }));
    const lines = o.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ type: 'summary', files: 3 });
    expect(lines[1]).toEqual({ type: 'error', message: 'boom', exitCode: 6 });

    const err = new PassThrough();
    let e = '';
    err.on('data', (d: Buffer) => (e += d.toString()));
    const c = new CronRenderer(err);
    c.onEvent({ type: 'warning', path: "'/x'", kind: 'vanished', message: 'gone' });
    c.done({ ...summary, warnings: 0 });
    expect(e).toBe('');
    c.done({ ...summary, warnings: 1 });
    expect(e).toBe('warning: gone\nvaultik backup: completed with 1 warning; snapshot h-20260101T000000.000Z was written without those paths\n');
  });

  it('summary and cron verdict: files stored as last read after changing while read, beside paths left out', () => {
    const changed = { ...summary, warnings: 2, filesChangedWhileRead: 2, filesReread: 3 };
    const lines = summaryLines(changed);
    expect(lines).toContain('warnings:  2 (see above); 2 files changed while read; stored as last read');
    expect(lines.find((l) => l.startsWith('read:'))).toMatch(/\(2 files opened, 3 read again after changing while read\)$/);
    expect(summaryLines({ ...changed, warnings: 3 })).toContain('warnings:  3 (see above); 2 files changed while read; stored as last read; 1 other path left out');
    expect(summaryLines({ ...summary, warnings: 1 })).toContain('warnings:  1 (see above); the snapshot was written without those paths');
    const err = new PassThrough();
    let e = '';
    err.on('data', (d: Buffer) => (e += d.toString()));
    const c = new CronRenderer(err);
    c.onEvent({ type: 'warning', path: "'/x'", kind: 'changed', reads: 3, message: "file changed while it was read, 3 times (size): '/x'; stored as last read" });
    c.done({ ...summary, warnings: 1, filesChangedWhileRead: 1 });
    expect(e).toBe(
      "warning: file changed while it was read, 3 times (size): '/x'; stored as last read\n" +
        'vaultik backup: completed with 1 warning; snapshot h-20260101T000000.000Z was written; 1 file changed while read; stored as last read\n',
    );
  });

  it('ProgressLine fits the terminal width', () => {
    const s = Object.assign(new PassThrough(), { columns: 20 });
    let o = '';
    s.on('data', (d: Buffer) => (o += d.toString()));
    new ProgressLine(s, { minIntervalMs: 0 }).update('x'.repeat(50), true);
    expect(o).toBe('\r\x1b[2K' + 'x'.repeat(18) + '…');
  });

  it('ProgressLine off a terminal drops updates and prints messages as plain lines', () => {
    const s = new PassThrough();
    let o = '';
    s.on('data', (d: Buffer) => (o += d.toString()));
    const line = new ProgressLine(s, { live: false, minIntervalMs: 0 });
    line.update('status', true);
    line.print('warning: w');
    line.clear();
    expect(o).toBe('warning: w\n');
  });
});
