/**
 * Queries shared by the snapshot writer and reader (internal to src/snapshot).
 */
import type Database from 'better-sqlite3';

import type { ShardCounts } from './types.js';

export type DB = Database.Database;

const HEX64 = /^[0-9a-f]{64}$/;

/** True for a lowercase 64-digit hex SHA-256. */
export function isHexHash(s: unknown): s is string {
  return typeof s === 'string' && HEX64.test(s);
}

/** Entries by type in a DB with the shard tables. */
export function countEntries(db: DB): ShardCounts {
  const byType = db.prepare('SELECT type, COUNT(*) AS n FROM entries GROUP BY type').all() as { type: string; n: number }[];
  const count = (t: string): number => byType.find((r) => r.type === t)?.n ?? 0;
  const other = byType.filter((r) => !['file', 'dir', 'symlink'].includes(r.type)).reduce((a, r) => a + r.n, 0);
  return {
    entryCount: byType.reduce((a, r) => a + r.n, 0),
    fileCount: count('file'),
    dirCount: count('dir'),
    symlinkCount: count('symlink'),
    otherCount: other,
  };
}

/** Sum of file sizes, each hard-link group once. */
export function computeTotalSize(db: DB): number {
  return (
    db
      .prepare(
        `SELECT COALESCE(SUM(size), 0) AS s FROM entries e WHERE type = 'file'
           AND (link_group IS NULL OR path = (SELECT MIN(path) FROM entries g WHERE g.link_group = e.link_group))`,
      )
      .get() as { s: number }
  ).s;
}
