import { describe, expect, it } from 'vitest';
import { ExitCode, UsageError } from '../../src/errors.js';
import {
  closestSnapshotIds,
  compareSnapshots,
  listSnapshots,
  makeSnapshotId,
  manifestKey,
  metadataKey,
  parseSnapshotId,
  resolveSnapshotId,
  sanitizeHostname,
  scanIndex,
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

  it('derives object keys', () => {
    expect(metadataKey('index/', 'web1-20261127T031500.123Z')).toBe('index/web1-20261127T031500.123Z.db.zst.age');
    expect(manifestKey('index/', 'web1-20261127T031500.123Z')).toBe('index/web1-20261127T031500.123Z.manifest.json.zst');
    expect(() => metadataKey('index/', '../x')).toThrow(UsageError);
  });
});

function listing(id: string): SnapshotListing {
  const { host, time } = parseSnapshotId(id);
  return { id, host, time, metadataSize: 1, metadataModified: time, hasManifest: true };
}

describe('listing and resolving snapshots (keyless)', () => {
  it('lists snapshots from object names, sorted by time then host', async () => {
    const s = new MemoryStorage();
    const put = (k: string): Promise<void> => s.put(k, Buffer.from('x'.repeat(k.length)));
    const a = 'web-1-20261127T031500.123Z';
    const b = 'db-20261127T031500.123Z';
    const c = 'web-1-20261126T000000.000Z';
    await put(metadataKey('index/', a));
    await put(manifestKey('index/', a));
    await put(metadataKey('index/', b));
    await put(metadataKey('index/', c));
    await put(manifestKey('index/', c));
    await put(manifestKey('index/', 'orphan-20261127T000000.000Z'));
    await put('index/README');
    await put('index/sub/web-20261127T031500.123Z.db.zst.age');
    await put('blobs/aa/bb/xyz');
    const scan = await scanIndex(s, 'index/');
    expect(scan.snapshots.map((x) => [x.id, x.hasManifest, x.metadataSize])).toEqual([
      [c, true, metadataKey('index/', c).length],
      [b, false, metadataKey('index/', b).length],
      [a, true, metadataKey('index/', a).length],
    ]);
    expect(scan.orphanManifests).toEqual(['orphan-20261127T000000.000Z']);
    expect(scan.unknownKeys).toEqual(['index/README', 'index/sub/web-20261127T031500.123Z.db.zst.age']);
    expect((await listSnapshots(s, 'index/')).map((x) => x.host)).toEqual(['web-1', 'db', 'web-1']);
    expect(s.calls.filter((x) => x.startsWith('get'))).toEqual([]);
  });

  it('resolves latest (per host or overall) and exact ids', () => {
    const ids = ['web-1-20261127T031500.123Z', 'db-20261128T000000.000Z', 'web-1-20261126T000000.000Z', 'web-1-20261125T000000.000Z'];
    const list = ids.map(listing).sort(compareSnapshots);
    expect(resolveSnapshotId(list, 'latest').id).toBe('db-20261128T000000.000Z');
    expect(resolveSnapshotId(list, 'latest', 'web-1').id).toBe('web-1-20261127T031500.123Z');
    expect(resolveSnapshotId(list, 'web-1-20261126T000000.000Z').id).toBe('web-1-20261126T000000.000Z');
    expect(() => resolveSnapshotId([], 'latest')).toThrow(/no snapshots in this store/);
    expect(() => resolveSnapshotId(list, 'latest', 'nohost')).toThrow(/no snapshots of host 'nohost'/);
  });

  it('an unknown id is a usage error listing the closest ids', () => {
    const ids = ['web-1-20261127T031500.123Z', 'web-1-20261126T000000.000Z', 'db-20261128T000000.000Z', 'web-1-20251127T031500.123Z', 'mail-20200101T000000.000Z'];
    const list = ids.map(listing);
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
