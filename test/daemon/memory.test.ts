/**
 * releaseMemory (src/daemon/memory.ts): free pages glibc keeps between chunks still in use go
 * back to the kernel. The test frees ~32 MB below a live allocation, where free() cannot return
 * it, and reads this process's RSS before and after.
 */
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { releaseMemory } from '../../src/daemon/memory.js';

const rssKiB = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]);
const glibc = process.platform === 'linux' && typeof (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime === 'string';

describe('releaseMemory', () => {
  it.skipIf(!glibc)('returns the free pages between live allocations to the kernel (glibc)', () => {
    // An in-memory database's pages are small malloc() chunks: 32 MB of them, then a live
    // database allocated above them, then the first one closed (freed, but not at the heap's top).
    const big = new Database(':memory:');
    big.pragma('cache_size = -100000');
    big.exec('CREATE TABLE t (v BLOB)');
    const insert = big.prepare('INSERT INTO t VALUES (?)');
    for (let i = 0; i < 32 * 1024; i++) insert.run(Buffer.alloc(1000, i));
    const live = new Database(':memory:');
    live.exec('CREATE TABLE t (v BLOB)');
    for (let i = 0; i < 200; i++) live.prepare('INSERT INTO t VALUES (?)').run(Buffer.alloc(1000, i));
    big.close();
    const before = rssKiB();
    expect(releaseMemory()).toBe('released');
    const after = rssKiB();
    live.close();
    expect(before - after).toBeGreaterThan(16 * 1024);
  });

  it.skipIf(glibc)('does nothing without glibc', () => {
    expect(releaseMemory()).toBe('unsupported');
  });
});
