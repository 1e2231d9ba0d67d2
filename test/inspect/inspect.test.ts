/**
 * diff, find, stats and dump on snapshots made by the real backup engine (runBackup, shards cut
 * small so the tree spans many), checked against the trees themselves: each source tree is
 * recorded with plain lstat/readFile before it is backed up, and the expected answers are worked
 * out from those records. The commands run through the real CLI (dist/cli/bin.js), with and
 * without --json. One test counts the store's GETs: diff never downloads a shard both roots list.
 */
import { createHash } from 'node:crypto';
import { chmodSync, linkSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/index.js';
import { parseIdentity } from '../../src/crypto/index.js';
import { MetadataSource, diffSnapshots, type DiffEntry } from '../../src/inspect/index.js';
import { listSnapshots, readRoot, shardRefKey, shardsCovering, type ShardLimits, type SnapshotListing } from '../../src/snapshot/index.js';
import { openStorage } from '../../src/storage/index.js';
import { cleanEnv, ensureBuilt, runCli } from '../backup/cli.js';
import { makeWorkspace, storeObjects, type Workspace } from '../backup/helpers.js';
import { CountingStorage } from '../restore/helpers.js';

/** About one path in four ends a shard: a tree of ~70 entries spans ~15 shards. */
const LIMITS: ShardLimits = { boundaryBits: 2, minEntries: 1, maxEntries: 10_000, maxBytes: 2 ** 50 };

interface Node {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  mtimeNs: bigint;
  size: number;
  content?: string;
  target?: string;
  linked: boolean;
}
type Model = Map<string, Node>;

/** The tree under `root` (root included), as absolute paths, read with lstat alone. */
function record(root: string): Model {
  const out: Model = new Map();
  const visit = (p: string): void => {
    const st = lstatSync(p, { bigint: true });
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
    const node: Node = { type, mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs, size: type === 'file' ? Number(st.size) : 0, linked: type === 'file' && st.nlink > 1n };
    if (type === 'file') node.content = createHash('sha256').update(readFileSync(p)).digest('hex');
    if (type === 'symlink') node.target = readlinkSync(p);
    out.set(p, node);
    if (type === 'dir') for (const n of readdirSync(p)) visit(join(p, n));
  };
  visit(root);
  return out;
}

/** The diff the two records say to expect: path → status and changes. */
function expectedDiff(a: Model, b: Model): Map<string, string> {
  const out = new Map<string, string>();
  for (const [p, x] of a) {
    const y = b.get(p);
    if (!y) {
      out.set(p, 'removed');
      continue;
    }
    if (x.type !== y.type) {
      out.set(p, 'changed:type');
      continue;
    }
    const c: string[] = [];
    if (x.content !== y.content) c.push('content');
    if (x.size !== y.size) c.push('size');
    if (x.mode !== y.mode) c.push('mode');
    if (x.mtimeNs !== y.mtimeNs) c.push('mtime');
    if (x.target !== y.target) c.push('target');
    if (x.linked !== y.linked) c.push('link');
    if (c.length > 0) out.set(p, `changed:${c.join(',')}`);
  }
  for (const p of b.keys()) if (!a.has(p)) out.set(p, 'added');
  return out;
}

let ws: Workspace;
let keyFile: string;
let url: string;
let before: Model;
let after: Model;
let afterStore2: Map<string, number>;
let afterStore1: Map<string, number>;
const ids: string[] = [];
const EVIL = 'evil\x1b[2J\nname.txt';

async function backup(now?: () => Date): Promise<string> {
  const storage = openStorage(ws.config().storage);
  try {
    const summary = await runBackup(ws.config(), { storage, workers: 1, progressIntervalMs: 0, shardLimits: LIMITS, ...(now ? { now } : {}) });
    return summary.snapshotId;
  } finally {
    await storage.close();
  }
}

/** The CLI with the key. */
const vaultik = (args: string[], key = true) => runCli(args, cleanEnv(key ? { VAULTIK_PRIVATE_KEY: keyFile, TMPDIR: tmpdir() } : { TMPDIR: tmpdir() }));

beforeAll(async () => {
  ensureBuilt();
  ws = makeWorkspace();
  keyFile = join(ws.root, 'key.txt');
  writeFileSync(keyFile, `${ws.identity}\n`, { mode: 0o600 });
  url = `file://${ws.store}`;
  const s = ws.src;
  for (let d = 0; d < 8; d++) {
    mkdirSync(join(s, `d${d}`));
    for (let f = 0; f < 6; f++) writeFileSync(join(s, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`.repeat(d + f + 1));
  }
  writeFileSync(join(s, 'd0', 'same.bin'), 'the same bytes\n'.repeat(50));
  writeFileSync(join(s, 'd7', 'same.bin'), 'the same bytes\n'.repeat(50)); // one chunk, twice
  symlinkSync('d0/f0.txt', join(s, 'link'));
  linkSync(join(s, 'd1', 'f0.txt'), join(s, 'd6', 'hard'));
  before = record(s);
  ids.push(await backup());
  afterStore1 = storeObjects(ws.store);

  writeFileSync(join(s, 'd2', 'f1.txt'), 'changed content, another size\n'); // content and size
  writeFileSync(join(s, 'd3', 'f2.txt'), 'FILE 3/2\n'.repeat(6)); // content only (same size)
  writeFileSync(join(s, 'd4', 'new.txt'), 'a new file\n'); // added
  writeFileSync(join(s, 'd4', EVIL), 'hostile name\n'); // added, a name that must be escaped
  rmSync(join(s, 'd5', 'f3.txt')); // removed
  chmodSync(join(s, 'd1', 'f5.txt'), 0o600); // mode
  unlinkSync(join(s, 'link'));
  symlinkSync('d0/f1.txt', join(s, 'link')); // link target
  linkSync(join(s, 'd2', 'f0.txt'), join(s, 'd5', 'hard2')); // a new hard link: its first path joins a group
  after = record(s);
  ids.push(await backup());
  afterStore2 = storeObjects(ws.store);
}, 120_000);

afterAll(() => ws?.cleanup());

/** JSON Lines → objects. */
const lines = (out: string): Record<string, unknown>[] =>
  out
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** Paths under the source (its own entry included); its ancestors are entries too, and other tests touch /tmp. */
const inSrc = (p: string): boolean => p === ws.src || p.startsWith(`${ws.src}/`);

describe('diff', () => {
  it('reports exactly what changed in the tree, with sizes (--json)', async () => {
    const r = await vaultik(['diff', url, '', ids[0]!, ids[1]!, '--json']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = lines(r.stdout);
    const entries = out.filter((l) => l.type === 'entry');
    const got = new Map(entries.filter((e) => inSrc(e.path as string)).map((e) => [e.path as string, e.status === 'changed' ? `changed:${(e.changes as string[]).join(',')}` : (e.status as string)]));
    expect(got).toEqual(expectedDiff(before, after));
    // What the tree changes look like, spelled out (so the oracle itself is checked too).
    expect(got.get(join(ws.src, 'd2', 'f1.txt'))).toBe('changed:content,size,mtime');
    expect(got.get(join(ws.src, 'd3', 'f2.txt'))).toBe('changed:content,mtime');
    expect(got.get(join(ws.src, 'd1', 'f5.txt'))).toBe('changed:mode');
    expect(got.get(join(ws.src, 'link'))).toMatch(/^changed:(mtime,)?target$/);
    expect(got.get(join(ws.src, 'd2', 'f0.txt'))).toBe('changed:link');
    expect(got.get(join(ws.src, 'd4', EVIL))).toBe('added');
    expect(got.get(join(ws.src, 'd5', 'f3.txt'))).toBe('removed');
    // Entries outside the source are its ancestors, whose mtimes other tests may change.
    for (const e of entries.filter((x) => !inSrc(x.path as string))) {
      expect(ws.src.startsWith(`${e.path as string}/`)).toBe(true);
      expect(e.changes).toEqual(['mtime']);
    }
    const changed = entries.find((e) => e.path === join(ws.src, 'd2', 'f1.txt'))!;
    expect((changed.before as { size: number }).size).toBe(before.get(join(ws.src, 'd2', 'f1.txt'))!.size);
    expect((changed.after as { size: number }).size).toBe(after.get(join(ws.src, 'd2', 'f1.txt'))!.size);
    const added = entries.find((e) => e.path === join(ws.src, 'd4', 'new.txt'))!;
    expect(added).toMatchObject({ status: 'added', kind: 'file', size: 11 });
    const summary = out.at(-1)!;
    expect(summary.type).toBe('summary');
    const sizeOf = (m: Model, p: string): number => m.get(p)?.size ?? 0;
    const want = expectedDiff(before, after);
    const sum = (status: string, m: Model): number => [...want].filter(([, s]) => s === status).reduce((a, [p]) => a + sizeOf(m, p), 0);
    expect(summary.added).toEqual({ entries: [...want.values()].filter((s) => s === 'added').length, bytes: sum('added', after) });
    expect(summary.removed).toEqual({ entries: 1, bytes: sum('removed', before) });
    const shards = summary.shards as { before: number; after: number; shared: number; read: number };
    expect(shards.shared).toBeGreaterThan(0);
    expect(shards.read).toBeLessThan(shards.before + shards.after);
  });

  it('prints +, - and M lines with sizes, escapes control characters, and a summary', async () => {
    const r = await vaultik(['diff', url, '', ids[0]!, 'latest']);
    expect(r.code).toBe(0);
    const out = r.stdout.split('\n');
    expect(out).toContain(`M  ${join(ws.src, 'd2', 'f1.txt')}  (content, size ${before.get(join(ws.src, 'd2', 'f1.txt'))!.size} B → 30 B, mtime)`);
    expect(out).toContain(`+  ${join(ws.src, 'd4', 'new.txt')}  (file, 11 B)`);
    expect(out).toContain(`-  ${join(ws.src, 'd5', 'f3.txt')}  (file, ${before.get(join(ws.src, 'd5', 'f3.txt'))!.size} B)`);
    expect(out).toContain(`M  ${join(ws.src, 'd1', 'f5.txt')}  (mode 0644 → 0600)`);
    expect(out.some((l) => l.startsWith(`M  ${join(ws.src, 'link')}  (`) && l.endsWith('target d0/f0.txt → d0/f1.txt)'))).toBe(true);
    expect(out).toContain(`+  ${join(ws.src, 'd4', 'evil\\x1b[2J\\x0aname.txt')}  (file, 13 B)`);
    expect(r.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f]/); // eslint-disable-line no-control-regex
    expect(out.at(-2)).toMatch(/^added \d+ \(\d+ B\), removed 1 \(\d+ B\), changed \d+ \([+-]\d+ B\); size .* → .*; read \d+ of \d+ shards \(\d+ shared, skipped\)$/);
  });

  it('of a snapshot with itself is empty and reads no shard', async () => {
    const r = await vaultik(['diff', url, '', ids[1]!, ids[1]!, '--json']);
    expect(r.code).toBe(0);
    const out = lines(r.stdout);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatchObject({ type: 'summary', added: { entries: 0 }, removed: { entries: 0 }, changed: { entries: 0 } });
    expect((out[0]!.shards as { read: number }).read).toBe(0);
  });

  it('downloads only the shards one root lists and the other does not', async () => {
    const storage = new CountingStorage(openStorage({ type: 'local', path: ws.store, prefix: '' }));
    try {
      const list = await listSnapshots(storage, 'index/');
      const [a, b] = ids.map((id) => list.find((s) => s.id === id)!) as [SnapshotListing, SnapshotListing];
      const identities = [parseIdentity(ws.identity)];
      const [rootA, rootB] = [await readRoot(storage, a, identities, tmpdir()), await readRoot(storage, b, identities, tmpdir())];
      const keysA = new Set(rootA.shards.map(shardRefKey));
      const keysB = new Set(rootB.shards.map(shardRefKey));
      const differing = [...rootA.shards.filter((s) => !keysB.has(shardRefKey(s))), ...rootB.shards.filter((s) => !keysA.has(shardRefKey(s)))].map((s) => s.hash);
      const shared = rootA.shards.filter((s) => keysB.has(shardRefKey(s))).map((s) => s.hash);
      expect(shared.length).toBeGreaterThan(3);
      storage.gets.length = 0;
      const seen: DiffEntry[] = [];
      const source = new MetadataSource({ storage, identities, tmpDir: tmpdir() });
      const summary = await diffSnapshots(source, a, b, (d) => seen.push(d));
      const shardGets = storage.gets.filter((g) => g.key.startsWith('blobs/')).map((g) => g.key.slice(g.key.lastIndexOf('/') + 1));
      expect(shardGets.sort()).toEqual([...differing].sort());
      for (const h of shared) expect(shardGets).not.toContain(h);
      expect(storage.gets.filter((g) => !g.key.startsWith('blobs/'))).toHaveLength(2); // the two roots
      expect(source.shardsRead.sort()).toEqual([...differing].sort());
      expect(summary.shards).toEqual({ before: rootA.shards.length, after: rootB.shards.length, shared: shared.length, read: differing.length });
      expect(seen.length).toBeGreaterThan(5);
    } finally {
      await storage.close();
    }
  });

  it('refuses an unknown snapshot (exit 2) and needs the key (exit 2)', async () => {
    const r = await vaultik(['diff', url, '', ids[0]!, 'nope-20260101T000000.000Z']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown snapshot 'nope-20260101T000000\.000Z'/);
    const k = await vaultik(['diff', url, '', ids[0]!, ids[1]!], false);
    expect(k.code).toBe(2);
    expect(k.stderr).toMatch(/VAULTIK_PRIVATE_KEY/);
  });
});

describe('find', () => {
  const txt = (m: Model): string[] => [...m].filter(([p, n]) => n.type === 'file' && p.endsWith('.txt')).map(([p]) => p).sort();

  it('finds a name pattern in every snapshot, with sizes and times (--json)', async () => {
    const r = await vaultik(['find', url, '', '*.txt', '--json']);
    expect(r.code).toBe(0);
    const out = lines(r.stdout);
    const matches = out.filter((l) => l.type === 'match');
    const of = (id: string): string[] => matches.filter((m) => m.snapshot === id).map((m) => m.path as string);
    expect(of(ids[0]!)).toEqual(txt(before));
    expect(of(ids[1]!)).toEqual(txt(after));
    const one = matches.find((m) => m.snapshot === ids[1] && m.path === join(ws.src, 'd4', 'new.txt'))!;
    const node = after.get(join(ws.src, 'd4', 'new.txt'))!;
    expect(one).toMatchObject({ kind: 'file', size: node.size, mode: node.mode });
    expect(BigInt(Date.parse(one.mtime as string)) * 1_000_000n).toBe((node.mtimeNs / 1_000_000n) * 1_000_000n);
    expect(out.at(-1)).toMatchObject({ type: 'summary', matches: txt(before).length + txt(after).length, snapshots: 2, snapshotsWithMatches: 2 });
  });

  it('reads only the shards an anchored pattern can match, and each shared shard once', async () => {
    const all = await vaultik(['find', url, '', 'f1.txt', '--json']);
    const anchored = await vaultik(['find', url, '', `${ws.src}/d3/*`, '--json']);
    expect(anchored.code).toBe(0);
    const out = lines(anchored.stdout);
    const want = (m: Model): string[] => [...m.keys()].filter((p) => p.startsWith(`${ws.src}/d3/`)).sort();
    expect(out.filter((l) => l.type === 'match' && l.snapshot === ids[0]).map((l) => l.path)).toEqual(want(before));
    expect(out.filter((l) => l.type === 'match' && l.snapshot === ids[1]).map((l) => l.path)).toEqual(want(after));
    const sAll = lines(all.stdout).at(-1)!;
    const sAnchored = out.at(-1)!;
    // Every distinct shard once: fewer reads than the two roots list together.
    expect(sAll.shardsRead as number).toBeLessThan(sAll.shardsListed as number);
    expect(sAnchored.shardsRead as number).toBeLessThan(sAll.shardsRead as number);
    // At most the distinct shards whose range meets d3 in either root (where the cuts fall
    // depends on the random temp path, so the count is worked out, not fixed).
    const storage = openStorage(ws.config().storage);
    const covering = new Set<string>();
    try {
      for (const listing of await listSnapshots(storage, 'index/')) {
        const { shards } = await readRoot(storage, listing, [parseIdentity(ws.identity)], ws.root);
        for (const ref of shardsCovering(shards, Buffer.from(`${ws.src}/d3`.slice(1)))) covering.add(shardRefKey(ref)); // snapshot paths have no leading /
      }
    } finally {
      await storage.close();
    }
    expect(covering.size).toBeGreaterThan(0);
    expect(sAnchored.shardsRead as number).toBeLessThanOrEqual(covering.size);
  });

  it('prints a header per snapshot and ls -l lines, escaped; --snapshot picks one', async () => {
    const r = await vaultik(['find', url, '', 'evil*', '--snapshot', 'latest']);
    expect(r.code).toBe(0);
    const out = r.stdout.split('\n');
    expect(out[0]).toMatch(new RegExp(`^snapshot ${ids[1]!.replace(/\./g, '\\.')} \\(host testhost, \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC\\): 1 match$`));
    expect(out[1]).toMatch(new RegExp(`^  -rw-r--r-- +\\d+ +\\d+ +13 \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d ${join(ws.src, 'd4')}/evil\\\\x1b\\[2J\\\\x0aname\\.txt$`));
    expect(out).toHaveLength(3);
    // A name pattern can match anywhere: every shard of the snapshot is read.
    expect(r.stderr).toMatch(/^1 match in 1 of 1 snapshot \(read \d+ shards\)\n$/);
  });

  it('refuses a bad pattern and an unknown --snapshot (exit 2); no match is not an error', async () => {
    expect((await vaultik(['find', url, '', '!x'])).code).toBe(2);
    expect((await vaultik(['find', url, '', '*.txt', '--snapshot', 'h-20260101T000000.000Z'])).code).toBe(2);
    const none = await vaultik(['find', url, '', 'no-such-name']);
    expect(none.code).toBe(0);
    expect(none.stdout).toBe('');
    expect(none.stderr).toMatch(/^0 matches in 0 of 2 snapshots/);
  });
});

describe('stats', () => {
  const newBlobs = (a: Map<string, number>, b: Map<string, number>): number =>
    [...b].filter(([k]) => k.startsWith('blobs/') && !a.has(k)).reduce((s, [, n]) => s + n, 0);
  const blobBytes = (m: Map<string, number>): number => [...m].filter(([k]) => k.startsWith('blobs/')).reduce((s, [, n]) => s + n, 0);

  it('keyless: objects, stored bytes and what each snapshot added, from names and manifests', async () => {
    const r = await vaultik(['stats', url, '', '--json'], false);
    expect(r.code).toBe(0);
    const out = lines(r.stdout);
    const [s1, s2, summary] = out as [Record<string, unknown>, Record<string, unknown>, Record<string, unknown>];
    expect(s1).toMatchObject({ type: 'snapshot', id: ids[0], added: { bytes: blobBytes(afterStore1) } });
    expect(s2).toMatchObject({ type: 'snapshot', id: ids[1], added: { bytes: newBlobs(afterStore1, afterStore2) } });
    expect(s1.size).toBeUndefined(); // needs the key
    const blobCount = [...afterStore2.keys()].filter((k) => k.startsWith('blobs/')).length;
    expect(summary).toMatchObject({
      type: 'summary',
      snapshots: 2,
      blobObjects: { count: blobCount, bytes: blobBytes(afterStore2) },
      indexObjects: { count: 4 },
      referenced: { count: blobCount },
      unreferenced: { count: 0, bytes: 0 },
      missing: { count: 0 },
    });
    expect(summary.keyed).toBeUndefined();
    const human = await vaultik(['stats', url, ''], false);
    expect(human.stdout).toMatch(/^snapshots: +2$/m);
    expect(human.stdout).toMatch(/set VAULTIK_PRIVATE_KEY/);
  });

  it('with the key: logical sizes, unique data and the dedup ratio, checked against the trees', async () => {
    const r = await vaultik(['stats', url, '', '--json']);
    expect(r.code).toBe(0);
    const out = lines(r.stdout);
    // Logical size: the files' bytes, each hard-link group once.
    const logical = (m: Model): number => {
      const inodes = new Set<string>();
      let n = 0;
      for (const [p, node] of m) {
        if (node.type !== 'file') continue;
        const ino = String(lstatSync(p, { throwIfNoEntry: false })?.ino ?? p);
        if (node.linked && inodes.has(`${node.content}:${ino}`)) continue;
        inodes.add(`${node.content}:${ino}`);
        n += node.size;
      }
      return n;
    };
    // Every file here is smaller than a chunk: one chunk per distinct content.
    const distinct = new Map<string, number>();
    for (const m of [before, after]) for (const node of m.values()) if (node.type === 'file' && node.size > 0) distinct.set(node.content!, node.size);
    const unique = [...distinct.values()].reduce((a, b) => a + b, 0);
    const [s1, s2, summary] = out as [Record<string, unknown>, Record<string, unknown>, { keyed: Record<string, unknown> }];
    expect(s2.size).toBe(logical(after));
    expect((s1.size as number) + (s2.size as number)).toBe(summary.keyed.logicalBytes);
    expect(summary.keyed.uniqueChunks).toEqual({ count: distinct.size, bytes: unique });
    expect(summary.keyed.dedupRatio).toBeCloseTo(((s1.size as number) + (s2.size as number)) / unique, 6);
    expect(summary.keyed.dedupRatio as number).toBeGreaterThan(1.8);
    // The second snapshot's new plaintext: the contents the first did not hold.
    const firstContents = new Set([...before.values()].map((n) => n.content));
    const newer = new Map([...after.values()].filter((n) => n.type === 'file' && n.size > 0 && !firstContents.has(n.content)).map((n) => [n.content, n.size]));
    expect(s2.newChunks).toEqual({ count: newer.size, bytes: [...newer.values()].reduce((a, b) => a + b, 0) });
    const human = await vaultik(['stats', url, '']);
    expect(human.stdout).toMatch(/^dedup ratio: +\d+\.\d\d \(logical size ÷ unique data\)$/m);
    expect(human.stdout).toMatch(/^ID +TIME \(UTC\) +REFERENCED +ADDED +FILES +SIZE +NEW DATA$/m);
  });
});

describe('dump', () => {
  it('writes one file of a snapshot to stdout, the bytes of the tree', async () => {
    const p = join(ws.src, 'd2', 'f1.txt');
    const r = await vaultik(['dump', url, '', ids[0]!, p]);
    expect(r.code).toBe(0);
    expect(createHash('sha256').update(r.stdout).digest('hex')).toBe(before.get(p)!.content);
    const latest = await vaultik(['dump', url, '', 'latest', p, '--json']);
    expect(latest.stdout).toBe(readFileSync(p, 'utf8'));
    expect(lines(latest.stderr).at(-1)).toMatchObject({ type: 'summary', failed: 0 });
  });

  it('refuses a directory, a path the snapshot does not hold and an unknown snapshot (exit 2)', async () => {
    const dir = await vaultik(['dump', url, '', 'latest', join(ws.src, 'd2')]);
    expect(dir.code).toBe(2);
    expect(dir.stdout).toBe('');
    expect(dir.stderr).toMatch(/is a directory/);
    const missing = await vaultik(['dump', url, '', 'latest', join(ws.src, 'd5', 'f3.txt')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/is not in snapshot/);
    expect((await vaultik(['dump', url, '', 'nope-20260101T000000.000Z', join(ws.src, 'd2', 'f1.txt')])).code).toBe(2);
  });
});

// Last: it deletes an object from the store.
describe('a shard missing from the store', () => {
  it('find reports the snapshot it cannot read fully, searches the rest and exits 5; diff and stats say so', async () => {
    const storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
    let lost: string;
    try {
      const list = await listSnapshots(storage, 'index/');
      const identities = [parseIdentity(ws.identity)];
      const [a, b] = ids.map((id) => list.find((s) => s.id === id)!) as [SnapshotListing, SnapshotListing];
      const rootB = await readRoot(storage, b, identities, tmpdir());
      const inB = new Set(rootB.shards.map((s) => s.hash));
      // A shard only the first snapshot lists.
      lost = (await readRoot(storage, a, identities, tmpdir())).shards.find((s) => !inB.has(s.hash))!.hash;
      rmSync(join(ws.store, 'blobs', lost.slice(0, 2), lost.slice(2, 4), lost));
    } finally {
      await storage.close();
    }
    const r = await vaultik(['find', url, '', '*.txt', '--json']);
    expect(r.code).toBe(5);
    const out = lines(r.stdout);
    expect(out.find((l) => l.type === 'error')).toMatchObject({ snapshot: ids[0], message: expect.stringContaining(lost) as unknown });
    expect(out.filter((l) => l.type === 'match' && l.snapshot === ids[1]).map((l) => l.path)).toEqual(
      [...after].filter(([p, n]) => n.type === 'file' && p.endsWith('.txt')).map(([p]) => p).sort(),
    );
    expect(r.stderr).toMatch(new RegExp(`snapshot ${ids[0]!.replace(/\./g, '\\.')}: .*${lost}`));
    const d = await vaultik(['diff', url, '', ids[0]!, ids[1]!]);
    expect(d.code).toBe(5);
    expect(d.stderr).toMatch(new RegExp(`shard ${lost}.*not found`));
    const s = await vaultik(['stats', url, '', '--json'], false);
    expect(s.code).toBe(0);
    expect(lines(s.stdout).at(-1)).toMatchObject({ missing: { count: 1 } });
  });
});

describe('a suspect snapshot', () => {
  it('is searched by find and marked, in both outputs', async () => {
    // An id dated 3 hours after the store recorded it: suspect (src/snapshot/list.ts judgeSnapshot).
    const old = await backup(() => new Date(Date.now() + 3 * 3_600_000));
    const r = await vaultik(['find', url, '', 'new.txt', '--snapshot', old]);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/: 1 match {2}SUSPECT \(id time is \d+ (min|h) after the store recorded it\)$/);
    const j = await vaultik(['find', url, '', 'new.txt', '--snapshot', old, '--json']);
    const match = lines(j.stdout).find((l) => l.type === 'match')!;
    expect(match).toMatchObject({ snapshot: old, path: join(ws.src, 'd4', 'new.txt') });
    expect((match.suspect as string[])[0]).toMatch(/id time is \d+ (min|h) after the store recorded it/);
  });
});
