// What bench/million.mjs and bench/diff.mjs share: the generated tree of N entries (100 files per
// leaf directory, 100 leaf directories per top one) and a Storage wrapper that counts downloads.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { buildOnce, prng } from './kit.mjs';

const FILES_PER_DIR = 100;
const LEAVES_PER_TOP = 100;

/**
 * The tree of `entries` entries under work.data, built once per (entries, seed) and reused from a
 * kept work directory: two levels of directories, 100 leaf directories per top one and 100 files
 * per leaf, so the entries (files and directories, the root included) add up to at least
 * `entries`. 9 in 10 files are empty, the others 1-100 bytes (each different, so they are real
 * chunks). Plain writeFileSync in a loop: about 20-40 s for a million files on ext4.
 * Returns the layout (leafDir(d), fileName(k), leaves) and the tree's counts.
 */
export function millionTree(work, entries, seed) {
  const data = work.data;
  const leaves = Math.ceil((entries - 1) / (FILES_PER_DIR + 1 + 1 / LEAVES_PER_TOP));
  const tops = Math.ceil(leaves / LEAVES_PER_TOP);
  const leafDir = (d) => join(data, `a${String(Math.floor(d / LEAVES_PER_TOP)).padStart(4, '0')}`, `b${String(d % LEAVES_PER_TOP).padStart(2, '0')}`);
  const fileName = (k) => `f${String(k).padStart(2, '0')}`;
  const build = () => {
    const rand = prng(seed);
    for (let d = 0; d < leaves; d++) {
      const leaf = leafDir(d);
      mkdirSync(leaf, { recursive: true });
      for (let k = 0; k < FILES_PER_DIR; k++) {
        const body = rand() < 0.9 ? '' : `${d}/${k} `.repeat(20).slice(0, 1 + Math.floor(rand() * 100));
        writeFileSync(join(leaf, fileName(k)), body);
      }
    }
  };
  const { built, seconds } = buildOnce(work, { entries, seed, layout: 1 }, `building the tree in ${data}: ${entries} entries`, build);
  const tree = { files: leaves * FILES_PER_DIR, dirs: leaves + tops + 1, generatedSeconds: built ? seconds : null };
  tree.entries = tree.files + tree.dirs;
  return { leaves, leafDir, fileName, tree, built, genSeconds: seconds };
}

/** A Storage that passes every call through and counts what `get` bodies carry. */
export class CountingStorage {
  constructor(inner) {
    this.inner = inner;
    this.description = inner.description;
    this.reset();
  }
  reset() {
    this.gets = 0;
    this.bytes = 0;
    this.byPrefix = {};
    this.keys = [];
    this.lists = 0;
    this.listed = 0;
    this.stats = 0;
  }
  put(k, body, options) {
    return this.inner.put(k, body, options);
  }
  async get(k, range, options) {
    const body = await this.inner.get(k, range, options);
    this.gets++;
    this.keys.push(range ? `${k} [${range.offset}+${range.length}]` : k);
    const top = k.split('/')[0];
    const counter = new Transform({
      transform: (chunk, _enc, cb) => {
        this.bytes += chunk.length;
        this.byPrefix[top] = (this.byPrefix[top] ?? 0) + chunk.length;
        cb(null, chunk);
      },
    });
    // A failure of the body destroys `counter` with the error, so the reader still sees it; an
    // early stop of the reader only ends this pipeline.
    pipeline(body, counter).catch(() => {});
    return counter;
  }
  stat(k) {
    this.stats++;
    return this.inner.stat(k);
  }
  async *list(prefix) {
    this.lists++;
    for await (const o of this.inner.list(prefix)) {
      this.listed++;
      yield o;
    }
  }
  delete(keys) {
    return this.inner.delete(keys);
  }
  close() {
    return this.inner.close();
  }
}
