/**
 * Runs the "Recovery with the standard tools" recipe of docs/FORMAT.md (snapshot metadata)
 * verbatim, with the real age, zstd and sqlite3 CLIs, against real blobs and metadata.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compressFrame } from '../../src/compress/zstd.js';
import { encrypt, generateKeyPair, parseRecipient } from '../../src/crypto/index.js';
import { SnapshotWriter, metadataKey, publishSnapshot, type ChunkLocation } from '../../src/snapshot/index.js';
import { makeTempDir } from '../helpers/tmp.js';
import { requireTool } from '../helpers/tools.js';
import { MemoryStorage, T0, entry } from './helpers.js';

function recipe(): string {
  const doc = ['docs/FORMAT.md'].filter((p) => existsSync(p)).map((p) => readFileSync(p, 'utf8'));
  for (const text of doc) {
    for (const m of text.matchAll(/```sh\n([\s\S]*?)```/g)) if (m[1]!.includes('snap.db')) return m[1]!;
  }
  throw new Error('no recovery recipe with snap.db in docs/FORMAT.md');
}

describe('recovery with stock tools (docs recipe, verbatim)', () => {
  it('lists every path and recovers a multi-chunk file spread over two blobs', async () => {
    for (const t of ['age', 'zstd', 'sqlite3', 'sh']) requireTool(t);
    const tmp = makeTempDir('vaultik-recover-');
    try {
      const keys = generateKeyPair();
      const recipients = [parseRecipient(keys.recipient)];
      const store = join(tmp.dir, 'store');
      const id = 'host-1-20261127T031500.123Z';
      // Three chunks of one file, packed out of order into two blobs.
      const chunks = [randomBytes(70_000), Buffer.from('middle chunk '.repeat(5000)), randomBytes(10)];
      const frames = chunks.map((c) => compressFrame(c));
      const packs: number[][] = [[2, 0], [1]];
      const locs = new Map<number, ChunkLocation>();
      const blobs: { hash: string; size: number }[] = [];
      for (const pack of packs) {
        let offset = 0;
        const plain: Buffer[] = [];
        const pending: [number, number][] = [];
        for (const i of pack) {
          pending.push([i, offset]);
          plain.push(frames[i]!);
          offset += frames[i]!.length;
        }
        const stored = encrypt(Buffer.concat(plain), recipients);
        const hash = createHash('sha256').update(stored).digest('hex');
        mkdirSync(join(store, 'blobs', hash.slice(0, 2), hash.slice(2, 4)), { recursive: true });
        writeFileSync(join(store, 'blobs', hash.slice(0, 2), hash.slice(2, 4), hash), stored);
        blobs.push({ hash, size: stored.length });
        for (const [i, off] of pending) {
          const cid = createHash('sha256').update(chunks[i]!).digest();
          locs.set(i, { id: cid, blob: hash, offset: off, length: frames[i]!.length, plainLength: chunks[i]!.length });
        }
      }
      const w = new SnapshotWriter(join(tmp.dir, 'snap-src.db'));
      const total = chunks.reduce((a, c) => a + c.length, 0);
      const paths = ['home', 'home/u', 'home/u/data', 'home/u/data/big file.bin', 'home/u/data/link', 'home/u/data/empty'];
      w.addEntry(entry('home', 'dir'));
      w.addEntry(entry('home/u', 'dir'));
      w.addEntry(entry('home/u/data', 'dir'));
      w.addEntry(entry('home/u/data/big file.bin', 'file', { size: total }), [0, 1, 2].map((i) => locs.get(i)!.id));
      w.addEntry(entry('home/u/data/link', 'symlink', { target: Buffer.from('big file.bin') }));
      w.addEntry(entry('home/u/data/empty', 'file'));
      for (const l of locs.values()) w.addChunk(l);
      for (const b of blobs) w.addBlob(b.hash, b.size);
      const f = w.finish({ id, startTime: T0, endTime: T0, toolVersion: 't', sourceDirs: ['/home/u/data'], excludes: [], chunkSize: 65536, blobSizeLimit: 1 << 30, compressionLevel: 3 });
      const storage = new MemoryStorage();
      await publishSnapshot(storage, { indexPrefix: 'index/', dbPath: f.dbPath, recipients });
      mkdirSync(join(store, 'index'));
      writeFileSync(join(store, metadataKey('index/', id)), storage.objects.get(metadataKey('index/', id))!.data);

      const work = join(tmp.dir, 'work');
      mkdirSync(work);
      writeFileSync(join(work, 'key.txt'), `${keys.identity}\n`, { mode: 0o600 });
      const out = execFileSync('sh', ['-e', '-c', recipe()], {
        cwd: work,
        env: { PATH: process.env.PATH, STORE: store, ID: id, FILE: 'home/u/data/big file.bin' },
        maxBuffer: 1 << 26,
      }).toString();
      for (const p of paths) expect(out.split('\n')).toContain(p);
      expect(out.split('\n')).toContain('symlink|777|1000|1000|0|home/u/data/link');
      expect(out.split('\n')).toContain(`file|644|1000|1000|${total}|home/u/data/big file.bin`);
      expect(readFileSync(join(work, 'recovered')).equals(Buffer.concat(chunks))).toBe(true);
    } finally {
      tmp.cleanup();
    }
  });
});
