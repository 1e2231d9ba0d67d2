#!/usr/bin/env node
// SQLite engine comparison on vaultik's own workload: better-sqlite3 (the dependency) against
// Node's built-in node:sqlite, same process, alternating, on the real schemas and SQL:
//  - write: the snapshot metadata writer (entries one per statement; file_chunks and chunks 64
//    rows per statement, as src/snapshot/batchInsert.ts does), then its indexes;
//  - walk: the state cache's ordered walk (src/cache/orderedFiles.ts: files LEFT JOIN chunks in
//    path order, bigints, rows as arrays);
//  - lookup: point lookups of one file row by path (the cache's getFile).
// Times are the process's CPU time (user + system) for each step: the work is single-threaded,
// so CPU time is its cost even on a loaded machine; wall time is printed beside it.
// Usage: npm run build && node bench/sqlite.mjs [entries=200000] [reps=3]
// Needs Node >= 22.16 (node:sqlite with setReturnArrays).
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { timed } from './timed.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const BetterSqlite = require('better-sqlite3');
process.removeAllListeners('warning'); // node:sqlite's ExperimentalWarning would clutter the table
const { DatabaseSync } = await import('node:sqlite');
const { TABLES_DDL, INDEXES_DDL } = await import(path.join(root, 'dist/snapshot/schema.js'));
const { CACHE_DDL } = await import(path.join(root, 'dist/cache/schema.js'));

const N = Number(process.argv[2] ?? 200_000);
const REPS = Number(process.argv[3] ?? 3);
const ROWS = 64;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vaultik-sqlite-bench-'));

const id = (i) => createHash('sha256').update(String(i)).digest();
const paths = Array.from({ length: N }, (_, i) => Buffer.from(`/data/dir${String(i >> 8).padStart(5, '0')}/file-${String(i).padStart(7, '0')}.txt`));
const ids = Array.from({ length: N }, (_, i) => id(i));
const blob = id(-1);

// The two engines behind the few calls the product makes.
const engines = {
  'better-sqlite3': {
    open: (f) => new BetterSqlite(f),
    all: (db, sql) => db.prepare(sql),
    run: (stmt, values) => stmt.run(values),
    walk: (db, sql) => db.prepare(sql).safeIntegers(true).raw(true).iterate(),
    get: (db, sql) => { const s = db.prepare(sql).safeIntegers(true); return (p) => s.get(p); },
  },
  'node:sqlite': {
    open: (f) => new DatabaseSync(f),
    all: (db, sql) => db.prepare(sql),
    run: (stmt, values) => stmt.run(...values),
    walk: (db, sql) => { const s = db.prepare(sql); s.setReadBigInts(true); s.setReturnArrays(true); return s.iterate(); },
    get: (db, sql) => { const s = db.prepare(sql); s.setReadBigInts(true); return (p) => s.get(p); },
  },
};

function tuple(cols, rows) {
  const t = `(${new Array(cols).fill('?').join(', ')})`;
  return new Array(rows).fill(t).join(', ');
}

function write(e, file) {
  const db = e.open(file);
  for (const p of ['journal_mode = OFF', 'synchronous = OFF', 'locking_mode = EXCLUSIVE', 'cache_size = -8192']) db.exec(`PRAGMA ${p}`);
  for (const ddl of TABLES_DDL) db.exec(ddl);
  const entry = e.all(db, 'INSERT INTO entries (path, type, mode, uid, gid, mtime_ns, size, target, rdev, link_group) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const fc = e.all(db, `INSERT INTO file_chunks (path, seq, chunk, file_offset) VALUES ${tuple(4, ROWS)}`);
  const ch = e.all(db, `INSERT OR IGNORE INTO chunks (id, blob, offset, length, plain_length) VALUES ${tuple(5, ROWS)}`);
  const t = timed(() => {
  db.exec('BEGIN');
  let fcv = [], chv = [];
  for (let i = 0; i < N; i++) {
    e.run(entry, [paths[i], 'file', 0o644, 1000, 1000, 1_700_000_000_000_000_000n + BigInt(i), 4096, null, null, null]);
    fcv.push(paths[i], 0, ids[i], 0);
    chv.push(ids[i], blob, i * 4096, 4000, 4096);
    if (fcv.length === ROWS * 4) { e.run(fc, fcv); e.run(ch, chv); fcv = []; chv = []; }
  }
  db.exec('COMMIT');
  for (const ddl of INDEXES_DDL) db.exec(ddl);
  });
  db.close();
  return t;
}

function fillCache(file) {
  const db = new BetterSqlite(file);
  for (const ddl of CACHE_DDL) db.exec(ddl);
  const f = db.prepare('INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const c = db.prepare('INSERT INTO chunks VALUES (?, ?, ?, ?, ?)');
  db.transaction(() => {
    for (let i = 0; i < N; i++) {
      f.run(paths[i], 4096, 1_700_000_000_000_000_000n + BigInt(i), 1_700_000_000_000_000_000n, i, 2049, 0o100644, ids[i], 'run1');
      c.run(ids[i], blob, i * 4096, 4000, 4096);
    }
  })();
  db.close();
}

const WALK_SQL = `SELECT f.path, f.size, f.mtime_ns, f.ctime_ns, f.inode, f.device, f.mode, f.chunks, f.run,
    c.id, c.blob, c.offset, c.length, c.plain_length
  FROM files f LEFT JOIN chunks c ON c.id = substr(f.chunks, 1, 32)
  ORDER BY f.path`;

function walk(e, file) {
  const db = e.open(file);
  db.exec('PRAGMA cache_size = -2048');
  let n = 0;
  const t = timed(() => {
    for (const row of e.walk(db, WALK_SQL)) if (row[0] !== undefined) n++;
  });
  db.close();
  if (n !== N) throw new Error(`walk saw ${n} rows`);
  return t;
}

function lookup(e, file) {
  const db = e.open(file);
  const get = e.get(db, 'SELECT size, mtime_ns, ctime_ns, inode, device, mode, chunks, run FROM files WHERE path = ?');
  const t = timed(() => {
    for (let i = 0; i < N; i += 2) if (get(paths[i]) === undefined) throw new Error('missing row');
  });
  db.close();
  return t;
}

const cacheFile = path.join(dir, 'cache.sqlite');
fillCache(cacheFile);
const results = {};
for (let r = 0; r < REPS; r++) {
  const order = r % 2 === 0 ? Object.keys(engines) : Object.keys(engines).reverse();
  for (const name of order) {
    const e = engines[name];
    const snap = path.join(dir, `snap-${r}-${name.replace(/\W/g, '')}.db`);
    const res = (results[name] ??= { write: [], walk: [], lookup: [] });
    res.write.push(write(e, snap));
    res.walk.push(walk(e, cacheFile));
    res.lookup.push(lookup(e, cacheFile));
    fs.rmSync(snap);
  }
}
fs.rmSync(dir, { recursive: true });

// "cpu-rate (wall-rate)" per rep, in millions per second.
const rate = (n, xs) => xs.map(([cpu, wall]) => `${(n / cpu / 1e6).toFixed(2)} (${(n / wall / 1e6).toFixed(2)})`).join(' / ');
console.log(`node ${process.version}, ${N} entries, ${REPS} alternating reps, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log('| engine | write M entries/cpu-s (wall) | ordered walk M rows/cpu-s (wall) | lookups M/cpu-s (wall) |');
console.log('| --- | --- | --- | --- |');
for (const [name, r] of Object.entries(results)) console.log(`| ${name} | ${rate(N, r.write)} | ${rate(N, r.walk)} | ${rate(N / 2, r.lookup)} |`);
