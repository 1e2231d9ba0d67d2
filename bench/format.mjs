// Format benchmark: MB/s of the format core on 256 MiB of mixed data, next to the raw node:crypto
// primitives measured in the same run. Run with `npm run bench:format` (builds dist/ first).
// Not a test: it asserts nothing except that round trips are correct. See bench/README.md.
//
// Options (environment): BENCH_MB=<size in MiB, default 256>, BENCH_CHUNK=<average chunk size
// in bytes, default 10000000 = vaultik's default chunk_size>.
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createReadStream, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';

const MiB = 1 << 20;
const SIZE = Number(process.env.BENCH_MB ?? 256) * MiB;
const AVG = Number(process.env.BENCH_CHUNK ?? 10_000_000);

const { chunkBuffer, chunkStream, chunkerOptions } = await import('../dist/chunker/index.js');
const { compressFrame, decompressFrame, ChunkPool } = await import('../dist/compress/index.js');
// Written by another part of the project; absent or incompatible builds print "n/a".
const crypto = await import('../dist/crypto/index.js').catch((e) => ({ missing: e }));
const blob = await import('../dist/blob/index.js').catch((e) => ({ missing: e }));

/**
 * Peak RSS in MiB. Linux carries getrusage's maxRSS across exec, so a child spawned by a big
 * parent would report the parent's size; VmHWM in /proc is the high-water mark of this process
 * image alone. Elsewhere, maxRSS.
 */
function peakRssMiB() {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}

/**
 * `submit` over `items` with up to `window` results pending, yielded in input order: what the
 * backup engine's chunk window does between its readers and its packer.
 */
async function* inOrder(items, submit, window) {
  const pending = [];
  for await (const item of items) {
    const p = submit(item);
    p.catch(() => undefined); // surfaces when its turn comes
    pending.push(p);
    if (pending.length >= window) yield await pending.shift();
  }
  while (pending.length > 0) yield await pending.shift();
}

// ---- child mode: the whole backup pipeline from a file, in its own process so that its peak
// RSS is the pipeline's alone (the parent holds the 256 MiB input and every frame in memory).
if (process.argv[2] === '--pipeline') {
  const file = process.argv[3];
  const { recipient } = crypto.generateKeyPair();
  const recipients = [crypto.parseRecipient(recipient)];
  const pool = new ChunkPool();
  await pool.process(Buffer.alloc(1)); // start-up out of the timing
  const opts = chunkerOptions(AVG);
  const c0 = process.cpuUsage();
  const t = performance.now();
  const w = new blob.BlobWriter({ recipients });
  let plain = 0;
  const source = createReadStream(file, { highWaterMark: MiB });
  // As the backup engine handles a new large file: FastCDC in a worker (pool.cutStream), each
  // chunk handed on to pool.processBatched (hash and zstd in a worker), results taken in order.
  const cut = process.env.BENCH_MAIN_CHUNKER === '1' ? chunkStream(source, opts) : pool.cutStream(source, opts, { transfer: true });
  for await (const r of inOrder(cut, (c) => pool.processBatched(c, { transfer: true }), pool.capacity)) {
    plain += r.plainLength;
    w.addFrame(r.frame, r.plainLength);
  }
  const b = await w.finish();
  const ms = performance.now() - t;
  const c = process.cpuUsage(c0);
  await b.dispose();
  await pool.close();
  console.log(
    JSON.stringify({ plain, ms, cpu: (c.user + c.system) / 1000 / ms, rss: peakRssMiB(), stored: b.size, spooled: typeof b.body.open === 'function' }),
  );
  process.exit(0);
}

// ---- data: half pseudo-random, half text-like, both deterministic ----
function mixedData(size) {
  const buf = Buffer.allocUnsafe(size);
  const half = size >>> 1;
  const words = new Uint32Array(buf.buffer, buf.byteOffset, half >>> 2);
  let x = 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  const vocab = (
    'the of and to in is that for it as with was on be by this are from or at an have not ' +
    'backup snapshot chunk blob frame restore prune encrypt archive file directory config ' +
    'error warning info debug 2024-05-01T12:00:00Z /var/lib/vaultik/index.sqlite user root ' +
    'function return const let if else while import export default async await {}();='
  ).split(' ');
  let pos = half;
  let y = 12345;
  while (pos < size) {
    y = (Math.imul(y, 1103515245) + 12345) >>> 0;
    const w = vocab[(y >>> 8) % vocab.length];
    const sep = (y & 31) === 0 ? '\n' : (y & 63) === 1 ? `${y % 100000} ` : ' ';
    pos += buf.write(w + sep, pos, 'latin1');
  }
  return buf;
}

// ---- measurement helpers ----
const rows = [];
let lastCpu = null; // cpu ratio of the last best() run, the default for report()
function mbps(bytes, ms) {
  return bytes / 1e6 / (ms / 1000);
}
/** One result line; `cpu` is CPU time / wall time of the run (cores kept busy, all threads). */
function report(name, bytes, ms, note = '', cpu = lastCpu) {
  const rate = mbps(bytes, ms);
  rows.push({ name, rate, note });
  const c = cpu === null ? '     ' : `${cpu.toFixed(2)}x`;
  // Throughput per CPU-second: what one free core would do; stable on a shared machine.
  const perCpu = cpu ? `${(rate / cpu).toFixed(0)}` : '';
  console.log(`${name.padEnd(46)} ${rate.toFixed(0).padStart(6)} MB/s  cpu ${c.padStart(5)} ${perCpu.padStart(6)} MB/cpu-s  ${note}`);
  return rate;
}
function na(name, why) {
  rows.push({ name, rate: null, note: why });
  console.log(`${name.padEnd(46)} ${'n/a'.padStart(6)}                                ${why}`);
}
/** Best of `runs` timings (warm JIT, less noise). */
async function best(runs, fn) {
  let bestMs = Infinity;
  let cpu = 0;
  let out;
  for (let i = 0; i < runs; i++) {
    const c0 = process.cpuUsage();
    const t = performance.now();
    out = await fn();
    const ms = performance.now() - t;
    if (ms < bestMs) {
      const c = process.cpuUsage(c0);
      bestMs = ms;
      cpu = (c.user + c.system) / 1000 / ms;
    }
  }
  lastCpu = cpu;
  return { ms: bestMs, cpu, out };
}
function slices(buf, size) {
  const out = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

const started = performance.now();
console.log(
  `vaultik format bench: ${SIZE / MiB} MiB mixed data (half random, half text-like), ` +
    `avg chunk ${AVG} B, ${availableParallelism()} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}, ` +
    `load average ${loadavg()[0].toFixed(2)}\n` +
    'MB/s = plaintext bytes / wall time, best of 2-3 runs; cpu = CPU time / wall time of that run (all threads);\n' +
    'MB/cpu-s = plaintext bytes / CPU time (all threads): the cost, independent of other load on the machine\n',
);
const data = mixedData(SIZE);
const reads = slices(data, MiB); // what a file read loop hands the chunker

// ---- raw node:crypto ----
{
  const { ms } = await best(3, () => {
    const h = createHash('sha256');
    for (const r of reads) h.update(r);
    return h.digest();
  });
  report('node:crypto SHA-256', SIZE, ms);
}
{
  // As age's STREAM uses it: one cipher per 64 KiB segment, 16-byte tag each.
  const key = randomBytes(32);
  const nonce = Buffer.alloc(12);
  const segs = slices(data, 65536);
  const { ms } = await best(3, () => {
    for (let i = 0; i < segs.length; i++) {
      nonce.writeUInt32BE(i, 7);
      const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
      c.update(segs[i]);
      c.final();
      c.getAuthTag();
    }
  });
  report('node:crypto ChaCha20-Poly1305 (64 KiB segs)', SIZE, ms);
}

// ---- FastCDC ----
const opts = chunkerOptions(AVG);
let cuts;
{
  const { ms, out } = await best(3, () => chunkBuffer(data, opts));
  cuts = out;
  report(`FastCDC chunkBuffer (avg ${AVG})`, SIZE, ms, `${out.length} chunks`);
}
{
  const o = chunkerOptions(65536);
  const { ms, out } = await best(2, () => chunkBuffer(data, o));
  report('FastCDC chunkBuffer (avg 64 KiB)', SIZE, ms, `${out.length} chunks`);
}
{
  const { ms, out } = await best(2, async () => {
    let n = 0;
    for await (const c of chunkStream(reads, opts)) n += c.length > 0 ? 1 : 0;
    return n;
  });
  report('FastCDC chunkStream (1 MiB reads)', SIZE, ms, `${out} chunks`);
}
{
  // The same cut in a worker (what the backup engine does for large files): reads are copied to
  // the worker here (the bench keeps its input), chunks come back in their own buffers.
  const pool = new ChunkPool({ size: 1 });
  try {
    await pool.process(Buffer.alloc(1)); // start-up out of the timing
    const { ms, out, cpu } = await best(2, async () => {
      let n = 0;
      for await (const c of pool.cutStream(reads, opts)) n += c.length > 0 ? 1 : 0;
      return n;
    });
    report('FastCDC pool.cutStream (1 worker, 1 MiB reads)', SIZE, ms, `${out} chunks`, cpu);
  } finally {
    await pool.close();
  }
}
const chunks = [];
for (let pos = 0, i = 0; i < cuts.length; pos += cuts[i++]) chunks.push(data.subarray(pos, pos + cuts[i]));

// ---- SHA-256 per chunk, zstd (one thread) ----
{
  const { ms } = await best(2, () => chunks.map((c) => createHash('sha256').update(c).digest()));
  report('SHA-256 per chunk (main thread)', SIZE, ms);
}
let frames;
{
  const { ms, out } = await best(2, () => chunks.map((c) => compressFrame(c, 3)));
  frames = out;
  const packed = frames.reduce((s, f) => s + f.length, 0);
  report('zstd compress level 3 (1 thread)', SIZE, ms, `ratio ${(SIZE / packed).toFixed(2)}`);
  const textHalf = chunks.filter((_, i) => i >= chunks.length / 2 + 1);
  const rnd = chunks.filter((_, i) => i < chunks.length / 2 - 1);
  const sum = (a) => a.reduce((s, c) => s + c.length, 0);
  const t1 = await best(1, () => rnd.map((c) => compressFrame(c, 3)));
  const t2 = await best(1, () => textHalf.map((c) => compressFrame(c, 3)));
  report('  of which random chunks', sum(rnd), t1.ms);
  report('  of which text-like chunks', sum(textHalf), t2.ms);
}
{
  const { ms } = await best(2, () => frames.map((f, i) => decompressFrame(f, chunks[i].length)));
  report('zstd decompress (1 thread)', SIZE, ms);
}

// ---- worker pool: the calls the backup engine makes ----
{
  const pool = new ChunkPool();
  try {
    await pool.process(chunks[0]); // start-up out of the timing
    const { ms, cpu } = await best(2, async () => {
      let n = 0;
      for await (const r of inOrder(chunks, (c) => pool.process(c), pool.capacity)) n += r.plainLength;
      return n;
    });
    report('pool.process: hash+compress in workers', SIZE, ms, `${pool.size} workers`, cpu);
    // A changed file (hash-first): SHA-256 here, to look the chunk up; new chunks are compressed
    // in the workers. Here every chunk is new.
    const changed = await best(2, async () => {
      let n = 0;
      const compressNew = async (c) => {
        createHash('sha256').update(c).digest();
        return { plainLength: c.length, frame: await pool.compress(c) };
      };
      for await (const r of inOrder(chunks, compressNew, pool.capacity)) n += r.plainLength;
      return n;
    });
    report('hash here, pool.compress: changed file', SIZE, changed.ms, 'every chunk new', changed.cpu);
    // Small files: one chunk each, copied into batches of up to 1 MiB.
    const small = slices(data, 16 * 1024);
    const batched = await best(2, async () => {
      let n = 0;
      for await (const r of inOrder(small, (c) => pool.processBatched(c), 4096)) n += r.plainLength;
      return n;
    });
    report('pool.processBatched, 16 KiB chunks', SIZE, batched.ms, `${small.length} chunks`, batched.cpu);
  } finally {
    await pool.close();
  }
}

// ---- age and the blob writer (src/crypto, src/blob) ----
let recipients;
let identities;
if (crypto.missing) {
  na('age encrypt', 'dist/crypto not built');
  na('age decrypt', 'dist/crypto not built');
} else {
  try {
    const { identity, recipient } = crypto.generateKeyPair();
    recipients = [crypto.parseRecipient(recipient)];
    identities = [crypto.parseIdentity(identity)];
    let cipher;
    const enc = await best(2, () => {
      const e = new crypto.AgeEncryptor(recipients);
      const out = [];
      for (const r of reads) for (const b of e.update(r)) out.push(b);
      out.push(e.final());
      return out;
    });
    cipher = enc.out;
    report('age encrypt (AgeEncryptor, 1 MiB writes)', SIZE, enc.ms);
    const dec = await best(2, () => {
      const d = new crypto.AgeDecryptor(identities);
      const out = [];
      let pos = 0;
      let same = true;
      const check = () => {
        for (const b of out) {
          same &&= b.equals(data.subarray(pos, pos + b.length));
          pos += b.length;
        }
        out.length = 0;
      };
      for (const c of cipher) {
        d.update(c, out);
        check();
      }
      d.final(out);
      check();
      return same && pos === data.length;
    });
    if (!dec.out) throw new Error('age round trip mismatch');
    report('age decrypt (AgeDecryptor)', SIZE, dec.ms);
    cipher = undefined;
  } catch (e) {
    na('age encrypt/decrypt', `failed: ${e.message}`);
  }
}
if (blob.missing || !recipients) {
  na('blob writer', blob.missing ? 'dist/blob not built' : 'no age');
} else {
  try {
    const pack = await best(2, async () => {
      const w = new blob.BlobWriter({ recipients }); // default threshold: spools ciphertext to tmpdir
      for (let i = 0; i < frames.length; i++) w.addFrame(frames[i], chunks[i].length);
      const b = await w.finish();
      await b.dispose();
      return b;
    });
    report('blob writer, frames given (encrypt+hash)', SIZE, pack.ms, `plaintext ${pack.out.plaintextSize} B`, pack.cpu);
    // The whole pipeline, from a file, in a child process (see --pipeline above), twice.
    const file = join(tmpdir(), `vaultik-bench-${process.pid}.bin`);
    writeFileSync(file, data);
    try {
      let bestRun;
      for (let i = 0; i < 2; i++) {
        const out = execFileSync(process.execPath, [new URL(import.meta.url).pathname, '--pipeline', file], {
          env: process.env,
          encoding: 'utf8',
        });
        const run = JSON.parse(out.trim().split('\n').pop());
        if (run.plain !== SIZE) throw new Error(`pipeline saw ${run.plain} bytes`);
        if (!bestRun || run.ms < bestRun.ms) bestRun = run;
      }
      report(
        'whole: cutStream -> processBatched -> blob',
        SIZE,
        bestRun.ms,
        `stored ${bestRun.stored} B${bestRun.spooled ? ' (spooled)' : ''}, peak RSS ${bestRun.rss.toFixed(0)} MiB`,
        bestRun.cpu,
      );
    } finally {
      rmSync(file, { force: true });
    }
  } catch (e) {
    na('blob writer', `failed: ${e.message}`);
  }
}

const rss = peakRssMiB();
console.log(
  `\npeak RSS of this process ${rss.toFixed(0)} MiB (it holds the ${SIZE / MiB} MiB input, its frames and a ` +
    'whole age file for the single-stage rows; the pipeline row reports its own process); ' +
    `total ${((performance.now() - started) / 1000).toFixed(1)} s`,
);
