#!/usr/bin/env node
// Raw single-thread limits of this machine, measured in the same run as bench/compare.sh so the
// ratios there can be read against them: read throughput of a tree (page cache as it is),
// SHA-256, zstd level 3 and ChaCha20-Poly1305 over a sample of the dataset's files.
//
//   node bench/limits.mjs <data_dir> [sample_MiB]      prints "name MB/s" lines
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { openSync, readSync, closeSync, readdirSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { Compressor } from 'zstd-napi';

const dir = process.argv[2];
const sampleBytes = Number(process.argv[3] ?? 256) * 1024 * 1024;
if (!dir) {
  console.error('usage: node bench/limits.mjs <data_dir> [sample_MiB]');
  process.exit(2);
}

// Read the whole tree with 1 MiB reads (what a backup must at least do), and keep a sample of
// its bytes (in file order, so small text, libraries and the large files all contribute).
const buf = Buffer.allocUnsafe(1 << 20);
const sample = Buffer.allocUnsafe(sampleBytes);
let sampled = 0;
let bytes = 0;
let files = 0;
const t0 = process.hrtime.bigint();
const walk = (d) => {
  for (const name of readdirSync(d).sort()) {
    const p = join(d, name);
    const st = lstatSync(p);
    if (st.isDirectory()) walk(p);
    else if (st.isFile()) {
      files++;
      const fd = openSync(p, 'r');
      let n;
      while ((n = readSync(fd, buf, 0, buf.length, null)) > 0) {
        bytes += n;
        // Every 8th MiB-read of a large file, every small file: a spread-out, mixed sample.
        if (sampled < sampleBytes && (n < buf.length || bytes % (8 << 20) < n)) {
          const k = Math.min(n, sampleBytes - sampled);
          buf.copy(sample, sampled, 0, k);
          sampled += k;
        }
      }
      closeSync(fd);
    }
  }
};
walk(dir);
const readS = Number(process.hrtime.bigint() - t0) / 1e9;
const data = sample.subarray(0, sampled);

function best(fn, runs = 3) {
  let min = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    fn();
    min = Math.min(min, Number(process.hrtime.bigint() - t) / 1e9);
  }
  return min;
}
const mbs = (n, s) => (n / 1e6 / s).toFixed(0);

console.log(`read ${mbs(bytes, readS)} (${files} files, ${(bytes / 1e6).toFixed(0)} MB in ${readS.toFixed(2)} s)`);
console.log(`sha256 ${mbs(data.length, best(() => createHash('sha256').update(data).digest()))}`);
const z = new Compressor();
z.setParameters({ compressionLevel: 3, contentSizeFlag: true, checksumFlag: true });
let zOut = 0;
// 1 MiB pieces: a realistic frame size that still amortizes the call.
const zs = best(() => {
  zOut = 0;
  for (let o = 0; o < data.length; o += 1 << 20) zOut += z.compress(data.subarray(o, o + (1 << 20))).length;
}, 2);
console.log(`zstd3 ${mbs(data.length, zs)} (ratio ${(data.length / zOut).toFixed(2)} on the sample)`);
const key = randomBytes(32);
// As age's STREAM does: one cipher per 64 KiB segment.
const cs = best(() => {
  const nonce = Buffer.alloc(12);
  for (let o = 0, i = 0; o < data.length; o += 65536, i++) {
    nonce.writeUInt32BE(i, 7);
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    c.update(data.subarray(o, o + 65536));
    c.final();
    c.getAuthTag();
  }
});
console.log(`chacha20poly1305 ${mbs(data.length, cs)}`);
