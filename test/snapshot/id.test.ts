import { describe, expect, it } from 'vitest';
import { ExitCode, UsageError } from '../../src/errors.js';
import {
  closestSnapshotIds,
  compareSnapshots,
  listSnapshots,
  makeSnapshotId,
  judgeSnapshot,
  manifestKey,
  metadataKey,
  parseIndexName,
  parseSnapshotId,
  resolveSnapshotId,
  sanitizeHostname,
  scanIndex,
  signatureKey,
  tryParseSnapshotId,
  type SnapshotListing,
} from '../../src/snapshot/index.js';
import { MemoryStorage } from './helpers.js';

describe('snapshot ids', () => {
  it('formats <host>-YYYYMMDDTHHMMSS.mmmZ in UTC', () => {
    expect(makeSnapshotId('web1', new Date('2026-11-27T03:15:00.123Z'))).toBe('web1-20261127T031500.123Z');
    expect(makeSnapshotId('h', new Date('2026-01-02T00:00:00Z'))).toBe('h-20260102T000000.000Z');
    expect(makeSnapshotId('old', new Date('0099-12-31T23:59:59.999Z'))).toBe('old-00991231T235959.999Z');
  });

  it('parses from the right, so hostnames may contain "-"', () => {
    for (const host of ['web1', 'db-eu-1', 'a', 'x-', 'host.example.com', 'my_box', 'a-20261127T031500.123Z']) {
      const time = new Date('2026-11-27T03:15:00.123Z');
      const id = makeSnapshotId(host, time);
      expect(parseSnapshotId(id)).toEqual({ host, time });
    }
  });

  it('rejects malformed ids and impossible dates', () => {
    for (const bad of [
      '',
      'web1',
      '-20261127T031500.123Z',
      'web1-20261127T031500Z',
      'web1-20261127T031500.12Z',
      'web1_20261127T031500.123Z',
      'web1-20261327T031500.123Z',
      'web1-20260230T031500.123Z',
      'web1-20261127T246000.000Z',
      'we/b-20261127T031500.123Z',
      '.web-20261127T031500.123Z',
      'web1-20261127t031500.123z',
    ]) {
      expect(tryParseSnapshotId(bad), bad).toBeUndefined();
      expect(() => parseSnapshotId(bad)).toThrow(UsageError);
    }
    expect(() => makeSnapshotId('bad host', new Date())).toThrow(/invalid host name/);
    expect(() => makeSnapshotId('h', new Date(NaN))).toThrow(/invalid snapshot time/);
  });

  it('sanitizes any hostname into a valid host part', () => {
    expect(sanitizeHostname('Web1.Example.COM')).toBe('web1.example.com');
    expect(sanitizeHostname('my host/ü')).toBe('my-host--');
    expect(sanitizeHostname('--x')).toBe('x');
    expect(sanitizeHostname('')).toBe('host');
    expect(sanitizeHostname('x'.repeat(300))).toHaveLength(128);
    for (const h of ['Web1.Example.COM', 'my host/ü', '...', '']) expect(() => makeSnapshotId(sanitizeHostname(h), new Date())).not.toThrow();
  });

  it('sorts lexicographically in time order for one host', () => {
    const times = ['2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.001Z', '2026-01-01T00:00:01.000Z', '2026-10-01T00:00:00Z', '2027-01-01T00:00:00Z'];
    const ids = times.map((t) => makeSnapshotId('db-1', new Date(t)));
    expect([...ids].reverse().sort()).toEqual(ids);
  });

  it('derives object keys named by content hash, and parses them back', () => {
    const id = 'web1-20261127T031500.123Z';
    const h = 'ab'.repeat(32);
    expect(metadataKey('index/', id, h)).toBe(`index/${id}.${h}.db.zst.age`);
    expect(manifestKey('index/', id, h)).toBe(`index/${id}.${h}.manifest.json.zst`);
    expect(signatureKey('index/', id, h)).toBe(`index/${id}.${h}.sig`);
    expect(() => metadataKey('index/', '../x', h)).toThrow(UsageError);
    expect(() => metadataKey('index/', id, 'AB'.repeat(32))).toThrow(UsageError);
    expect(parseIndexName(`${id}.${h}.db.zst.age`)).toEqual({ kind: 'root', id, sha256: h });
    expect(parseIndexName(`${id}.${h}.manifest.json.zst`)).toEqual({ kind: 'manifest', id, sha256: h });
    expect(parseIndexName(`${id}.${h}.sig`)).toEqual({ kind: 'signature', id, sha256: h });
    // The name layout of vaultik 0.2.0 (no hash), short hashes, a bad id: not index objects.
    for (const name of [`${id}.db.zst.age`, `${id}.${h.slice(1)}.db.zst.age`, `x.${h}.db.zst.age`, `${id}${h}.db.zst.age`, `${id}.${h}.txt`]) {
      expect(parseIndexName(name)).toBeUndefined();
    }
  });
});

const H = (n: number): string => n.toString(16).padStart(64, '0');

function listing(id: string, storeTime?: Date): SnapshotListing {
  const { host, time } = parseSnapshotId(id);
  const root = { key: `index/${id}.${H(1)}.db.zst.age`, sha256: H(1), size: 1, lastModified: storeTime ?? time };
  const s: SnapshotListing = {
    id,
    host,
    time,
    root,
    otherRoots: [],
    manifests: [],
    signatures: [],
    storeTime: root.lastModified,
    suspect: [],
    metadataSize: 1,
    metadataModified: root.lastModified,
    hasManifest: true,
  };
  s.suspect = judgeSnapshot(s);
  return s;
}

describe('listing and resolving snapshots (keyless)', () => {
  it('lists snapshots from object names, sorted by time then host', async () => {
    const s = new MemoryStorage();
    const put = (k: string): Promise<void> => s.put(k, Buffer.from('x'.repeat(k.length)));
    const a = 'web-1-20261127T031500.123Z';
    const b = 'db-20261127T031500.123Z';
    const c = 'web-1-20261126T000000.000Z';
    await put(metadataKey('index/', a, H(1)));
    await put(manifestKey('index/', a, H(2)));
    await put(metadataKey('index/', b, H(3)));
    await put(metadataKey('index/', c, H(4)));
    await put(manifestKey('index/', c, H(5)));
    await put(manifestKey('index/', 'orphan-20261127T000000.000Z', H(6)));
    await put(signatureKey('index/', 'orphan-20261127T000000.000Z', H(7)));
    await put('index/README');
    await put(`index/${a}.db.zst.age`);
    await put(`index/sub/web-20261127T031500.123Z.${H(8)}.db.zst.age`);
    await put('blobs/aa/bb/xyz');
    const scan = await scanIndex(s, 'index/');
    expect(scan.snapshots.map((x) => [x.id, x.hasManifest, x.metadataSize, x.root.sha256])).toEqual([
      [c, true, metadataKey('index/', c, H(4)).length, H(4)],
      [b, false, metadataKey('index/', b, H(3)).length, H(3)],
      [a, true, metadataKey('index/', a, H(1)).length, H(1)],
    ]);
    expect(scan.snapshots[2]!.manifests.map((m) => m.sha256)).toEqual([H(2)]);
    expect(scan.orphanManifests.map((o) => o.key)).toEqual([manifestKey('index/', 'orphan-20261127T000000.000Z', H(6))]);
    expect(scan.orphanSignatures.map((o) => o.key)).toEqual([signatureKey('index/', 'orphan-20261127T000000.000Z', H(7))]);
    expect(scan.unknownKeys).toEqual(['index/README', `index/sub/web-20261127T031500.123Z.${H(8)}.db.zst.age`, `index/${a}.db.zst.age`]);
    expect((await listSnapshots(s, 'index/')).map((x) => x.host)).toEqual(['web-1', 'db', 'web-1']);
    expect(s.calls.filter((x) => x.startsWith('get'))).toEqual([]);
  });

  it('judges a snapshot by its id time against the store time, and by how many roots and manifests it has', () => {
    const id = 'web-20261127T031500.000Z';
    const t = parseSnapshotId(id).time.getTime();
    const at = (ms: number): Date => new Date(t + ms);
    const min = 60_000;
    expect(listing(id, at(0)).suspect).toEqual([]);
    expect(listing(id, at(-14 * min)).suspect).toEqual([]); // clocks 14 min apart
    expect(listing(id, at(-16 * min)).suspect).toEqual(['id time is 16 min after the store recorded it']);
    expect(listing(id, at(-30 * 86_400_000)).suspect).toEqual(['id time is 30 d after the store recorded it']);
    expect(listing(id, at(6 * 86_400_000)).suspect).toEqual([]); // a six-day first backup
    expect(listing(id, at(7 * 86_400_000 + 16 * min)).suspect).toEqual(['stored 7 d after its id time, longer than a backup run (7 d)']);
    expect(judgeSnapshot({ ...listing(id), storeTime: at(-20 * min) }, { toleranceMs: 30 * min, maxRunMs: 0 })).toEqual([]);
    const two = { ...listing(id), otherRoots: [listing(id).root], manifests: [listing(id).root, listing(id).root] };
    expect(judgeSnapshot(two)).toEqual(['2 root objects share its id', '2 manifests share its id']);
  });

  it('two roots under one id: both listed, the earlier-stored one first, and the snapshot suspect', async () => {
    const s = new MemoryStorage();
    const id = 'web-20261127T031500.123Z';
    await s.put(metadataKey('index/', id, H(9)), Buffer.from('first'));
    await s.put(metadataKey('index/', id, H(1)), Buffer.from('second'));
    const [only] = await listSnapshots(s, 'index/');
    expect(only!.otherRoots).toHaveLength(1);
    expect(only!.suspect.some((r) => r.includes('2 root objects'))).toBe(true);
  });

  it('latest never resolves to a suspect snapshot; an explicit id still does', () => {
    const real = listing('web-20261127T031500.000Z');
    const future = listing('web-20271127T031500.000Z', real.time);
    expect(future.suspect).not.toEqual([]);
    const list = [real, future].sort(compareSnapshots);
    expect(resolveSnapshotId(list, 'latest').id).toBe(real.id);
    expect(resolveSnapshotId(list, 'latest', 'web').id).toBe(real.id);
    expect(resolveSnapshotId(list, future.id).id).toBe(future.id);
    expect(() => resolveSnapshotId([future], 'latest')).toThrow(/above suspicion/);
  });

  it('resolves latest (per host or overall) and exact ids', () => {
    const ids = ['web-1-20261127T031500.123Z', 'db-20261128T000000.000Z', 'web-1-20261126T000000.000Z', 'web-1-20261125T000000.000Z'];
    const list = ids.map((id) => listing(id)).sort(compareSnapshots);
    expect(resolveSnapshotId(list, 'latest').id).toBe('db-20261128T000000.000Z');
    expect(resolveSnapshotId(list, 'latest', 'web-1').id).toBe('web-1-20261127T031500.123Z');
    expect(resolveSnapshotId(list, 'web-1-20261126T000000.000Z').id).toBe('web-1-20261126T000000.000Z');
    expect(() => resolveSnapshotId([], 'latest')).toThrow(/no snapshots in this store/);
    expect(() => resolveSnapshotId(list, 'latest', 'nohost')).toThrow(/no snapshots of host 'nohost'/);
  });

  it('an unknown id is a usage error listing the closest ids', () => {
    const ids = ['web-1-20261127T031500.123Z', 'web-1-20261126T000000.000Z', 'db-20261128T000000.000Z', 'web-1-20251127T031500.123Z', 'mail-20200101T000000.000Z'];
    const list = ids.map((id) => listing(id));
    let err: unknown;
    try {
      resolveSnapshotId(list, 'web-1-20261127T031500.124Z');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as UsageError).exitCode).toBe(ExitCode.USAGE);
    expect((err as Error).message).toBe(
      "unknown snapshot 'web-1-20261127T031500.124Z'; closest: web-1-20261127T031500.123Z, web-1-20251127T031500.123Z, web-1-20261126T000000.000Z",
    );
    expect(closestSnapshotIds(list, 'db', 1)).toEqual(['db-20261128T000000.000Z']);
    expect(() => resolveSnapshotId([], 'x')).toThrow(/the store has no snapshots/);
  });
});
