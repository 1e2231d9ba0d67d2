/**
 * Runs the "Recovery with the standard tools" recipe of docs/FORMAT.md (snapshot metadata)
 * verbatim, with the real age, zstd and sqlite3 CLIs, against a real backup (`vaultik backup`,
 * local store) whose metadata has at least two shards and whose file lies in a later shard and
 * is spread over several blobs.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BOUNDARY_BITS, pathHash } from '../../src/snapshot/shardCut.js';
import { listSnapshots } from '../../src/snapshot/index.js';
import { openStorage } from '../../src/storage/index.js';
import { pseudoRandom } from '../helpers/tree.js';
import { makeTempDir } from '../helpers/tmp.js';
import { requireTool } from '../helpers/tools.js';
import { cliBackup, makeKey, writeKeyFile } from '../restore/helpers.js';

function recipe(): string {
  const text = readFileSync('docs/FORMAT.md', 'utf8');
  for (const m of text.matchAll(/```sh\n([\s\S]*?)```/g)) if (m[1]!.includes('root.db')) return m[1]!;
  throw new Error('no recovery recipe with root.db in docs/FORMAT.md');
}

/** A name in `dir` after `after` whose snapshot path ends a shard (src/snapshot/shardCut.ts). */
function boundaryName(dir: string, after: string): string {
  for (let k = 0; ; k++) {
    const name = `${after}-${k}`;
    if ((pathHash(Buffer.from(join(dir, name).slice(1))) & ((1 << BOUNDARY_BITS) - 1)) === 0) return name;
  }
}

/** Every path of a tree as the snapshot stores it: its ancestors, itself and everything under it. */
function snapshotPaths(dir: string): string[] {
  const parts = dir.slice(1).split('/');
  const out = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      out.push(p.slice(1));
      if (lstatSync(p).isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

describe('recovery with stock tools (docs recipe, verbatim)', () => {
  it('lists every path, shard by shard, and recovers a multi-blob file from a later shard', async () => {
    for (const t of ['age', 'zstd', 'sqlite3', 'sh']) requireTool(t);
    const tmp = makeTempDir('vaultik-recover-');
    try {
      const key = makeKey();
      const src = join(tmp.dir, 'data');
      mkdirSync(join(src, 'm'), { recursive: true });
      // 300 files and a boundary name before 'z big file.bin': it lies in a later shard.
      for (let i = 0; i < 300; i++) writeFileSync(join(src, 'm', `f${String(i).padStart(4, '0')}`), `small file ${i}\n`);
      writeFileSync(join(src, 'm', boundaryName(join(src, 'm'), 'g')), 'ends a shard\n');
      const big = pseudoRandom(1_500_000, 7);
      writeFileSync(join(src, 'z big file.bin'), big, { mode: 0o640 });
      writeFileSync(join(src, 'z empty'), '');
      const store = join(tmp.dir, 'store');
      mkdirSync(store); // vaultik never creates the store directory itself.
      const r = await cliBackup({ src, storeYaml: `local: {path: ${JSON.stringify(store)}, prefix: host1}`, recipient: key.recipient, work: tmp.dir, blobSizeLimit: '300KiB' });
      expect(r.code, r.stderr).toBe(0);
      const [snap] = await listSnapshots(openStorage({ type: 'local', path: store, prefix: 'host1/' }), 'index/');

      const work = join(tmp.dir, 'work');
      mkdirSync(work);
      writeKeyFile(key, join(work, 'key.txt'));
      const file = join(src, 'z big file.bin').slice(1);
      const out = execFileSync('sh', ['-e', '-c', recipe()], {
        cwd: work,
        env: { PATH: process.env.PATH, STORE: join(store, 'host1'), ID: snap!.id, FILE: file },
        maxBuffer: 1 << 26,
      })
        .toString()
        .split('\n');

      const sqlite = (db: string, q: string): string[] => execFileSync('sqlite3', [join(work, db), q], { encoding: 'utf8' }).trim().split('\n');
      // At least two shards, and the file is not in the first one.
      const shards = sqlite('root.db', 'SELECT lower(hex(blob)) FROM shards ORDER BY first_path');
      expect(shards.length).toBeGreaterThanOrEqual(2);
      expect(sqlite('shard.db', 'SELECT lower(hex(path)) FROM entries ORDER BY path LIMIT 1')[0]).not.toBe(Buffer.from(src.slice(1)).toString('hex'));
      expect(Number(sqlite('shard.db', `SELECT COUNT(DISTINCT c.blob) FROM file_chunks f JOIN chunks c ON c.id = f.chunk WHERE f.path = CAST('${file}' AS BLOB)`)[0])).toBeGreaterThanOrEqual(2);

      // Every path once, in path order, with its type, mode, owner and size.
      const listed = out.filter((l) => /^(file|dir|symlink)\|/.test(l)).map((l) => l.split('|').slice(5).join('|'));
      const paths = snapshotPaths(src);
      expect(listed).toEqual([...paths].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
      for (const name of ['z big file.bin', 'z empty']) {
        const st = lstatSync(join(src, name));
        expect(out).toContain(`file|${(st.mode & 0o7777).toString(8)}|${st.uid}|${st.gid}|${st.size}|${join(src, name).slice(1)}`);
      }
      expect(readFileSync(join(work, 'recovered')).equals(big)).toBe(true);
    } finally {
      tmp.cleanup();
    }
  });
});
