/**
 * TEST-ONLY crash points for the hardening suite (test/hardening/crash.test.ts).
 *
 * `VAULTIK_TEST_KILL_AT=<point>[:<n>]` makes the backup process SIGKILL itself the n-th time
 * (default: the first) the engine reaches `<point>`, so a test can crash a real run at an exact
 * place that timing alone hits only by luck. When the variable is unset — always, outside that
 * suite — `killPoint` is one comparison and `killableStorage` returns the storage unchanged.
 *
 * Points, in run order:
 *   scan          an entry came out of the walk
 *   chunk         a chunk was placed into a blob
 *   upload        mid-upload of a blob: half of its bytes were handed to the store
 *   blob-recorded a blob's upload completed and the cache recorded it
 *   blobs-done    after the last blob, before any metadata is written
 *   manifest      the manifest is written, the encrypted metadata not yet
 *   metadata      mid-upload of the encrypted metadata (half of its bytes handed over)
 *   cache-commit  the metadata is in the store, the state cache has not recorded the snapshot
 */
import { Readable } from 'node:stream';
import type { ShardLimits } from '../snapshot/shardCut.js';
import type { PutBody, PutOptions, StoreWriter } from '../storage/types.js';

/**
 * Test-only: shards of at most this many entries (VAULTIK_TEST_SHARD_ENTRIES=N), so that the
 * small trees of the CLI and crash tests span several shards.
 */
export const TEST_SHARD_ENV = 'VAULTIK_TEST_SHARD_ENTRIES';

/** The shard limits a test asked for through TEST_SHARD_ENV, or undefined. */
export function testShardLimits(): ShardLimits | undefined {
  const n = Number(process.env[TEST_SHARD_ENV]);
  if (!Number.isSafeInteger(n) || n < 1) return undefined;
  return { boundaryBits: 30, minEntries: 1, maxEntries: n, maxBytes: 2 ** 50 };
}

/** The environment variable naming the crash point (test-only). */
export const TEST_KILL_ENV = 'VAULTIK_TEST_KILL_AT';

export type KillPoint = 'scan' | 'chunk' | 'upload' | 'blob-recorded' | 'blobs-done' | 'shard' | 'shards-done' | 'manifest' | 'metadata' | 'cache-commit';

const spec = process.env[TEST_KILL_ENV];
const [wantedPoint, wantedNth] = spec ? [spec.split(':')[0], Number(spec.split(':')[1] ?? '1')] : [undefined, 0];
const hits = new Map<string, number>();

/** SIGKILLs this process when `point` is the configured crash point and its n-th hit. */
export function killPoint(point: KillPoint): void {
  if (wantedPoint !== point) return;
  const n = (hits.get(point) ?? 0) + 1;
  hits.set(point, n);
  if (n >= wantedNth) process.kill(process.pid, 'SIGKILL');
}

/** A body that yields its first half, then kills the process at `point`. */
function halfThenKill(body: PutBody, point: KillPoint): PutBody {
  const size = Buffer.isBuffer(body) ? body.length : body.size;
  const open = (): Readable => (Buffer.isBuffer(body) ? Readable.from([body]) : body.open());
  return {
    size,
    open: () => {
      let sent = 0;
      const src = open();
      return Readable.from(
        (async function* () {
          const half = Math.ceil(size / 2);
          for await (const chunk of src as AsyncIterable<Buffer>) {
            if (sent < half && sent + chunk.length >= half) {
              yield chunk.subarray(0, half - sent);
              // Let the half reach the store before dying.
              await new Promise((r) => setTimeout(r, 50));
              killPoint(point);
              yield chunk.subarray(half - sent);
            } else {
              yield chunk;
            }
            sent += chunk.length;
          }
        })(),
      );
    },
  };
}

/**
 * The storage, or (crash point 'upload' / 'shard' / 'metadata' set) one whose puts die half-way:
 * 'upload' in a data blob, 'shard' in a shard (the puts of a storage made with `shards`).
 */
export function killableStorage(storage: StoreWriter, shards = false): StoreWriter {
  if (wantedPoint !== 'upload' && wantedPoint !== 'shard' && wantedPoint !== 'metadata' && wantedPoint !== 'manifest') return storage;
  const point: KillPoint = wantedPoint;
  return new Proxy(storage, {
    get(target, prop, receiver) {
      if (prop === 'put') {
        return (key: string, body: PutBody, options?: PutOptions) => {
          const isBlob = key.startsWith('blobs/');
          const isMeta = key.endsWith('.db.zst.age');
          if (point === 'manifest' && key.endsWith('.manifest.json.zst')) {
            return target.put(key, body, options).then(() => killPoint(point));
          }
          if ((point === 'upload' && isBlob && !shards) || (point === 'shard' && isBlob && shards) || (point === 'metadata' && isMeta)) {
            return target.put(key, halfThenKill(body, point), options);
          }
          return target.put(key, body, options);
        };
      }
      const v = Reflect.get(target, prop, receiver) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
