/**
 * An in-memory Storage for fast unit tests of code that uses a store (backup, restore, prune).
 * It passes the same conformance suite as the real backends (test/storage/memory.test.ts).
 *
 * API
 *   const store = new MemoryStorage();
 *   store.objects            Map<key, { bytes: Buffer; lastModified: Date }> (inspect or tamper)
 *   store.calls              every call as { op, key? } in order (prove a path only puts)
 *   store.failNext(op, err)  the next call of `op` throws `err` (one-shot)
 *   ...and the Storage verbs.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { checkKey, compareKeys } from '../../src/storage/keys.js';
import {
  StorageError,
  type ByteRange,
  type ObjectInfo,
  type PutBody,
  type PutOptions,
  type Storage,
} from '../../src/storage/types.js';

type Op = 'put' | 'get' | 'stat' | 'list' | 'delete';

export class MemoryStorage implements Storage {
  readonly description = 'memory://';
  readonly objects = new Map<string, { bytes: Buffer; lastModified: Date }>();
  readonly calls: { op: Op; key?: string }[] = [];
  private readonly failures = new Map<Op, Error>();

  failNext(op: Op, err: Error): void {
    this.failures.set(op, err);
  }

  private enter(op: Op, key?: string): void {
    this.calls.push({ op, key });
    const err = this.failures.get(op);
    if (err) {
      this.failures.delete(op);
      throw err;
    }
  }

  async put(key: string, body: PutBody, options?: PutOptions): Promise<void> {
    this.enter('put', key);
    checkKey(key);
    options?.signal?.throwIfAborted();
    let bytes: Buffer;
    if (Buffer.isBuffer(body)) {
      bytes = Buffer.from(body);
    } else {
      const chunks: Buffer[] = [];
      for await (const chunk of body.open()) chunks.push(chunk as Buffer);
      bytes = Buffer.concat(chunks);
      if (bytes.length !== body.size) {
        throw new StorageError(`cannot store memory://${key}: body has ${bytes.length} bytes, expected ${body.size}`, 'permanent', key);
      }
    }
    if (options?.sha256 && !createHash('sha256').update(bytes).digest().equals(options.sha256)) {
      throw new StorageError(`refusing to store memory://${key}: SHA-256 mismatch`, 'permanent', key);
    }
    this.objects.set(key, { bytes, lastModified: new Date() });
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    this.enter('get', key);
    checkKey(key);
    if (range?.length === 0) return Readable.from([], { objectMode: false });
    const obj = this.objects.get(key);
    if (!obj) throw new StorageError(`object memory://${key} does not exist`, 'not-found', key);
    if (range && range.offset + range.length > obj.bytes.length) {
      throw new StorageError(`range ${range.offset}+${range.length} reaches past the end of memory://${key}`, 'permanent', key);
    }
    const bytes = range ? obj.bytes.subarray(range.offset, range.offset + range.length) : obj.bytes;
    return Readable.from(bytes.length > 0 ? [bytes] : [], { objectMode: false });
  }

  async stat(key: string): Promise<ObjectInfo> {
    this.enter('stat', key);
    checkKey(key);
    const obj = this.objects.get(key);
    if (!obj) throw new StorageError(`object memory://${key} does not exist`, 'not-found', key);
    return { key, size: obj.bytes.length, lastModified: obj.lastModified };
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.enter('list', prefix);
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort(compareKeys);
    for (const key of keys) {
      const obj = this.objects.get(key);
      if (obj) yield { key, size: obj.bytes.length, lastModified: obj.lastModified };
    }
  }

  async delete(keys: string[]): Promise<void> {
    this.enter('delete', keys[0]);
    for (const key of keys) checkKey(key);
    for (const key of keys) this.objects.delete(key);
  }

  async close(): Promise<void> {
    // nothing held
  }
}
