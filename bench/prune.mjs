// Prune benchmark: time and peak RSS of `prune` (plan + execute) and of keyless `verify` on a
// local store of many blobs. Builds nothing: run `npx tsc -p tsconfig.build.json` (or
// `npm run build`) first, then `node bench/prune.mjs`. Not a test: it asserts nothing.
//
// The store: BENCH_BLOBS blobs (default 20,000) of BENCH_BLOB_SIZE bytes (default 4 KiB), named
// by their SHA-256 like real blobs, written straight into the directory layout and aged 3 days;
// BENCH_SNAPSHOTS snapshots (default 10, real encrypted metadata and manifests), snapshot i
// referencing the window of blobs [i·step, i·step + BENCH_PER_SNAPSHOT) so consecutive snapshots
// overlap. The first half of the snapshots is then forgotten, so about half the blobs are garbage.
// Each measured operation runs in a fresh child process, so its peak RSS is its own.
//
// BENCH_S3=1 runs the same against s3rver (started from test/helpers/s3rver-launcher.mjs; blobs
// uploaded with PutObject, 32 at once). S3 timestamps cannot be set, so prune runs with its
// clock 3 days ahead instead of aged objects. Default then 10,000 blobs.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/', import.meta.url);
const load = (p) => import(new URL(p, dist).href);

const S3 = process.env.BENCH_S3 === '1';
const BLOBS = Number(process.env.BENCH_BLOBS ?? (S3 ? 10_000 : 20_000));
const BLOB_SIZE = Number(process.env.BENCH_BLOB_SIZE ?? 4096);
const SNAPSHOTS = Number(process.env.BENCH_SNAPSHOTS ?? 10);
const PER_SNAPSHOT = Number(process.env.BENCH_PER_SNAPSHOT ?? Math.ceil(BLOBS / 4));
const INDEX = 'index/';

/** The store: s3rver when BENCH_SPEC holds an S3 spec, else the local directory. */
async function openBenchStore(dir) {
  if (process.env.BENCH_SPEC) {
    const { openStorage } = await load('storage/index.js');
    return openStorage(JSON.parse(process.env.BENCH_SPEC), { concurrency: 32 });
  }
  const { LocalStorage } = await load('storage/local.js');
  return new LocalStorage({ path: join(dir, 'store'), prefix: '' });
}

async function child(mode, dir, secret) {
  const { parseIdentity } = await load('crypto/index.js');
  const storage = await openBenchStore(dir);
  const tmp = join(dir, 'tmp');
  const now = process.env.BENCH_SPEC ? () => new Date(Date.now() + 3 * 86_400_000) : undefined;
  const t0 = performance.now();
  let out;
  if (mode === 'prune' || mode === 'prune-dry') {
    const { planPrune, executePrune } = await load('prune/index.js');
    const options = { indexPrefix: INDEX, identities: [parseIdentity(secret)], tmpDir: tmp, now };
    const plan = await planPrune(storage, options);
    const planned = performance.now();
    out = {
      snapshots: plan.snapshots.length,
      referenced: plan.referenced.count,
      toDelete: plan.deleteBlobs.length,
      deleteBytes: plan.deleteBlobBytes,
      planSeconds: (planned - t0) / 1000,
    };
    if (mode === 'prune') {
      const result = await executePrune(storage, plan, options);
      out.deleted = result.deletedBlobs;
      out.executeSeconds = (performance.now() - planned) / 1000;
    }
  } else if (mode === 'baseline') {
    // The same modules loaded, nothing run: what a process costs before prune does any work.
    await load('prune/index.js');
    await load('verify/index.js');
    out = {};
  } else {
    const { verifyStore } = await load('verify/index.js');
    const report = await verifyStore(storage, { indexPrefix: INDEX });
    out = { blobs: report.blobs.count, hashedMiB: report.hashed.bytes / 2 ** 20, problems: report.problems.length };
  }
  await storage.close();
  out.seconds = (performance.now() - t0) / 1000;
  out.maxRssMiB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify(out) + '\n');
}

async function setup(dir) {
  const { generateKeyPair, parseRecipient } = await load('crypto/index.js');
  const { SnapshotWriter, makeSnapshotId, publishSnapshot } = await load('snapshot/index.js');
  const { planForget, executeForget } = await load('prune/index.js');
  const root = join(dir, 'store');
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp, { recursive: true });
  const keys = generateKeyPair();
  const recipients = [parseRecipient(keys.recipient)];
  const old = new Date(Date.now() - 3 * 86_400_000);
  const hashes = [];
  const t0 = performance.now();
  const storage = await openBenchStore(dir);
  let batch = [];
  for (let i = 0; i < BLOBS; i++) {
    const bytes = randomBytes(BLOB_SIZE);
    const h = createHash('sha256').update(bytes).digest('hex');
    hashes.push(h);
    if (S3) {
      batch.push(storage.put(`blobs/${h.slice(0, 2)}/${h.slice(2, 4)}/${h}`, bytes));
      if (batch.length >= 64) await Promise.all(batch.splice(0));
      continue;
    }
    // Straight into the layout (no fsync per object): setup is not what is measured.
    const d = join(root, 'blobs', h.slice(0, 2), h.slice(2, 4));
    mkdirSync(d, { recursive: true });
    const p = join(d, h);
    writeFileSync(p, bytes);
    utimesSync(p, old, old);
  }
  await Promise.all(batch);
  const step = Math.max(1, Math.floor((BLOBS - PER_SNAPSHOT) / Math.max(1, SNAPSHOTS - 1)));
  for (let s = 0; s < SNAPSHOTS; s++) {
    const id = makeSnapshotId('bench', new Date(Date.UTC(2026, 0, 1) + s * 86_400_000));
    const w = new SnapshotWriter(join(tmp, `${id}.db`));
    w.addEntry({ path: Buffer.from('d'), type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: 0n, size: 0 });
    const window = hashes.slice(s * step, s * step + PER_SNAPSHOT);
    // One chunk per blob; one file per 100 blobs.
    for (let f = 0; f * 100 < window.length; f++) {
      const part = window.slice(f * 100, f * 100 + 100);
      const ids = part.map((h) => createHash('sha256').update(h).digest());
      w.addEntry({ path: Buffer.from(`d/f${f}`), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: part.length * 100 }, ids);
      part.forEach((h, i) => {
        w.addChunk({ id: ids[i], blob: h, offset: 0, length: 50, plainLength: 100 });
        w.addBlob(h, BLOB_SIZE);
      });
    }
    w.finish({ id, startTime: new Date(), endTime: new Date(), toolVersion: 'bench', sourceDirs: ['/d'], excludes: [], chunkSize: 100, blobSizeLimit: BLOB_SIZE, compressionLevel: 3 });
    await publishSnapshot(storage, { indexPrefix: INDEX, dbPath: join(tmp, `${id}.db`), recipients });
    rmSync(join(tmp, `${id}.db`), { force: true });
  }
  await executeForget(storage, await planForget(storage, { indexPrefix: INDEX, policy: { last: Math.ceil(SNAPSHOTS / 2) } }));
  await storage.close();
  return { secret: keys.identity, setupSeconds: (performance.now() - t0) / 1000 };
}

function measure(mode, dir, secret) {
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', mode, dir], {
    env: { ...process.env, BENCH_SECRET: secret },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`${mode} failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

/** Starts s3rver in a child process; resolves to its S3 spec and a stop function. */
async function startS3rver(dir) {
  const launcher = fileURLToPath(new URL('../test/helpers/s3rver-launcher.mjs', import.meta.url));
  const data = join(dir, 's3rver');
  mkdirSync(data, { recursive: true });
  const proc = spawn(process.execPath, [launcher, data, 'bench'], {
    env: { ...process.env, NODE_OPTIONS: '--openssl-legacy-provider' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const port = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]).port);
    });
    proc.once('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
  });
  const spec = {
    type: 's3', bucket: 'bench', prefix: '', endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1',
    accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true,
  };
  return { spec, stop: () => new Promise((r) => { proc.once('exit', r); proc.kill('SIGTERM'); }) };
}

if (process.argv[2] === '--child') {
  await child(process.argv[3], process.argv[4], process.env.BENCH_SECRET);
} else {
  const dir = mkdtempSync(join(tmpdir(), 'vaultik-bench-prune-'));
  const server = S3 ? await startS3rver(dir) : undefined;
  if (server) process.env.BENCH_SPEC = JSON.stringify(server.spec);
  try {
    const { secret, setupSeconds } = await setup(dir);
    console.log(`store: ${S3 ? 's3rver' : 'local directory'}, ${BLOBS} blobs of ${BLOB_SIZE} B, ${SNAPSHOTS} snapshots (${PER_SNAPSHOT} blobs each, overlapping), half forgotten; setup ${setupSeconds.toFixed(1)} s`);
    const base = measure('baseline', dir, secret);
    console.log(`baseline (modules loaded, nothing run): peak RSS ${base.maxRssMiB.toFixed(0)} MiB`);
    const verify = measure('verify', dir, secret);
    console.log(`verify (keyless, all blobs hashed): ${verify.seconds.toFixed(2)} s, peak RSS ${verify.maxRssMiB.toFixed(0)} MiB, ${verify.blobs} blobs, ${verify.problems} problems`);
    const dry = measure('prune-dry', dir, secret);
    console.log(`prune --dry-run: ${dry.seconds.toFixed(2)} s, peak RSS ${dry.maxRssMiB.toFixed(0)} MiB; ${dry.snapshots} snapshots read, ${dry.referenced} referenced, ${dry.toDelete} to delete`);
    const real = measure('prune', dir, secret);
    console.log(`prune: ${real.seconds.toFixed(2)} s (plan ${real.planSeconds.toFixed(2)} s, execute ${real.executeSeconds.toFixed(2)} s), peak RSS ${real.maxRssMiB.toFixed(0)} MiB; deleted ${real.deleted} blobs`);
    const again = measure('prune-dry', dir, secret);
    console.log(`prune again: ${again.toDelete} to delete`);
  } finally {
    await server?.stop();
    const t = performance.now();
    rmSync(dir, { recursive: true, force: true });
    console.log(`(cleanup ${((performance.now() - t) / 1000).toFixed(1)} s)`);
  }
}
