#!/usr/bin/env node
// Daemon measurements (issue 7): idle CPU and RSS over a minute while watching a tree of
// 20,000 files, and the time from a change to the snapshot that holds it.
//
//   npm run build && node bench/daemon.mjs [--files 20000] [--idle 60] [--changes 10]
//
// Runs the built CLI (`node dist/cli/bin.js backup <config> --daemon --json`) against a local
// store in a temp dir. CPU is utime+stime of the daemon process (all its threads) from
// /proc/<pid>/stat, RSS is VmRSS sampled every second (`rssMiB.last`: at the end of the idle
// window, what the daemon holds while it waits for the next run). Three phases:
//   1. idle, backup_interval 1h: after the start-up run, only the watcher (the pool is released)
//   2. idle, backup_interval 10s: a tick every 10 s that finds nothing dirty and skips
//   3. latency, backup_interval 5s: a file changes at a random moment; time until the 'run'
//      event of the run that started after the change (so 0-5 s of waiting for the tick plus
//      the run itself), and the run's own duration
// Also, for comparison, the RSS of Node 20's fs.watch(dir, { recursive: true }) on the same tree.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const FILES = arg('files', 20000);
const IDLE_S = arg('idle', 60);
const CHANGES = arg('changes', 10);
/** --series: also print every RSS sample and the CPU seconds used in each second. */
const SERIES = process.argv.includes('--series');
/** --only idle: just the first phase. */
const ONLY_IDLE = process.argv.includes('--only-idle');
const MAIN = fileURLToPath(new URL('../dist/cli/bin.js', import.meta.url));
const { generateKeyPair } = await import(new URL('../dist/crypto/index.js', import.meta.url).href);

const root = mkdtempSync(join(tmpdir(), 'vaultik-bench-daemon-'));
const src = join(root, 'src');
const PER_DIR = 50;
const dirs = Math.ceil(FILES / PER_DIR);
for (let d = 0; d < dirs; d++) {
  // Three levels: 20 top dirs, each with sub dirs of 50 files.
  const dir = join(src, `top${d % 20}`, `sub${d}`);
  mkdirSync(dir, { recursive: true });
  for (let f = 0; f < PER_DIR && d * PER_DIR + f < FILES; f++) writeFileSync(join(dir, `file${f}.txt`), `file ${d}/${f}\n`.repeat(20));
}
const { recipient } = generateKeyPair();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ticks = 100; // USER_HZ: /proc/<pid>/stat times are in 1/100 s on Linux

let phase = 0;
/** A config with a fresh store and state cache, so every phase starts with a full walk. */
function writeConfig(interval) {
  phase++;
  const path = join(root, 'vaultik.yaml');
  mkdirSync(join(root, `store${phase}`));
  writeFileSync(
    path,
    [
      `source_dirs: [${src}]`,
      `age_recipient: ${recipient}`,
      `local: {path: ${join(root, `store${phase}`)}}`,
      `index_path: ${join(root, `cache${phase}`, 'index.sqlite')}`,
      `backup_interval: ${interval}`,
      'full_scan_interval: 24h',
      'min_time_between_run: 0',
      'hostname: bench',
    ].join('\n') + '\n',
  );
  return path;
}

function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / ticks;
}
function rssMiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

function startDaemon(config) {
  const child = spawn(process.execPath, [MAIN, 'backup', config, '--daemon', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const events = [];
  let buf = '';
  child.stdout.setEncoding('utf8').on('data', (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      events.push({ ...JSON.parse(buf.slice(0, nl)), seenAt: performance.now() });
      buf = buf.slice(nl + 1);
    }
  });
  const exited = new Promise((r) => child.once('close', r));
  const next = async (type, from = 0, timeoutMs = 600_000) => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const e = events.slice(from).find((x) => x.type === type);
      if (e) return e;
      if (Date.now() > end) throw new Error(`no ${type} event`);
      await sleep(5);
    }
  };
  return { child, events, next, stop: async () => (child.kill('SIGTERM'), exited) };
}

async function idlePhase(interval) {
  const d = startDaemon(writeConfig(interval));
  const first = await d.next('run');
  const watching = d.events.find((e) => e.type === 'watching');
  await sleep(3000); // let the start-up run's garbage settle
  const pid = d.child.pid;
  const cpu0 = cpuSeconds(pid);
  const t0 = performance.now();
  const rss = [];
  const cpuEach = [];
  let cpuPrev = cpu0;
  for (let s = 0; s < IDLE_S; s++) {
    await sleep(1000);
    rss.push(rssMiB(pid));
    const c = cpuSeconds(pid);
    cpuEach.push(Number((c - cpuPrev).toFixed(2)));
    cpuPrev = c;
  }
  const series = SERIES ? { rssSeries: rss.map((r) => Math.round(r)), cpuSeries: cpuEach } : {};
  const cpu = cpuSeconds(pid) - cpu0;
  const wall = (performance.now() - t0) / 1000;
  const skips = d.events.filter((e) => e.type === 'skipped').length;
  await d.stop();
  const last = rss.at(-1);
  rss.sort((a, b) => a - b);
  return {
    interval,
    startupRun: `${first.scan} walk of ${first.files} files in ${(first.durationMs / 1000).toFixed(2)} s`,
    watchedDirs: watching?.directories,
    watchSetupMs: watching?.ms,
    cpuPercent: ((cpu / wall) * 100).toFixed(3),
    cpuSeconds: cpu.toFixed(2),
    rssMiB: { min: rss[0].toFixed(1), median: rss[rss.length >> 1].toFixed(1), max: rss.at(-1).toFixed(1), last: last.toFixed(1) },
    skips,
    ...series,
  };
}

async function latencyPhase() {
  const d = startDaemon(writeConfig('5s'));
  await d.next('run');
  const lat = [];
  const runMs = [];
  for (let i = 0; i < CHANGES; i++) {
    await sleep(500 + Math.random() * 5000);
    const from = d.events.length;
    const changedAt = performance.now();
    writeFileSync(join(src, `top${i % 20}`, `sub${i}`, 'file0.txt'), `changed ${i} ${Date.now()}\n`);
    // The run that holds the change is the first one to start after it.
    const start = await d.next('run-start', from);
    const run = await d.next('run', d.events.indexOf(start));
    lat.push(run.seenAt - changedAt);
    runMs.push(run.durationMs);
  }
  await d.stop();
  const stats = (a) => {
    const s = [...a].sort((x, y) => x - y);
    return { min: Math.round(s[0]), median: Math.round(s[s.length >> 1]), max: Math.round(s.at(-1)) };
  };
  return { changes: CHANGES, changeToSnapshotMs: stats(lat), dirtyRunMs: stats(runMs) };
}

async function recursiveWatchRss() {
  const code = `const fs=require('fs');const w=fs.watch(${JSON.stringify(src)},{recursive:true});setTimeout(()=>{const m=/VmRSS:\\s+(\\d+)/.exec(fs.readFileSync('/proc/self/status','utf8'));console.log(Number(m[1])/1024);w.close()},2000)`;
  const base = `setTimeout(()=>{const m=/VmRSS:\\s+(\\d+)/.exec(require('fs').readFileSync('/proc/self/status','utf8'));console.log(Number(m[1])/1024)},2000)`;
  const run = (c) => new Promise((r) => {
    let out = '';
    const p = spawn(process.execPath, ['-e', c]);
    p.stdout.on('data', (d) => (out += d));
    p.on('close', () => r(Number(out.trim())));
  });
  return { nodeBaselineMiB: (await run(base)).toFixed(1), recursiveFsWatchMiB: (await run(code)).toFixed(1) };
}

try {
  console.log(JSON.stringify({ files: FILES, dirs, idleSeconds: IDLE_S, node: process.version }));
  console.log(JSON.stringify({ phase: 'idle, backup_interval 1h', ...(await idlePhase('1h')) }));
  if (ONLY_IDLE) process.exit(0);
  console.log(JSON.stringify({ phase: 'idle, backup_interval 10s (skipping ticks)', ...(await idlePhase('10s')) }));
  console.log(JSON.stringify({ phase: 'change to snapshot, backup_interval 5s', ...(await latencyPhase()) }));
  console.log(JSON.stringify({ phase: "for comparison: Node 20 fs.watch recursive on the same tree", ...(await recursiveWatchRss()) }));
} finally {
  rmSync(root, { recursive: true, force: true });
}
