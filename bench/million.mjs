#!/usr/bin/env node
// A million entries: what vaultik's snapshot metadata costs at that size (not a test). See
// bench/README.md.
//
//   npm run bench:million                         1,000,000 entries, ~10 min on 2 cores
//   node bench/million.mjs --entries 20000        a quick check
//
// Options: --entries N (default 1000000), --dir D (work directory; the tree is built there once
// and reused, and report.md and results.json are written there; put it on a quiet path, not in
// /tmp; default a new directory in /var/tmp, removed at the end), --seed S, --json (print JSON
// instead of the markdown report). Needs `npm run build` and GNU time (/usr/bin/time).
//
// Measures vaultik alone: the initial and a no-change backup (wall, CPU, peak RSS), the state
// cache's size, the metadata a snapshot adds to the store, and the metadata that looking up one
// file or listing one directory downloads. The backups, `fetch` and `ls` run through the CLI;
// the download is counted in this process, through the exported openSnapshot and a Storage
// wrapper that counts the bytes of every `get`, so it works for any format version.
import { existsSync, lstatSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bin, checkUsage, dist, finish, host, hostLine, keepOnFailure, log, need, parseOptions, run, storeSize, timeRun, vaultikConfig, vaultikVersion, workDir } from './kit.mjs';
import { CountingStorage, millionTree } from './milliontree.mjs';

const opts = parseOptions({ entries: { type: 'string', default: '1000000' } });
const ENTRIES = Number(opts.entries);
const SEED = Number(opts.seed);
checkUsage(ENTRIES >= 1000 && Number.isInteger(SEED), 'usage: node bench/million.mjs [--entries N (at least 1000)] [--dir D] [--seed S] [--json]');
need('time', '/usr/bin/time');

// ---------------------------------------------------------------- work directory and tree
const work = workDir('million', opts.dir);
const { dir, data } = work;

const { leaves, leafDir, fileName, tree, built, genSeconds } = millionTree(work, ENTRIES, SEED);
log(`tree: ${tree.entries} entries (${tree.files} files, ${tree.dirs} directories)${built ? `, built in ${genSeconds.toFixed(1)} s` : ' (reused)'}`);

// ---------------------------------------------------------------- vaultik
const store = join(dir, 'vaultik-store');
const stateDir = join(dir, 'vaultik-state');
const indexPath = join(stateDir, 'index.sqlite');
const { key, config } = vaultikConfig(dir, data, store, indexPath);
const scratch = join(dir, 'tmp');
// vaultik's temp files go to the work directory's scratch directory, not /tmp, an ancestor of the
// default work directory (see the comment before the backups).
const env = { ...process.env, TMPDIR: scratch, VAULTIK_PRIVATE_KEY: key };

const MiB = 1024 * 1024;
function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const a = Math.abs(n);
  if (a < 10 * 1024) return `${Math.round(n)} B`;
  if (a < MiB) return `${(n / 1024).toFixed(1)} KiB`;
  if (a < 1024 * MiB) return `${(n / MiB).toFixed(2)} MiB`;
  return `${(n / 1024 / MiB).toFixed(2)} GiB`;
}

const timeFile = join(dir, 'time.txt');
/** Runs a CLI command under /usr/bin/time: wall s, CPU s, peak RSS KiB, stdout. */
function timed(label, args) {
  const { wall, user, sys, rssKiB, stdout } = timeRun([process.execPath, bin, ...args], timeFile, label, { env, maxBuffer: 1 << 30 });
  log(`  ${label.padEnd(18)} ${wall.toFixed(2).padStart(7)} s wall, ${(user + sys).toFixed(2).padStart(7)} s cpu, ${String(Math.round(rssKiB / 1024)).padStart(5)} MiB`);
  return { wall, cpu: user + sys, rssKiB, stdout };
}

/** The backup's own summary (the last line of `backup --json`), when it prints one. */
function backupSummary(stdout) {
  try {
    const last = JSON.parse(stdout.toString().trim().split('\n').pop());
    return last.type === 'summary' ? last : null;
  } catch {
    return null;
  }
}

/** The objects under index/, grouped by snapshot id: { id: { suffix: bytes } }. */
function indexObjects() {
  const out = {};
  const root = join(store, 'index');
  if (!existsSync(root)) return out;
  for (const name of readdirSync(root).sort()) {
    // Snapshot ids contain dots (…T180459.538Z); the suffix starts at .db. or .manifest. etc.
    const m = /^(.*?Z)\.(.+)$/.exec(name);
    const [id, suffix] = m ? [m[1], m[2]] : [name, ''];
    (out[id] ??= {})[suffix] = lstatSync(join(root, name)).size;
  }
  return out;
}

const results = { meta: {}, tree, steps: {}, sizes: {}, lookups: {} };
const loadStart = loadavg();
const startTime = new Date();
keepOnFailure(dir);

// vaultik records the data's ancestor directories (the work directory, /tmp) with their mtimes,
// so an entry created or removed in the work directory between the two backups would be a change
// to back up: the store, the state cache's directory, the scratch directory and time.txt are
// made before the first backup. A busy /tmp can still change between them: --dir on a quiet path
// avoids that.
rmSync(store, { recursive: true, force: true });
rmSync(stateDir, { recursive: true, force: true });
rmSync(scratch, { recursive: true, force: true });
mkdirSync(store);
mkdirSync(stateDir);
mkdirSync(scratch);
writeFileSync(timeFile, '');

log('vaultik backups');
const initial = timed('initial backup', ['backup', config, '--json']);
const afterInitial = storeSize(store);
const nochange = timed('no-change backup', ['backup', config, '--json']);
const afterNochange = storeSize(store);
results.steps.initial = { ...initial, stdout: undefined, summary: backupSummary(initial.stdout) };
results.steps.noChange = { ...nochange, stdout: undefined, summary: backupSummary(nochange.stdout) };

const snapshots = indexObjects();
const ids = Object.keys(snapshots).sort();
const cache = {};
for (const suffix of ['', '-wal', '-shm']) {
  if (existsSync(indexPath + suffix)) cache[`index.sqlite${suffix}`] = lstatSync(indexPath + suffix).size;
}
results.sizes = {
  storeAfterInitial: afterInitial,
  noChangeGrowth: { bytes: afterNochange.bytes - afterInitial.bytes, objects: afterNochange.objects - afterInitial.objects },
  indexObjects: snapshots,
  // The brief of the issue: the state cache is the config's index_path file plus its -wal.
  stateCache: { files: cache, bytes: (cache['index.sqlite'] ?? 0) + (cache['index.sqlite-wal'] ?? 0) },
};

// ---------------------------------------------------------------- one file, one directory
// A non-empty file in the middle of the tree (a fetch then needs its chunk list too), and a
// directory a third of the way in (another part of the tree, in case a format keeps pieces of
// what it has read).
const middle = leafDir(Math.floor(leaves / 2));
const oneName = readdirSync(middle).sort().find((n) => lstatSync(join(middle, n)).size > 0) ?? fileName(50);
const oneFile = join(middle, oneName);
const oneDir = leafDir(Math.floor(leaves / 3));
// Snapshot paths are the absolute source paths without the leading '/'.
const snapPath = (p) => Buffer.from(p.replace(/^\/+/, ''), 'utf8');

const imp = (rel) => import(pathToFileURL(join(dist, rel)).href);
const { openStorage } = await imp('storage/index.js');
const { listSnapshots, resolveSnapshotId, openSnapshot } = await imp('snapshot/index.js');
const { loadIdentities } = await imp('crypto/index.js');
const identities = await loadIdentities(key);

/**
 * What a lookup downloads: list the snapshots, open the latest with `under` (the formats that
 * shard their entries fetch only the shards that cover it; v1 ignores the option and fetches the
 * whole DB), then do what the command does with the reader. Counted apart: the listing, the
 * open, and the lookup itself (a lazy reader may fetch while it is used).
 */
async function lookup(under, use) {
  const storage = new CountingStorage(openStorage({ type: 'local', path: store, prefix: '' }));
  const phase = () => {
    const p = { bytes: storage.bytes, gets: storage.gets, byPrefix: storage.byPrefix, keys: storage.keys, lists: storage.lists, listed: storage.listed, stats: storage.stats };
    storage.reset();
    return p;
  };
  const start = process.hrtime.bigint();
  try {
    const listing = resolveSnapshotId(await listSnapshots(storage, 'index/'), 'latest');
    const list = phase();
    const reader = await openSnapshot(storage, listing, identities, scratch, { under });
    const open = phase();
    let found;
    try {
      found = await use(reader);
    } finally {
      await reader.close();
    }
    const used = phase();
    const wall = Number(process.hrtime.bigint() - start) / 1e9;
    const total = list.bytes + open.bytes + used.bytes;
    return { snapshot: listing.id, found, wall, total, totalGets: list.gets + open.gets + used.gets, list, open, use: used };
  } catch (err) {
    // A changed API must not lose the rest of the report.
    log(`  lookup failed: ${err.stack ?? err}`);
    return { error: String(err.message ?? err) };
  } finally {
    await storage.close();
  }
}

log('metadata downloaded (openSnapshot through a counting Storage)');
results.lookups.fetchApi = await lookup(snapPath(oneFile), async (reader) => {
  const e = await reader.entry(snapPath(oneFile));
  if (!e) throw new Error(`${oneFile} not in the snapshot`);
  // A fetch also needs the file's chunk list (empty files have none).
  const chunks = await reader.fileChunks(snapPath(oneFile));
  return `${e.type}, ${chunks.length} chunks`;
});
results.lookups.lsApi = await lookup(snapPath(oneDir), async (reader) => {
  let n = 0;
  for await (const e of reader.entries({ under: snapPath(oneDir) })) if (e) n++;
  return `${n} entries`;
});
for (const [name, r] of Object.entries(results.lookups)) {
  if (!r.error) log(`  ${name.padEnd(18)} ${fmtBytes(r.total)} in ${r.totalGets} gets (${r.found}), ${r.wall.toFixed(2)} s`);
}

log('vaultik fetch and ls');
const fetchTarget = join(dir, 'fetched');
rmSync(fetchTarget, { recursive: true, force: true });
mkdirSync(fetchTarget);
const fetchCli = timed('fetch one file', ['fetch', `file://${store}`, '', 'latest', oneFile, `${fetchTarget}/`]);
run('cmp', [oneFile, join(fetchTarget, oneName)]);
const lsCli = timed('ls one directory', ['ls', `file://${store}`, '', 'latest', oneDir]);
const lsLines = lsCli.stdout.toString().split('\n').filter((l) => l !== '').length;
results.lookups.fetchCli = { ...fetchCli, stdout: undefined };
results.lookups.lsCli = { ...lsCli, stdout: undefined, lines: lsLines };
rmSync(fetchTarget, { recursive: true, force: true });

const loadEnd = loadavg();
const version = vaultikVersion();
results.meta = { date: startTime.toISOString(), vaultik: version, ...host(), loadStart, loadEnd, dir, oneFile, oneDir };

// ---------------------------------------------------------------- report
const PROJECT = 10_000_000;
const scale = PROJECT / tree.entries;
const json = JSON.stringify(results, null, 2);
const markdown = (() => {
  const s = results.sizes;
  const out = [];
  out.push(`## million: vaultik ${version}, ${results.meta.date.slice(0, 10)}`);
  out.push('');
  out.push(hostLine(results.meta));
  out.push(`tree: ${tree.entries} entries (${tree.files} files, 9 in 10 empty, the rest 1-100 B; ${tree.dirs} directories)${built ? `, generated in ${genSeconds.toFixed(1)} s` : ', reused'}`);
  out.push('');
  out.push('| step | wall s | CPU s | peak RSS MiB |');
  out.push('| --- | ---: | ---: | ---: |');
  const step = (name, r) => out.push(`| ${name} | ${r.wall.toFixed(2)} | ${r.cpu.toFixed(2)} | ${Math.round(r.rssKiB / 1024)} |`);
  step('initial backup', initial);
  step('no-change backup', nochange);
  step(`\`vaultik fetch\` of one file`, fetchCli);
  step(`\`vaultik ls\` of one directory (${lsLines} lines)`, lsCli);
  out.push('');
  out.push(`| size | measured | per entry | linear projection to ${(PROJECT / 1e6).toFixed(0)} M entries |`);
  out.push('| --- | ---: | ---: | ---: |');
  const size = (name, bytes) => out.push(`| ${name} | ${fmtBytes(bytes)} | ${(bytes / tree.entries).toFixed(1)} B | ${fmtBytes(bytes * scale)} |`);
  size(`store after the initial backup (${s.storeAfterInitial.objects} objects)`, s.storeAfterInitial.bytes);
  size(`store growth of the no-change backup (${s.noChangeGrowth.objects} objects)`, s.noChangeGrowth.bytes);
  for (const id of ids) {
    const parts = Object.entries(snapshots[id]);
    const total = parts.reduce((a, [, b]) => a + b, 0);
    size(`index/ objects of ${id === ids[0] ? 'the initial' : 'the no-change'} snapshot (${parts.map(([k, b]) => `${k} ${fmtBytes(b)}`).join(', ')})`, total);
  }
  const cacheFiles = Object.entries(s.stateCache.files).map(([k, b]) => `${k} ${fmtBytes(b)}${k.endsWith('-shm') ? ', not counted' : ''}`);
  size(`state cache (${cacheFiles.join(', ')})`, s.stateCache.bytes);
  for (const [name, what] of [
    ['fetchApi', `metadata downloaded to look up one file`],
    ['lsApi', `metadata downloaded to list one directory`],
  ]) {
    const r = results.lookups[name];
    if (r.error) {
      out.push(`| ${what} | failed: ${r.error} | | |`);
      continue;
    }
    // Bytes by the key's first segment (index/, blobs/), over the three phases.
    const byPrefix = {};
    for (const phase of [r.list, r.open, r.use]) for (const [k, b] of Object.entries(phase.byPrefix)) byPrefix[k] = (byPrefix[k] ?? 0) + b;
    const by = Object.entries(byPrefix);
    size(`${what} (${r.found}; ${r.totalGets} get${r.totalGets === 1 ? '' : 's'}: ${by.map(([k, b]) => `${k}/ ${fmtBytes(b)}`).join(', ')}; ${r.wall.toFixed(2)} s in process)`, r.total);
  }
  out.push('');
  out.push(
    `The projection multiplies each size by ${scale.toFixed(2)} (${PROJECT} ÷ ${tree.entries} entries): it assumes every size grows linearly with the entries. ` +
      'That holds for a snapshot that is one whole DB (format v1); for sharded metadata it overstates what does not grow with the tree (a no-change backup that reuses its shards, a lookup that fetches a few shards).',
  );
  const bs = results.steps;
  if (bs.initial.summary?.metadataBytes !== undefined) {
    out.push(`vaultik's own summary: initial metadataBytes ${fmtBytes(bs.initial.summary.metadataBytes)}, entries ${bs.initial.summary.entries}; no-change metadataBytes ${fmtBytes(bs.noChange.summary?.metadataBytes)}.`);
  }
  return out.join('\n');
})();
finish(work, opts.json, markdown, json);
