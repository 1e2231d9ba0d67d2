// What bench/smallfiles.mjs and bench/million.mjs share: both drive the built CLI on a generated
// tree in a work directory, time each step under GNU time, and print one report. Each script
// keeps its own tree, steps and tables. (bench/timed.mjs times work in this process instead.)
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const repo = fileURLToPath(new URL('..', import.meta.url));
export const dist = join(repo, 'dist');
export const bin = join(dist, 'cli', 'bin.js');

export const log = (msg) => console.error(msg);

/** Runs a command to completion; throws with its stderr when it fails. Returns stdout. */
export function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { maxBuffer: 1 << 28, ...options });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}:\n${r.stderr?.toString().slice(-2000)}`);
  return r.stdout?.toString() ?? '';
}

/** Installs a missing tool with apt-get, so a fresh machine can run the bench. */
export function need(tool, path) {
  if (existsSync(path)) return;
  log(`installing ${tool}`);
  run('apt-get', ['install', '-y', '-qq', tool], { stdio: 'inherit' });
}

/** The script's own options plus the ones every such bench has: --dir, --seed, --json. */
export function parseOptions(own) {
  const options = { ...own, dir: { type: 'string' }, seed: { type: 'string', default: '1' }, json: { type: 'boolean', default: false } };
  return parseArgs({ options }).values;
}

/** Exits 2 with the usage line when the options are wrong, or when dist/ is not built. */
export function checkUsage(ok, usage) {
  if (!ok) {
    console.error(usage);
    process.exit(2);
  }
  if (!existsSync(bin)) {
    console.error('build first: npm run build');
    process.exit(2);
  }
}

/**
 * The work directory: --dir, or a new one (ownDir, removed at the end). `data` is the tree to
 * back up, `marker` says which tree is there, so a kept directory reuses it.
 */
export function workDir(name, given) {
  const ownDir = given === undefined;
  // The default work directory is under /var/tmp, not /tmp: /tmp is a tmpfs on many systems (the
  // files would live in RAM), and it is busy. Its mtime changes whenever anything is created in it,
  // and the tools record the data's ancestors, so a no-change backup would not be one.
  const parent = existsSync('/var/tmp') ? '/var/tmp' : tmpdir();
  const dir = ownDir ? mkdtempSync(join(parent, `vaultik-${name}-`)) : given;
  mkdirSync(dir, { recursive: true });
  return { dir, ownDir, data: join(dir, 'data'), marker: join(dir, 'data.complete') };
}

/** After a failure the work directory stays (even a made one), and its path is said. */
export function keepOnFailure(dir) {
  process.on('exit', (code) => {
    if (code !== 0) log(`work directory left for a look: ${dir}`);
  });
}

/**
 * Runs build() into work.data unless the marker holds `want` (the same options built it before).
 * The marker is written last, so an interrupted build is redone. Returns whether it built, and
 * the seconds taken.
 */
export function buildOnce(work, want, message, build) {
  const t0 = process.hrtime.bigint();
  const json = JSON.stringify(want);
  let built = false;
  if (!(existsSync(work.marker) && readFileSync(work.marker, 'utf8') === json)) {
    log(message);
    rmSync(work.data, { recursive: true, force: true });
    rmSync(work.marker, { force: true });
    build();
    writeFileSync(work.marker, json);
    built = true;
  }
  return { built, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/** mulberry32: a small seeded PRNG, so every machine builds the same tree. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A key (made once, kept with a kept work directory) and a config that backs data up to a local store. */
export function vaultikConfig(dir, data, store, indexPath) {
  const key = join(dir, 'key.txt');
  if (!existsSync(key)) run(process.execPath, [bin, 'keygen', '-o', key]);
  const recipient = run(process.execPath, [bin, 'keygen', '-y', key]).trim();
  const config = join(dir, 'vaultik.yaml');
  writeFileSync(config, [`source_dirs: [${data}]`, `age_recipient: ${recipient}`, `local: {path: ${store}}`, `index_path: ${indexPath}`, 'hostname: bench', ''].join('\n'));
  return { key, config };
}

/** Bytes and number of the regular files under a directory (what a remote store would hold). */
export function storeSize(root) {
  let bytes = 0;
  let objects = 0;
  if (!existsSync(root)) return { bytes, objects };
  for (const e of readdirSync(root, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    bytes += lstatSync(join(e.parentPath, e.name)).size;
    objects++;
  }
  return { bytes, objects };
}

// GNU time gives the child's CPU time and peak RSS; Node cannot get a child's rusage itself.
/**
 * Runs argv under /usr/bin/time (need('time', '/usr/bin/time') first), which writes user s, system s and peak RSS KiB to timeFile (a
 * file the caller made before its first backup, so that it does not change the data's
 * ancestors). Throws, naming `what`, when the command fails.
 */
export function timeRun(argv, timeFile, what, options) {
  const start = process.hrtime.bigint();
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S %M', '-o', timeFile, ...argv], options);
  const wall = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}:\n${r.stderr.toString().slice(-3000)}`);
  const [user, sys, rssKiB] = readFileSync(timeFile, 'utf8').trim().split('\n').pop().split(' ').map(Number);
  return { wall, user, sys, rssKiB, stdout: r.stdout };
}

/** The commit measured, as the report names it. */
export function vaultikVersion() {
  try {
    return run('git', ['-C', repo, 'rev-parse', '--short', 'HEAD']).trim();
  } catch {
    return 'unknown';
  }
}

/** The machine, for the report's meta: a number means little without it. */
export function host() {
  return { node: process.version, cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length };
}

/** The report's machine line: cores, CPU, Node, and the load around the run (a shared machine). */
export function hostLine(meta) {
  const load = (l) => l.map((x) => x.toFixed(2)).join(' ');
  return `${meta.cores} cores, ${meta.cpu}, Node ${meta.node}, load average ${load(meta.loadStart)} at start, ${load(meta.loadEnd)} at end`;
}

/** Prints the report (markdown, or JSON with --json); a kept work directory also keeps both forms, a made one is removed. */
export function finish(work, asJson, markdown, json) {
  console.log(asJson ? json : markdown);
  if (work.ownDir) rmSync(work.dir, { recursive: true, force: true });
  else {
    writeFileSync(join(work.dir, 'report.md'), `${markdown}\n`);
    writeFileSync(join(work.dir, 'results.json'), `${json}\n`);
  }
}
