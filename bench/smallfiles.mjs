#!/usr/bin/env node
// Many small files: vaultik against restic in the same run (not a test). See bench/README.md.
//
//   npm run bench:smallfiles                      100,000 files, 2 reps, about 10 min on 2 cores
//   node bench/smallfiles.mjs --files 2000 --reps 1 --settle 0      a quick check
//
// Options: --files N (default 100000), --reps R (default 2), --dir D (work directory; the
// dataset is built there once and reused, and report.md and results.json are written there; put
// it on a quiet path, not in /tmp; default a new directory in /var/tmp, removed at the end),
// --settle S (seconds of rest before each timed restore, default 30), --seed S, --json (print
// JSON instead of the markdown report). Needs `npm run build`, restic and GNU time.
//
// Each rep starts both tools from an empty store and runs the same steps, alternating the tools
// step by step (vaultik first in odd reps, restic first in even reps), so a busy phase of a
// shared machine hits both: initial backup, no-change backup, one file changed (a line
// appended) then backed up, full restore into an empty directory (checked with diff, untimed).
// Only the CLI is used, so the script measures any version of vaultik.
import { spawnSync } from 'node:child_process';
import { appendFileSync, lstatSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { bin, buildOnce, checkUsage, finish, host, hostLine, keepOnFailure, log, need, parseOptions, prng, run, storeSize, timeRun, vaultikConfig, vaultikVersion, workDir } from './kit.mjs';

const opts = parseOptions({
  files: { type: 'string', default: '100000' },
  reps: { type: 'string', default: '2' },
  settle: { type: 'string', default: '30' },
});
const FILES = Number(opts.files);
const REPS = Number(opts.reps);
const SETTLE = Number(opts.settle);
const SEED = Number(opts.seed);
checkUsage(FILES >= 1 && REPS >= 1 && SETTLE >= 0 && Number.isInteger(SEED), 'usage: node bench/smallfiles.mjs [--files N] [--reps R] [--dir D] [--settle S] [--seed S] [--json]');
need('restic', '/usr/bin/restic');
need('time', '/usr/bin/time');

// ---------------------------------------------------------------- work directory and dataset
const work = workDir('smallfiles', opts.dir);
const { dir, data } = work;

const FILES_PER_DIR = 100;
const DIRS_PER_TOP = 32;
const leafDirs = Math.ceil(FILES / FILES_PER_DIR);
const leafDir = (d) => `t${String(Math.floor(d / DIRS_PER_TOP)).padStart(3, '0')}/d${String(d % DIRS_PER_TOP).padStart(2, '0')}`;
const filePath = (i) => join(data, leafDir(Math.floor(i / FILES_PER_DIR)), `f${String(i).padStart(6, '0')}.txt`);

/**
 * FILES text-like files (words from a fixed random vocabulary, in lines) of 200-1500 bytes,
 * skewed small (mean about 720 B), 100 per directory in two levels (about 1,000 directories for
 * 100,000 files), plus a few symlinks. Each file starts with its own name, so no two are equal
 * (neither tool can deduplicate one against another), and the rest is a slice of a 1 MiB corpus.
 */
function buildDataset() {
  const rand = prng(SEED);
  const vocab = [];
  for (let i = 0; i < 2000; i++) {
    let w = '';
    const n = 2 + Math.floor(rand() * rand() * 11);
    for (let k = 0; k < n; k++) w += String.fromCharCode(97 + Math.floor(rand() * 26));
    vocab.push(w);
  }
  let corpus = '';
  let line = '';
  while (corpus.length < 1 << 20) {
    // Zipf-like word choice (small indexes much more often), as in real text.
    line += vocab[Math.floor(vocab.length * rand() ** 3)];
    if (line.length > 60 + rand() * 20) {
      corpus += `${line}\n`;
      line = '';
    } else line += ' ';
  }
  for (let d = 0; d < leafDirs; d++) mkdirSync(join(data, leafDir(d)), { recursive: true });
  for (let i = 0; i < FILES; i++) {
    const size = 200 + Math.floor(1300 * rand() ** 1.5);
    const head = `# f${i}\n`;
    const at = Math.floor(rand() * (corpus.length - 1500));
    writeFileSync(filePath(i), head + corpus.slice(at, at + size - head.length));
  }
  // Symlinks: relative ones to files and to a directory, an absolute one, a dangling one.
  mkdirSync(join(data, 'links'));
  for (let k = 0; k < 6; k++) {
    const i = Math.floor((k * FILES) / 6);
    symlinkSync(join('..', leafDir(Math.floor(i / FILES_PER_DIR)), `f${String(i).padStart(6, '0')}.txt`), join(data, 'links', `file${k}`));
  }
  symlinkSync(join('..', leafDir(0)), join(data, 'links', 'dir'));
  symlinkSync(filePath(0), join(data, 'links', 'absolute'));
  symlinkSync('nowhere/at/all', join(data, 'links', 'dangling'));
}

/** Regular files, directories, symlinks and bytes (apparent sizes) under `root`. */
function treeStats(root) {
  const s = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        s.dirs++;
        walk(p);
      } else if (e.isSymbolicLink()) s.symlinks++;
      else if (e.isFile()) {
        s.files++;
        s.bytes += lstatSync(p).size;
      }
    }
  };
  walk(root);
  return s;
}

const { built, seconds: genSeconds } = buildOnce(work, { files: FILES, seed: SEED, layout: 1 }, `building the dataset in ${data}: ${FILES} files`, buildDataset);
const dataset = { ...treeStats(data), generatedSeconds: built ? genSeconds : null };
log(`dataset: ${dataset.files} files, ${dataset.dirs} dirs, ${dataset.symlinks} symlinks, ${(dataset.bytes / 1e6).toFixed(1)} MB${built ? `, built in ${genSeconds.toFixed(1)} s` : ' (reused)'}`);

// ---------------------------------------------------------------- the two tools
const vStore = join(dir, 'vaultik-store');
const vState = join(dir, 'vaultik-state');
const { key, config } = vaultikConfig(dir, data, vStore, join(vState, 'index.sqlite'));
const rRepo = join(dir, 'restic-repo');
// restic keeps its normal local cache, as vaultik keeps its state cache: both under the work dir.
// Both tools write their temp files here, not in /tmp: /tmp is an ancestor of the default work
// directory, and one tool's temp files would change it between the other's backups (see
// ancestorsStayPut below).
const scratch = join(dir, 'tmp');
mkdirSync(scratch, { recursive: true });
const resticEnv = { ...process.env, TMPDIR: scratch, RESTIC_PASSWORD: 'bench', RESTIC_REPOSITORY: rRepo, RESTIC_CACHE_DIR: join(dir, 'restic-cache') };
const vaultikEnv = { ...process.env, TMPDIR: scratch, VAULTIK_PRIVATE_KEY: key };
const target = join(dir, 'target');

const tools = {
  vaultik: {
    store: vStore,
    reset() {
      rmSync(vStore, { recursive: true, force: true });
      rmSync(vState, { recursive: true, force: true });
      // Created now, not by the first backup: see ancestorsStayPut below.
      mkdirSync(vStore);
      mkdirSync(vState);
    },
    backup: () => [[process.execPath, bin, 'backup', config, '--cron'], vaultikEnv],
    restore: () => [[process.execPath, bin, 'restore', `file://${vStore}`, '', 'latest', target], vaultikEnv],
  },
  restic: {
    store: rRepo,
    reset() {
      rmSync(rRepo, { recursive: true, force: true });
      rmSync(resticEnv.RESTIC_CACHE_DIR, { recursive: true, force: true });
      mkdirSync(resticEnv.RESTIC_CACHE_DIR);
      run('restic', ['init', '-q'], { env: resticEnv });
    },
    backup: () => [['restic', 'backup', '-q', data], resticEnv],
    restore: () => [['restic', 'restore', '-q', 'latest', '--target', target], resticEnv],
  },
};

// ancestorsStayPut: both tools record the data's ancestor directories (the work directory, /tmp)
// with their mtimes, so an entry created or removed in the work directory between two backups
// is a change to back up. Everything the steps need there exists before a rep's first backup
// (the stores, the caches, this file), and the restore target comes and goes after the rep's
// backups. A busy /tmp can still change between backups: --dir on a quiet path avoids that.
const timeFile = join(dir, 'time.txt');
writeFileSync(timeFile, '');
const rows = [];

/** Runs one step of one tool under /usr/bin/time and records wall, CPU, peak RSS, store growth. */
function timed(tool, step, rep, [argv, env]) {
  const before = storeSize(tools[tool].store);
  const { wall, user, sys, rssKiB } = timeRun(argv, timeFile, `${tool} ${step} (rep ${rep})`, { env, stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 1 << 28 });
  const after = storeSize(tools[tool].store);
  const row = { tool, step, rep, wall, cpu: user + sys, user, sys, rssKiB, growthBytes: after.bytes - before.bytes, newObjects: after.objects - before.objects, storeBytes: after.bytes };
  rows.push(row);
  log(`  ${tool.padEnd(7)} ${step.padEnd(9)} rep ${rep}: ${wall.toFixed(2).padStart(6)} s wall, ${row.cpu.toFixed(2).padStart(6)} s cpu, ${String(Math.round(rssKiB / 1024)).padStart(4)} MiB, store +${fmtBytes(row.growthBytes)} (${row.newObjects} objects)`);
  return row;
}

/** The restored tree must equal the data: symlinks compared as links, contents byte for byte. */
function verifyRestore(tool) {
  const r = spawnSync('diff', ['-r', '--no-dereference', data, join(target, data)], { maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${tool} restore differs from the data:\n${r.stdout.toString().slice(0, 2000)}${r.stderr.toString().slice(0, 2000)}`);
}

// Right after a large tree is deleted, ext4 spends a while on its freed inodes at every file
// creation (bench/compare.sh saw 3-4x the sys time of the same restore run later, for both
// tools): delete, sync, then let it settle before timing a restore.
function settle() {
  rmSync(target, { recursive: true, force: true });
  run('sync', []);
  if (SETTLE > 0) spawnSync('sleep', [String(SETTLE)]);
}

const MiB = 1024 * 1024;
function fmtBytes(n) {
  const a = Math.abs(n);
  if (a < 10 * 1024) return `${n} B`;
  if (a < MiB) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / MiB).toFixed(2)} MiB`;
}

// ---------------------------------------------------------------- the runs
const loadStart = loadavg();
const startTime = new Date();
const steps = ['initial', 'no-change', 'one-file', 'restore'];
keepOnFailure(dir);
for (let rep = 1; rep <= REPS; rep++) {
  const order = rep % 2 === 1 ? ['vaultik', 'restic'] : ['restic', 'vaultik'];
  log(`rep ${rep} of ${REPS} (${order.join(' first, then ')})`);
  for (const tool of order) tools[tool].reset();
  for (const tool of order) timed(tool, 'initial', rep, tools[tool].backup());
  for (const tool of order) timed(tool, 'no-change', rep, tools[tool].backup());
  // One file gets a line appended (a different file in every rep); both tools back it up.
  const changed = filePath((rep * 7919 + 17) % FILES);
  appendFileSync(changed, `changed in rep ${rep} at ${new Date().toISOString()}\n`);
  for (const tool of order) timed(tool, 'one-file', rep, tools[tool].backup());
  for (const tool of order) {
    settle();
    timed(tool, 'restore', rep, tools[tool].restore());
    verifyRestore(tool);
  }
  rmSync(target, { recursive: true, force: true });
}
const loadEnd = loadavg();

// ---------------------------------------------------------------- report
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
function stat(tool, step, field) {
  const xs = rows.filter((r) => r.tool === tool && r.step === step).map((r) => r[field]);
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}
const summary = {};
for (const step of steps) {
  summary[step] = {};
  for (const field of ['wall', 'cpu', 'rssKiB', 'growthBytes', 'newObjects']) {
    const v = stat('vaultik', step, field);
    const r = stat('restic', step, field);
    summary[step][field] = { vaultik: v, restic: r, ratio: r.median === 0 ? null : v.median / r.median };
  }
}
const meta = {
  date: startTime.toISOString(),
  vaultik: vaultikVersion(),
  restic: run('restic', ['version']).split(' ').slice(0, 2).join(' '),
  ...host(),
  loadStart,
  loadEnd,
  reps: REPS,
  settleSeconds: SETTLE,
  dir,
};
// The issue's targets for vaultik's store growth.
const targets = { 'no-change': 64 * 1024, 'one-file': 1 * MiB };

const json = JSON.stringify({ meta, dataset, targets, runs: rows, summary }, null, 2);
const markdown = (() => {
  const cell = (s, f) => (f(s.min) === f(s.max) ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`);
  const ratio = (x) => (x === null ? '—' : x.toFixed(2));
  const sec = (x) => x.toFixed(2);
  const mib = (x) => (x / 1024).toFixed(0);
  const out = [];
  out.push(`## smallfiles: vaultik ${meta.vaultik} vs ${meta.restic}, ${meta.date.slice(0, 10)}`);
  out.push('');
  out.push(hostLine(meta));
  out.push(`dataset: ${dataset.files} files, ${dataset.dirs} directories, ${dataset.symlinks} symlinks, ${(dataset.bytes / 1e6).toFixed(1)} MB; ${REPS} reps per step and tool, alternating; each cell median (min–max)`);
  out.push('');
  out.push('| step | vaultik wall s | restic wall s | wall ratio | vaultik CPU s | restic CPU s | CPU ratio |');
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const step of steps) {
    const s = summary[step];
    out.push(`| ${step} | ${cell(s.wall.vaultik, sec)} | ${cell(s.wall.restic, sec)} | **${ratio(s.wall.ratio)}** | ${cell(s.cpu.vaultik, sec)} | ${cell(s.cpu.restic, sec)} | ${ratio(s.cpu.ratio)} |`);
  }
  out.push('');
  out.push('| step | vaultik peak RSS MiB | restic peak RSS MiB | RSS ratio | vaultik store growth | restic store growth | growth ratio | new objects v / r |');
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const step of steps) {
    const s = summary[step];
    const growth = step === 'restore' ? ['—', '—', '—', '—'] : [cell(s.growthBytes.vaultik, fmtBytes), cell(s.growthBytes.restic, fmtBytes), ratio(s.growthBytes.ratio), `${cell(s.newObjects.vaultik, String)} / ${cell(s.newObjects.restic, String)}`];
    out.push(`| ${step} | ${cell(s.rssKiB.vaultik, mib)} | ${cell(s.rssKiB.restic, mib)} | ${ratio(s.rssKiB.ratio)} | ${growth.join(' | ')} |`);
  }
  out.push('');
  for (const [step, limit] of Object.entries(targets)) {
    const worst = summary[step].growthBytes.vaultik.max;
    out.push(`vaultik ${step} store growth: at most ${fmtBytes(worst)} over the reps; target ≤ ${fmtBytes(limit)}: ${worst <= limit ? 'met' : 'NOT met'}`);
  }
  return out.join('\n');
})();
finish(work, opts.json, markdown, json);
