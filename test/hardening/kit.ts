/**
 * Shared kit of the hardening suite: a seeded PRNG (every test prints its seed; set
 * VAULTIK_HARDENING_SEED to replay one), a small mutable source tree, golden copies of what each
 * snapshot must contain, and the checks run after every crash or fault:
 *   - storeIsClean: every visible blob is whole (its name is the SHA-256 of its bytes), no temp
 *     object is visible as a key, every manifest's blobs exist;
 *   - restoreMatches: a snapshot restores byte for byte (in process, with the test's key).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync, linkSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { blobKey } from '../../src/blob/index.js';
import { parseIdentity } from '../../src/crypto/index.js';
import { runRestore } from '../../src/restore/index.js';
import { listSnapshots, readManifest } from '../../src/snapshot/index.js';
import type { Storage } from '../../src/storage/types.js';
import { compareTrees, pseudoRandom } from '../helpers/tree.js';

/** mulberry32: small, fast, deterministic. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The suite's seed: VAULTIK_HARDENING_SEED or a fixed default (CI is deterministic). */
export function suiteSeed(label: string, fallback: number): number {
  const env = process.env.VAULTIK_HARDENING_SEED;
  const seed = env !== undefined && env !== '' ? Number(env) : fallback;
  console.log(`[hardening] ${label}: seed ${seed} (replay with VAULTIK_HARDENING_SEED=${seed})`);
  return seed;
}

export const int = (rnd: () => number, n: number): number => Math.floor(rnd() * n);
export const pick = <T>(rnd: () => number, xs: readonly T[]): T => xs[int(rnd, xs.length)]!;

/** Initial tree: a few dirs, files from 0 B to ~600 KiB, a symlink, a hard link. */
export function seedTree(root: string, rnd: () => number): void {
  for (const d of ['a', 'a/b', 'c']) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, 'empty'), '');
  for (let i = 0; i < 10; i++) {
    const dir = pick(rnd, ['', 'a', 'a/b', 'c']);
    writeFileSync(join(root, dir, `f${i}.bin`), pseudoRandom(int(rnd, 600 * 1024), 1 + int(rnd, 1e9)));
  }
  symlinkSync('a/b', join(root, 'link'));
  writeFileSync(join(root, 'c', 'shared'), pseudoRandom(70 * 1024, 3));
  linkSync(join(root, 'c', 'shared'), join(root, 'a', 'shared-link'));
}

let mutation = 0;
/** Changes a few files: rewrite, append, add, delete. */
export function mutateTree(root: string, rnd: () => number): void {
  const files: string[] = [];
  const visit = (rel: string): void => {
    for (const e of readdirSync(join(root, rel), { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) visit(r);
      else if (e.isFile() && e.name.startsWith('f')) files.push(r);
    }
  };
  visit('');
  // Always some new data (so every crash point of a backup is reached), then random changes.
  writeFileSync(join(root, pick(rnd, ['', 'a', 'a/b', 'c']), `f-new${mutation++}.bin`), pseudoRandom(200 * 1024 + int(rnd, 400 * 1024), 1 + int(rnd, 1e9)));
  const n = int(rnd, 3);
  for (let i = 0; i < n; i++) {
    const op = int(rnd, 4);
    if (op === 0 || files.length < 4) {
      writeFileSync(join(root, pick(rnd, ['', 'a', 'a/b', 'c']), `f-new${mutation++}.bin`), pseudoRandom(int(rnd, 400 * 1024), 1 + int(rnd, 1e9)));
    } else if (op === 1) {
      const f = pick(rnd, files);
      if (existsSync(join(root, f))) unlinkSync(join(root, f));
    } else {
      const f = pick(rnd, files);
      if (existsSync(join(root, f))) writeFileSync(join(root, f), pseudoRandom(int(rnd, 300 * 1024), 1 + int(rnd, 1e9)), { flag: op === 2 ? 'a' : 'w' });
    }
  }
}

/** Copies `src` to `dest` with `cp -a` (modes, times, links kept): the golden image of a snapshot. */
export function goldenCopy(src: string, dest: string): void {
  rmSync(dest, { recursive: true, force: true });
  execFileSync('cp', ['-a', src, dest]);
}

/** The store's keys (visible through the Storage API). */
export async function keys(storage: Storage, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const o of storage.list(prefix)) out.push(o.key);
  return out;
}

async function readAll(storage: Storage, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of await storage.get(key)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

/**
 * Problems with the store (empty when clean): a visible key that is a temp name, a blob whose
 * bytes do not hash to its name (partial or damaged), a manifest naming a missing blob.
 */
export async function storeProblems(storage: Storage): Promise<string[]> {
  const problems: string[] = [];
  const all = await keys(storage);
  const set = new Set(all);
  for (const k of all) {
    if (/tmp|\.part|upload/i.test(k.split('/').at(-1)!)) problems.push(`temp-looking key visible: ${k}`);
    if (k.startsWith('blobs/')) {
      const h = createHash('sha256').update(await readAll(storage, k)).digest('hex');
      if (h !== k.split('/').at(-1)) problems.push(`blob ${k} holds bytes hashing to ${h} (partial object visible)`);
    }
  }
  for (const s of await listSnapshots(storage, 'index/')) {
    const m = s.manifests[0] ? await readManifest(storage, s.manifests[0], s.id) : undefined;
    if (!m) problems.push(`snapshot ${s.id} has no manifest`);
    for (const b of m?.blobs ?? []) if (!set.has(blobKey(b.hash))) problems.push(`snapshot ${s.id} references missing blob ${b.hash}`);
  }
  return problems;
}

/** Restores `snapshotId` into a fresh dir and compares it with `golden` (a copy of source dir `src`). */
export async function restoreDiffs(storage: Storage, identity: string, snapshotId: string, golden: string, src: string, scratch: string): Promise<string[]> {
  const target = join(scratch, `restore-${snapshotId}`);
  rmSync(target, { recursive: true, force: true });
  try {
    const summary = await runRestore({ storage, identities: [parseIdentity(identity)], snapshotId, target, tmpDir: scratch });
    if (summary.failed > 0) return [`restore of ${snapshotId}: ${summary.failed} failed`];
    return compareTrees(golden, join(target, src)).map((d) => `${snapshotId}: ${d}`);
  } finally {
    rmSync(target, { recursive: true, force: true });
  }
}
