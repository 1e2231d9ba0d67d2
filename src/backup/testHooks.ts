/**
 * TEST-ONLY crash points and shard sizes for the hardening suite (test/hardening/crash.test.ts).
 *
 * Nothing here reads the environment, and the shipped entry point (src/cli/bin.ts) never turns a
 * hook on: a user cannot enable one by accident. The crash suite runs its own entry,
 * test/helpers/crash-entry.mjs, which calls installTestHooks() and then runs the CLI. Until
 * then `killPoint` is one comparison and `killableStorage` returns the storage unchanged.
 *
 * `killAt: '<point>[:<n>]'` makes the backup process SIGKILL itself the n-th time (default: the
 * first) the engine reaches `<point>`, so a test can crash a real run at an exact place that
 * timing alone hits only by luck. Points, in run order:
 *   scan          an entry came out of the walk
 *   chunk         a chunk was placed into a blob
 *   upload        mid-upload of a blob: half of its bytes were handed to the store
 *   blob-recorded a blob's upload completed and the cache recorded it
 *   blobs-done    after the last blob, before any metadata is written
 *   shard         mid-upload of a shard
 *   shards-done   the shards are written, the manifest not yet
 *   manifest      the manifest is written, the encrypted metadata not yet
 *   metadata      mid-upload of the encrypted metadata (half of its bytes handed over)
 *   cache-commit  the metadata is in the store, the state cache has not recorded the snapshot
 */
import { Readable } from 'node:stream';
import type { ShardLimits } from '../snapshot/shardCut.js';
import type { PutBody, PutOptions, StoreWriter } from '../storage/types.js';

export type KillPoint = 'scan' | 'chunk' | 'upload' | 'blob-recorded' | 'blobs-done' | 'shard' | 'shards-done' | 'manifest' | 'metadata' | 'cache-commit';

export interface TestHooks {
  /** `<point>[:<n>]`: SIGKILL at the n-th hit of `point`. */
  killAt?: string;
  /** Shards of at most this many entries, so that small test trees span several shards. */
  shardEntries?: number;
}

let wantedPoint: string | undefined;
let wantedNth = 0;
let shardEntries: number | undefined;
const hits = new Map<string, number>();

/** Turns the hooks on for this process. Test entry points only; the product never calls it. */
export function installTestHooks(hooks: TestHooks): void {
  [wantedPoint, wantedNth] = hooks.killAt ? [hooks.killAt.split(':')[0], Number(hooks.killAt.split(':')[1] ?? '1')] : [undefined, 0];
  const n = hooks.shardEntries;
  shardEntries = n !== undefined && Number.isSafeInteger(n) && n >= 1 ? n : undefined;
  hits.clear();
}

/** The shard limits a test installed (TestHooks.shardEntries), or undefined. */
export function testShardLimits(): ShardLimits | undefined {
  if (shardEntries === undefined) return undefined;
  return { boundaryBits: 30, minEntries: 1, maxEntries: shardEntries, maxBytes: 2 ** 50 };
}

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
