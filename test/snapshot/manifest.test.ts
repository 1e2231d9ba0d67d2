import { describe, expect, it } from 'vitest';
import { compressFrame } from '../../src/compress/zstd.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { buildManifest, parseManifest } from '../../src/snapshot/index.js';
import { runTool } from '../helpers/tools.js';

const ID = 'web-eu-1-20261127T031500.123Z';
const h = (c: string): string => c.repeat(64);

const doc = (over: Record<string, unknown> = {}): Buffer =>
  compressFrame(
    Buffer.from(
      JSON.stringify({ version: 1, snapshot: ID, host: 'web-eu-1', time: '2026-11-27T03:15:00.123Z', blobs: [[h('a'), 10], [h('b'), 20]], ...over }),
    ),
  );

function dataError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(VaultikError);
    expect((e as VaultikError).exitCode).toBe(ExitCode.DATA);
    return (e as Error).message;
  }
  throw new Error('expected an error');
}

describe('manifest', () => {
  it('round-trips, sorted and deduplicated, with no paths or names', () => {
    const m = buildManifest(ID, [
      { hash: h('c'), size: 3 },
      { hash: h('a'), size: 1 },
      { hash: h('c'), size: 3 },
    ]);
    expect(parseManifest(m, ID)).toEqual({
      version: 1,
      snapshot: ID,
      host: 'web-eu-1',
      time: new Date('2026-11-27T03:15:00.123Z'),
      blobs: [
        { hash: h('a'), size: 1 },
        { hash: h('c'), size: 3 },
      ],
    });
    // Readable with the stock zstd CLI; exactly these keys.
    const json = JSON.parse(runTool('zstd', ['-d', '-c'], m).toString()) as Record<string, unknown>;
    expect(Object.keys(json).sort()).toEqual(['blobs', 'host', 'snapshot', 'time', 'version']);
    expect(json.blobs).toEqual([
      [h('a'), 1],
      [h('c'), 3],
    ]);
    expect(parseManifest(buildManifest(ID, []), ID).blobs).toEqual([]);
  });

  it('refuses to build from invalid input', () => {
    expect(() => buildManifest('nope', [])).toThrow(/malformed snapshot id/);
    expect(() => buildManifest(ID, [{ hash: 'ABC', size: 1 }])).toThrow(/invalid blob/);
    expect(() => buildManifest(ID, [{ hash: h('a'), size: 0 }])).toThrow(/invalid blob/);
    expect(() => buildManifest(ID, [{ hash: h('a'), size: 1 }, { hash: h('a'), size: 2 }])).toThrow(/two sizes/);
  });

  it.each([
    ['not zstd', Buffer.from('{"version":1}'), /not a zstd-compressed UTF-8 document/],
    ['not JSON', compressFrame(Buffer.from('{version')), /invalid JSON/],
    ['not UTF-8', compressFrame(Buffer.from([0x22, 0xff, 0x22])), /UTF-8/],
    ['an array', compressFrame(Buffer.from('[]')), /not a JSON object/],
    ['an extra key', doc({ paths: ['etc/passwd'] }), /unexpected keys \(blobs,host,paths,snapshot,time,version\)/],
    ['a missing key', compressFrame(Buffer.from(JSON.stringify({ version: 1, snapshot: ID, host: 'web-eu-1', blobs: [] }))), /unexpected keys/],
    ['version 2', doc({ version: 2 }), /unsupported version 2/],
    ['version "1"', doc({ version: '1' }), /unsupported version "1"/],
    ['a malformed id', doc({ snapshot: 'x' }), /malformed snapshot id "x"/],
    ['another snapshot', doc({ snapshot: 'web-eu-1-20261127T031500.124Z', time: '2026-11-27T03:15:00.124Z' }), /describes snapshot 'web-eu-1-20261127T031500.124Z'/],
    ['a host mismatch', doc({ host: 'web' }), /"host" "web" does not match/],
    ['a time mismatch', doc({ time: '2026-11-27T03:15:00Z' }), /"time" .* does not match/],
    ['blobs not an array', doc({ blobs: {} }), /"blobs" is not an array/],
    ['a blob not a pair', doc({ blobs: [[h('a')]] }), /blobs\[0\] is not a \[hash, size\] pair/],
    ['an uppercase hash', doc({ blobs: [[h('A'), 1]] }), /blobs\[0\] hash/],
    ['a short hash', doc({ blobs: [['abc', 1]] }), /blobs\[0\] hash/],
    ['a zero size', doc({ blobs: [[h('a'), 0]] }), /blobs\[0\] size/],
    ['a fractional size', doc({ blobs: [[h('a'), 1.5]] }), /blobs\[0\] size/],
    ['a string size', doc({ blobs: [[h('a'), '1']] }), /blobs\[0\] size/],
    ['unsorted blobs', doc({ blobs: [[h('b'), 1], [h('a'), 1]] }), /blobs\[1\] is out of order or duplicated/],
    ['duplicate blobs', doc({ blobs: [[h('a'), 1], [h('a'), 1]] }), /blobs\[1\] is out of order or duplicated/],
  ])('rejects %s', (_name, data, message) => {
    expect(dataError(() => parseManifest(data, ID))).toMatch(message);
  });

  it('refuses a frame that claims a huge size or hides it (zstd bomb guard)', () => {
    // A stream-compressed frame (zstd CLI reading a pipe) has no content size in its header.
    const streamed = runTool('zstd', ['-c', '-q'], Buffer.from(JSON.stringify({ version: 1 })));
    expect(dataError(() => parseManifest(streamed, ID))).toMatch(/content size/);
  });
});
