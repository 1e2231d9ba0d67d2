#!/usr/bin/env node
// `vaultik diff` of two snapshots of a 1,000,000-entry tree that differ in one file (not a test).
// See bench/README.md.
//
//   npm run bench:diff                          1,000,000 entries, ~3 min on 2 cores
//   node bench/diff.mjs --entries 20000         a quick check
//
// Options: --entries N (default 1000000), --reps R (timed diffs, default 5), --dir D (work
// directory, kept; the tree is reused from it: `--dir` of a bench:million run works), --seed S,
// --json. Needs `npm run build` and GNU time (/usr/bin/time).
//
// The tree is bench/million.mjs's (bench/milliontree.mjs). Two backups into a new local store
// with one file's content changed between them; then `vaultik diff` through the CLI, R times
// (wall, CPU, peak RSS: median and range), and once in this process through the exported
// diffSnapshots with a Storage that counts every GET, to show which objects it downloads.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bin, checkUsage, dist, finish, host, hostLine, keepOnFailure, log, need, parseOptions, timeRun, vaultikConfig, vaultikVersion, workDir } from './kit.mjs';
import { CountingStorage, millionTree } from './milliontree.mjs';

const opts = parseOptions({ entries: { type: 'string', default: '1000000' }, reps: { type: 'string', default: '5' } });
const ENTRIES = Number(opts.entries);
const SEED = Number(opts.seed);
const REPS = Number(opts.reps);
checkUsage(ENTRIES >= 1000 && Number.isInteger(SEED) && REPS >= 1, 'usage: node bench/diff.mjs [--entries N (at least 1000)] [--reps R] [--dir D] [--seed S] [--json]');
need('time', '/usr/bin/time');

const work = workDir('diff', opts.dir);
const { dir, data } = work;
const { leaves, leafDir, fileName, tree, built, genSeconds } = millionTree(work, ENTRIES, SEED);
log(`tree: ${tree.entries} entries${built ? `, built in ${genSeconds.toFixed(1)} s` : ' (reused)'}`);

// A store of its own (a kept bench:million directory keeps its own), made before the first
// backup, like everything else this script writes in the work directory (see million.mjs).
const store = join(dir, 'diff-store');
const stateDir = join(dir, 'diff-state');
const scratch = join(dir, 'tmp');
const timeFile = join(dir, 'time.txt');
for (const d of [store, stateDir, scratch]) {
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d);
}
writeFileSync(timeFile, '');
const { key, config } = vaultikConfig(dir, data, store, join(stateDir, 'index.sqlite'));
const env = { ...process.env, TMPDIR: scratch, VAULTIK_PRIVATE_KEY: key };
keepOnFailure(dir);

const timed = (label, args) => {
  const r = timeRun([process.execPath, bin, ...args], timeFile, label, { env, maxBuffer: 1 << 28 });
  const cpu = r.user + r.sys;
  log(`  ${label.padEnd(16)} ${r.wall.toFixed(2).padStart(7)} s wall, ${cpu.toFixed(2).padStart(7)} s cpu, ${String(Math.round(r.rssKiB / 1024)).padStart(5)} MiB`);
  return { wall: r.wall, cpu, rssKiB: r.rssKiB, stdout: r.stdout.toString() };
};
const snapshotOf = (stdout) => JSON.parse(stdout.trim().split('\n').pop()).snapshotId;

const loadStart = loadavg();
const startTime = new Date();
// The file that changes: a non-empty one in the middle of the tree, given new bytes of another
// length (its directory's mtime does not change: exactly one entry differs).
const middle = leafDir(Math.floor(leaves / 2));
const changed = join(middle, [...Array(100).keys()].map(fileName).find((n) => readFileSync(join(middle, n)).length > 0) ?? fileName(0));
const original = readFileSync(changed);
log('two backups, one file changed between them');
const first = timed('first backup', ['backup', config, '--json']);
writeFileSync(changed, Buffer.concat([original, Buffer.from(' changed')]));
let second;
try {
  second = timed('second backup', ['backup', config, '--json']);
} finally {
  writeFileSync(changed, original); // a kept tree stays the generated one (but for this mtime)
}
const [idA, idB] = [snapshotOf(first.stdout), snapshotOf(second.stdout)];

log(`vaultik diff ${idA} ${idB}, ${REPS} times`);
const url = `file://${store}`;
const runs = [];
for (let i = 0; i < REPS; i++) runs.push(timed(`diff ${i + 1}`, ['diff', url, '', idA, idB, '--json']));
const out = runs[0].stdout.trim().split('\n').map((l) => JSON.parse(l));
const summary = out.at(-1);
const entries = out.filter((l) => l.type === 'entry');

// In this process: which objects the diff downloads.
const imp = (rel) => import(pathToFileURL(join(dist, rel)).href);
const { openStorage } = await imp('storage/index.js');
const { listSnapshots } = await imp('snapshot/index.js');
const { loadIdentities } = await imp('crypto/index.js');
const { MetadataSource, diffSnapshots } = await imp('inspect/index.js');
const storage = new CountingStorage(openStorage({ type: 'local', path: store, prefix: '' }));
const t0 = process.hrtime.bigint();
const list = await listSnapshots(storage, 'index/');
const source = new MetadataSource({ storage, identities: await loadIdentities(key), tmpDir: scratch });
const inProcess = await diffSnapshots(source, list.find((s) => s.id === idA), list.find((s) => s.id === idB), () => {});
const inProcessWall = Number(process.hrtime.bigint() - t0) / 1e9;
const gets = { count: storage.gets, bytes: storage.bytes, byPrefix: storage.byPrefix, keys: storage.keys };
await storage.close();
rmSync(store, { recursive: true, force: true });
rmSync(stateDir, { recursive: true, force: true });

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const stat = (k) => ({ median: median(runs.map((r) => r[k])), min: Math.min(...runs.map((r) => r[k])), max: Math.max(...runs.map((r) => r[k])) });
const results = {
  meta: { date: startTime.toISOString(), vaultik: vaultikVersion(), ...host(), loadStart, loadEnd: loadavg(), dir, changed },
  tree,
  backups: { first: { ...first, stdout: undefined }, second: { ...second, stdout: undefined } },
  diff: { reps: REPS, wall: stat('wall'), cpu: stat('cpu'), rssKiB: stat('rssKiB'), entries: entries.map((e) => `${e.status} ${e.path}`), summary },
  inProcess: { wall: inProcessWall, shards: inProcess.shards, gets },
};
const f = (s, d = 2) => `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`;
const markdown = [
  `## diff: vaultik ${results.meta.vaultik}, ${results.meta.date.slice(0, 10)}`,
  '',
  hostLine(results.meta),
  `tree: ${tree.entries} entries${built ? `, generated in ${genSeconds.toFixed(1)} s` : ', reused'}; backups ${first.wall.toFixed(1)} s and ${second.wall.toFixed(1)} s; changed: ${changed}`,
  '',
  `| \`vaultik diff\` (CLI, ${REPS} runs) | median (min–max) |`,
  '| --- | ---: |',
  `| wall s | ${f(results.diff.wall)} |`,
  `| CPU s | ${f(results.diff.cpu)} |`,
  `| peak RSS MiB | ${(results.diff.rssKiB.median / 1024).toFixed(0)} (${(results.diff.rssKiB.min / 1024).toFixed(0)}–${(results.diff.rssKiB.max / 1024).toFixed(0)}) |`,
  '',
  `entries reported: ${entries.length} (${results.diff.entries.join('; ')})`,
  `shards: ${summary.shards.before} and ${summary.shards.after} listed, ${summary.shards.shared} shared (skipped), ${summary.shards.read} read`,
  `in process: ${inProcessWall.toFixed(2)} s; ${gets.count} GETs, ${gets.bytes} bytes (${Object.entries(gets.byPrefix).map(([k, b]) => `${k}/ ${b} B`).join(', ')}): ${gets.keys.join(', ')}`,
].join('\n');
finish(work, opts.json, markdown, JSON.stringify(results, null, 2));
