#!/usr/bin/env node
// zstd-napi (the dependency, through src/compress/zstd.ts) against Node's built-in zlib zstd
// (Node >= 22.15), same process, alternating, on the frames vaultik writes: level 3 with a
// content checksum, one frame per chunk. Data: 64 MiB, half incompressible noise, half text-like
// words, in 1 MiB chunks (bench/format.mjs uses the same two kinds). Reported: MB/s of plaintext
// per CPU second of this single thread (wall in parentheses), best and worst of the repetitions.
// Usage: npm run build && node bench/zstd.mjs [reps=5]
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { timed } from './timed.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { compressFrame, decompressFrame } = await import(path.join(root, 'dist/compress/zstd.js'));
if (typeof zlib.zstdCompressSync !== 'function') throw new Error(`node ${process.version} has no built-in zstd`);
const REPS = Number(process.argv[2] ?? 5);
const MiB = 1 << 20;

function data() {
  const out = Buffer.alloc(64 * MiB);
  let x = 0x9e3779b9;
  for (let i = 0; i < 32 * MiB; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  const words = ['backup', 'the', 'snapshot', 'of', 'a', 'file', 'chunk', 'blob', 'store', 'and', 'restore', 'metadata'];
  let pos = 32 * MiB;
  for (let i = 0; pos < out.length; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    pos += out.write(`${words[(x >>> 0) % words.length]} `, pos);
  }
  return Array.from({ length: 64 }, (_, i) => out.subarray(i * MiB, (i + 1) * MiB));
}

const P = zlib.constants;
const builtin = {
  compress: (c) => zlib.zstdCompressSync(c, { params: { [P.ZSTD_c_compressionLevel]: 3, [P.ZSTD_c_checksumFlag]: 1 } }),
  decompress: (f) => zlib.zstdDecompressSync(f),
};
const napi = { compress: (c) => compressFrame(c, 3), decompress: (f) => decompressFrame(f) };

const chunks = data();
const results = { 'zstd-napi': { c: [], d: [] }, 'node:zlib zstd': { c: [], d: [] } };
const impls = { 'zstd-napi': napi, 'node:zlib zstd': builtin };
for (let r = 0; r < REPS; r++) {
  for (const name of r % 2 ? Object.keys(impls).reverse() : Object.keys(impls)) {
    const impl = impls[name];
    let frames;
    results[name].c.push(timed(() => (frames = chunks.map((c) => impl.compress(c)))));
    results[name].d.push(timed(() => frames.forEach((f, i) => { if (impl.decompress(f).length !== chunks[i].length) throw new Error('size'); })));
  }
}
const mb = 64 * MiB / 1e6;
const fmt = (xs) => {
  const rates = xs.map(([cpu, wall]) => [mb / cpu, mb / wall]).sort((a, b) => b[0] - a[0]);
  const [best, worst] = [rates[0], rates[rates.length - 1]];
  return `${best[0].toFixed(0)} (${best[1].toFixed(0)}) – ${worst[0].toFixed(0)} (${worst[1].toFixed(0)})`;
};
console.log(`node ${process.version}, 64 MiB in 1 MiB chunks, ${REPS} alternating reps, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log('| zstd | compress level 3 MB/cpu-s (wall), best – worst | decompress MB/cpu-s (wall) |');
console.log('| --- | --- | --- |');
for (const [name, r] of Object.entries(results)) console.log(`| ${name} | ${fmt(r.c)} | ${fmt(r.d)} |`);
