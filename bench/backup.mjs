#!/usr/bin/env node
// Backup benchmark: throughput and peak RSS of `vaultik backup` (the real CLI) for an initial and
// a no-change run of a real tree to the local store, plus a small incremental run, and the store
// size. See bench/README.md ("npm run build && node bench/backup.mjs").
//
// Environment: BENCH_DIR (default /tmp/vaultik-bench; the dataset is built there once and
// reused), BENCH_RUNS (runs per step, default 1), BENCH_CHUNK / BENCH_BLOB (chunk_size and
// blob_size_limit, default the config defaults), BENCH_WORKERS is not used: the CLI uses every core.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
const main = join(repo, 'dist', 'cli', 'main.js');
const dir = process.env.BENCH_DIR ?? '/tmp/vaultik-bench';
const data = join(dir, 'data');
const runs = Number(process.env.BENCH_RUNS ?? 1);

if (!existsSync(main)) {
  console.error('build first: npm run build');
  process.exit(2);
}

function sh(cmd) {
  execFileSync('sh', ['-c', cmd], { stdio: 'inherit' });
}

function buildDataset() {
  if (existsSync(join(data, '.complete'))) return;
  console.error(`building the dataset in ${data} (once)…`);
  rmSync(data, { recursive: true, force: true });
  mkdirSync(data, { recursive: true });
  // Real files with their mtimes: small text, docs, icons, shared libraries.
  sh(`cp -a /usr/share '${data}/share'`);
  sh(`cp -a /usr/lib/x86_64-linux-gnu '${data}/lib'`);
  // Large files: incompressible, compressible (a tar of system files), and a copy of the random
  // one with 1 MiB inserted in the middle (shares all but a chunk or two with it).
  sh(`head -c 268435456 /dev/urandom > '${data}/random.bin'`);
  sh(`tar -cf '${data}/system.tar' -C /usr/share doc man 2>/dev/null || true`);
  sh(`{ head -c 134217728 '${data}/random.bin'; head -c 1048576 /dev/urandom; tail -c 134217728 '${data}/random.bin'; } > '${data}/random-inserted.bin'`);
  writeFileSync(join(data, '.complete'), '');
}

function treeStats() {
  const files = Number(execFileSync('sh', ['-c', `find '${data}' -type f | wc -l`]).toString().trim());
  const bytes = Number(execFileSync('sh', ['-c', `du -sb --apparent-size '${data}' | cut -f1`]).toString().trim());
  return { files, bytes };
}

function keyPair() {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', `import { generateKeyPair } from '${join(repo, 'dist/crypto/index.js')}'; console.log(generateKeyPair().recipient);`]);
  return out.toString().trim();
}

function writeConfig(recipient) {
  const cfg = join(dir, 'vaultik.yaml');
  writeFileSync(
    cfg,
    [
      `source_dirs: [${data}]`,
      `age_recipient: ${recipient}`,
      `local: {path: ${join(dir, 'store')}}`,
      `index_path: ${join(dir, 'cache', 'index.sqlite')}`,
      ...(process.env.BENCH_CHUNK ? [`chunk_size: ${process.env.BENCH_CHUNK}`] : []),
      ...(process.env.BENCH_BLOB ? [`blob_size_limit: ${process.env.BENCH_BLOB}`] : []),
      'hostname: bench',
      '',
    ].join('\n'),
  );
  return cfg;
}

/** Runs the CLI under /usr/bin/time -v; returns wall seconds, CPU seconds, peak RSS (MiB), summary. */
function backup(cfg) {
  const r = spawnSync('/usr/bin/time', ['-v', process.execPath, main, 'backup', cfg, '--json'], { maxBuffer: 1 << 28 });
  const err = r.stderr.toString();
  if (r.status !== 0) {
    console.error(err);
    throw new Error(`backup exited ${r.status}`);
  }
  const field = (name) => {
    const m = new RegExp(`${name}: (.*)`).exec(err);
    return m ? m[1].trim() : '';
  };
  const wallText = field('Elapsed \\(wall clock\\) time \\(h:mm:ss or m:ss\\)');
  const wall = wallText.split(':').reduce((acc, p) => acc * 60 + Number(p), 0);
  const cpu = Number(field('User time \\(seconds\\)')) + Number(field('System time \\(seconds\\)'));
  const rss = Number(field('Maximum resident set size \\(kbytes\\)')) / 1024;
  const lines = r.stdout.toString().trim().split('\n');
  const summary = JSON.parse(lines[lines.length - 1]);
  return { wall, cpu, rss, summary };
}

function storeSize() {
  return Number(execFileSync('sh', ['-c', `du -sb '${join(dir, 'store')}' | cut -f1`]).toString().trim());
}

const MiB = 1024 * 1024;
const row = (step, r, bytes) =>
  `| ${step.padEnd(18)} | ${r.wall.toFixed(2).padStart(7)} s | ${(bytes / MiB / r.wall).toFixed(0).padStart(6)} MiB/s | ${(r.cpu / r.wall).toFixed(2)}x | ${r.rss.toFixed(0).padStart(5)} MiB | ${(r.summary.bytesRead / MiB).toFixed(0).padStart(6)} MiB read | ${(r.summary.bytesUploaded / MiB).toFixed(1).padStart(7)} MiB up |`;

buildDataset();
const stats = treeStats();
const recipient = keyPair();
const cfg = writeConfig(recipient);
console.log(`dataset: ${stats.files} files, ${(stats.bytes / MiB).toFixed(0)} MiB (${data})`);
console.log('| step               |    wall   | throughput  | cpu   |  peak RSS  |   bytes read    |   uploaded      |');
console.log('| ---                | ---       | ---        | ---   | ---        | ---             | ---             |');
for (let i = 0; i < runs; i++) {
  rmSync(join(dir, 'store'), { recursive: true, force: true });
  rmSync(join(dir, 'cache'), { recursive: true, force: true });
  const initial = backup(cfg);
  console.log(row('initial', initial, initial.summary.bytesScanned));
  const size = storeSize();
  const nochange = backup(cfg);
  console.log(row('no change', nochange, nochange.summary.bytesScanned));
  // A small incremental change set: 100 files touched, one large file appended to.
  execFileSync('sh', ['-c', `find '${join(data, 'share')}' -type f -name '*.txt' | head -100 | xargs touch`]);
  execFileSync('sh', ['-c', `head -c 65536 /dev/urandom >> '${join(data, 'system.tar')}'`]);
  const incr = backup(cfg);
  console.log(row('small incremental', incr, incr.summary.bytesScanned));
  console.log(`store after the initial run: ${(size / MiB).toFixed(0)} MiB (${((100 * size) / stats.bytes).toFixed(1)}% of the data); after all: ${(storeSize() / MiB).toFixed(0)} MiB`);
  // Undo the append so the next round starts from the same data.
  execFileSync('sh', ['-c', `truncate -s -65536 '${join(data, 'system.tar')}'`]);
}
