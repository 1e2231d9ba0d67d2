import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { join } from 'node:path';
import { openSourceFile, SourceFileError, type SourceFile } from '../../src/fs/sourceFile.js';
import { fileStatOf } from '../../src/fs/walk.js';
import { makeTempDir } from '../helpers/tmp.js';
import { pseudoRandom } from '../helpers/tree.js';

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;

describe('openSourceFile', () => {
  let tmp: ReturnType<typeof makeTempDir>;
  beforeAll(() => {
    tmp = makeTempDir();
  });
  afterAll(() => tmp.cleanup());

  /** A file with an old mtime (so any write visibly changes it even on coarse clocks), and its walk stat. */
  function makeFile(name: string, data: Buffer): { path: Buffer; stat: ReturnType<typeof fileStatOf> } {
    const path = Buffer.from(join(tmp.dir, name));
    fs.writeFileSync(path, data);
    fs.utimesSync(path, 1_000_000_000, 1_000_000_000);
    return { path, stat: fileStatOf(fs.lstatSync(path, { bigint: true })) };
  }

  async function readAll(file: SourceFile, between?: (index: number) => void): Promise<Buffer[]> {
    const chunks: Buffer[] = [];
    for await (const chunk of file.chunks()) {
      chunks.push(chunk);
      between?.(chunks.length);
    }
    return chunks;
  }

  it('streams the file in reads of readSize; every yielded buffer is the caller’s to keep', async () => {
    const data = pseudoRandom(3 * MiB + 123, 11);
    const { path, stat } = makeFile('big', data);
    const file = await openSourceFile(path, stat, { readSize: MiB });
    try {
      const chunks = await readAll(file);
      expect(chunks.map((c) => c.length)).toEqual([MiB, MiB, MiB, 123]);
      // Kept across iterations: a reused buffer would have been overwritten by later reads.
      expect(Buffer.concat(chunks).equals(data)).toBe(true);
      const report = await file.finish();
      expect(report).toMatchObject({ changed: false, reasons: [], bytesRead: data.length });
      expect(file.stat.ino).toBe(stat.ino);
    } finally {
      await file.close();
    }
    // Reading did not update the atime (O_NOATIME).
    expect(fs.statSync(path).atimeMs).toBe(1_000_000_000_000);
  });

  it('reads an empty file as no chunks', async () => {
    const { path, stat } = makeFile('empty', Buffer.alloc(0));
    const file = await openSourceFile(path, stat);
    expect(await readAll(file)).toEqual([]);
    expect((await file.finish()).changed).toBe(false);
    await file.close();
  });

  it('detects a file rewritten in place between two reads (same size)', async () => {
    const { path, stat } = makeFile('rewritten', pseudoRandom(3 * MiB, 5));
    const file = await openSourceFile(path, stat, { readSize: MiB });
    await readAll(file, (i) => {
      if (i === 1) {
        const fd = fs.openSync(path, 'r+');
        fs.writeSync(fd, Buffer.from('changed'), 0, 7, 2 * MiB);
        fs.closeSync(fd);
      }
    });
    const report = await file.finish();
    await file.close();
    expect(report.changed).toBe(true);
    expect(report.reasons).toEqual(expect.arrayContaining(['mtime', 'ctime']));
    expect(report.reasons).not.toContain('size');
  });

  it('stops at the size seen at open when the file grows, and reports the growth', async () => {
    const { path, stat } = makeFile('growing', pseudoRandom(2 * MiB, 6));
    const file = await openSourceFile(path, stat, { readSize: MiB });
    const chunks = await readAll(file, (i) => {
      if (i === 1) fs.appendFileSync(path, pseudoRandom(5 * MiB, 8));
    });
    const report = await file.finish();
    await file.close();
    expect(Buffer.concat(chunks).length).toBe(2 * MiB);
    expect(report.changed).toBe(true);
    expect(report.reasons).toContain('size');
    expect(report.after.size).toBe(7 * MiB);
  });

  it('reports a file truncated during the read as a short read', async () => {
    const { path, stat } = makeFile('shrinking', pseudoRandom(3 * MiB, 9));
    const file = await openSourceFile(path, stat, { readSize: MiB });
    const chunks = await readAll(file, (i) => {
      if (i === 1) fs.truncateSync(path, MiB + 10);
    });
    const report = await file.finish();
    await file.close();
    expect(Buffer.concat(chunks).length).toBe(MiB + 10);
    expect(report.reasons).toEqual(expect.arrayContaining(['size', 'short-read']));
  });

  it('refuses a file replaced between the walk and the open: other inode, symlink, FIFO, gone', async () => {
    const expectProblem = async (name: string, replace: (path: Buffer) => void, problem: string): Promise<void> => {
      const { path, stat } = makeFile(name, Buffer.from('original'));
      replace(path);
      const err = await openSourceFile(path, stat).catch((e: unknown) => e);
      expect(err, name).toBeInstanceOf(SourceFileError);
      expect((err as SourceFileError).problem, name).toBe(problem);
      expect((err as SourceFileError).absPath.equals(path)).toBe(true);
    };
    await expectProblem('renamed-over', (p) => {
      fs.writeFileSync(`${p.toString()}.new`, 'impostor');
      fs.renameSync(`${p.toString()}.new`, p);
    }, 'replaced');
    await expectProblem('now-symlink', (p) => {
      fs.unlinkSync(p);
      fs.symlinkSync('/etc/passwd', p);
    }, 'replaced');
    // A FIFO would block a plain open forever; O_NONBLOCK makes it fail fast as not regular.
    await expectProblem('now-fifo', (p) => {
      fs.unlinkSync(p);
      expect(spawnSync('mkfifo', [p.toString()]).status).toBe(0);
    }, 'not-regular');
    await expectProblem('now-gone', (p) => fs.unlinkSync(p), 'vanished');
  });

  it.skipIf(!isRoot)('as another user: EACCES is "unreadable"; O_NOATIME\'s EPERM on a foreign file falls back', async () => {
    // Root bypasses permission bits and may always use O_NOATIME, so both cases run with the
    // effective uid of 'nobody' against root-owned files: real kernel errors, no injection.
    fs.chmodSync(tmp.dir, 0o755);
    const secret = makeFile('secret', Buffer.from('secret'));
    fs.chmodSync(secret.path, 0o600);
    const shared = makeFile('shared', Buffer.from('readable by all'));
    fs.chmodSync(shared.path, 0o644);
    let unreadable: unknown;
    let content: Buffer | undefined;
    let direct: unknown;
    process.seteuid!(65534);
    try {
      // Proves the fallback path is taken: O_NOATIME on a file we do not own is EPERM.
      direct = (() => {
        try {
          fs.closeSync(fs.openSync(shared.path, fs.constants.O_RDONLY | fs.constants.O_NOATIME));
          return undefined;
        } catch (e) {
          return e;
        }
      })();
      unreadable = await openSourceFile(secret.path, secret.stat).catch((e: unknown) => e);
      const file = await openSourceFile(shared.path, shared.stat);
      content = Buffer.concat(await readAll(file));
      await file.close();
    } finally {
      process.seteuid!(0);
    }
    expect(unreadable).toBeInstanceOf(SourceFileError);
    expect((unreadable as SourceFileError).problem).toBe('unreadable');
    expect((unreadable as SourceFileError).message).toMatch(/EACCES/);
    expect((direct as NodeJS.ErrnoException).code).toBe('EPERM');
    expect(content!.toString()).toBe('readable by all');
  });

  it('stops reading when the signal is aborted', async () => {
    const { path, stat } = makeFile('aborted', pseudoRandom(3 * MiB, 4));
    const controller = new AbortController();
    const file = await openSourceFile(path, stat, { readSize: MiB, signal: controller.signal });
    await expect(readAll(file, () => controller.abort(new Error('interrupted')))).rejects.toThrow('interrupted');
    await file.close();
    await file.close(); // idempotent
  });
});
