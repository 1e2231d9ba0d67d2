import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, statSync, unlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, afterEach } from 'vitest';
import { LocalStorage, TEMP_PREFIX } from '../../src/storage/local.js';
import { openStorage } from '../../src/storage/open.js';
import { makeTempDir } from '../helpers/tmp.js';
import { expectStorageError, readAll, storageConformance } from './conformance.js';

storageConformance(
  'local',
  async () => {
    const tmp = makeTempDir('vaultik-local-');
    return { storage: new LocalStorage({ path: tmp.dir, prefix: 'host1/' }), cleanup: async () => tmp.cleanup() };
  },
  { verifiesChecksum: true, exactKeyOrder: true, noOverwrite: true },
);

storageConformance(
  'local through openStorage (retry + limit)',
  async () => {
    const tmp = makeTempDir('vaultik-local-');
    return { storage: openStorage({ type: 'local', path: tmp.dir, prefix: '' }, { concurrency: 4 }), cleanup: async () => tmp.cleanup() };
  },
  { verifiesChecksum: true, exactKeyOrder: true, noOverwrite: true },
);

describe('local store specifics', () => {
  const cleanups: (() => void)[] = [];
  afterEach(() => cleanups.splice(0).forEach((c) => c()));
  const fresh = (): { dir: string; store: LocalStorage } => {
    const tmp = makeTempDir('vaultik-local-');
    cleanups.push(tmp.cleanup);
    return { dir: tmp.dir, store: new LocalStorage({ path: tmp.dir, prefix: 'p/' }) };
  };

  it('maps keys to files under path/prefix and leaves no temp file', async () => {
    const { dir, store } = fresh();
    await store.put('blobs/ab/cd/abcd', Buffer.from('hello'));
    expect(readdirSync(join(dir, 'p/blobs/ab/cd'))).toEqual(['abcd']);
    expect(store.description).toBe(`file://${dir}/p/`);
  });

  it('never lists a leftover temp file from a crashed put, nor reads one', async () => {
    const { dir, store } = fresh();
    await store.put('index/snap', Buffer.from('whole'));
    // What a crash between write and rename leaves behind:
    writeFileSync(join(dir, 'p/index', `${TEMP_PREFIX}deadbeef`), 'partial');
    mkdirSync(join(dir, 'p/blobs/00/11'), { recursive: true });
    writeFileSync(join(dir, 'p/blobs/00/11', `${TEMP_PREFIX}cafe`), 'partial');
    const keys: string[] = [];
    for await (const o of store.list('')) keys.push(o.key);
    expect(keys).toEqual(['index/snap']);
    await expectStorageError(store.put(`index/${TEMP_PREFIX}x`, Buffer.from('x')), 'permanent', /reserved/);
  });

  it('a failed stream put leaves neither the object nor a temp file', async () => {
    const { dir, store } = fresh();
    const { Readable } = await import('node:stream');
    const failing = {
      size: 10,
      open: () =>
        new Readable({
          read() {
            this.destroy(new Error('disk read error'));
          },
        }),
    };
    await expect(store.put('x/obj', failing)).rejects.toThrow(/disk read error/);
    expect(readdirSync(join(dir, 'p/x'))).toEqual([]);
  });

  it('links a body given by file instead of copying it; checks its size; the file may go afterwards', async () => {
    const { dir, store } = fresh();
    const src = join(dir, 'spool');
    const bytes = Buffer.from('ciphertext of a blob');
    writeFileSync(src, bytes, { mode: 0o600 });
    const body = { size: bytes.length, open: () => createReadStream(src), file: src };
    const sha256 = createHash('sha256').update(bytes).digest();
    await store.put('blobs/aa/bb/one', body, { sha256 });
    const obj = join(dir, 'p/blobs/aa/bb/one');
    expect(statSync(obj).ino).toBe(statSync(src).ino); // linked, not copied
    expect(statSync(obj).mode & 0o777).toBe(0o644 & ~process.umask());
    expect(readdirSync(join(dir, 'p/blobs/aa/bb'))).toEqual(['one']);
    unlinkSync(src); // what BlobWriter's dispose() does after the put
    expect(await readAll(await store.get('blobs/aa/bb/one'))).toEqual(bytes);
    // A file that does not hold `size` bytes is refused, and leaves nothing behind.
    writeFileSync(src, bytes);
    await expectStorageError(store.put('blobs/aa/bb/two', { ...body, size: bytes.length + 1 }, { sha256 }), 'permanent', /holds/);
    expect(readdirSync(join(dir, 'p/blobs/aa/bb'))).toEqual(['one']);
    // A missing file is an error, not an empty object.
    await expect(store.put('blobs/aa/bb/three', { ...body, file: join(dir, 'missing') }, { sha256 })).rejects.toThrow();
    expect(readdirSync(join(dir, 'p/blobs/aa/bb'))).toEqual(['one']);
  });

  it('a linked body never replaces an existing object, and leaves no temp file', async () => {
    const { dir, store } = fresh();
    const bytes = (s: string): Buffer => Buffer.from(s);
    const spool = (name: string, content: Buffer): { size: number; open: () => ReturnType<typeof createReadStream>; file: string } => {
      const file = join(dir, name);
      writeFileSync(file, content);
      return { size: content.length, open: () => createReadStream(file), file };
    };
    await store.put('blobs/aa/bb/k', spool('first', bytes('first writer')));
    const obj = join(dir, 'p/blobs/aa/bb/k');
    const inode = statSync(obj).ino;
    await store.put('blobs/aa/bb/k', spool('second', bytes('second writer!')));
    expect(statSync(obj).ino).toBe(inode);
    expect((await readAll(await store.get('blobs/aa/bb/k'))).toString()).toBe('first writer');
    expect(readdirSync(join(dir, 'p/blobs/aa/bb'))).toEqual(['k']);
  });

  it('a put where a directory has the key fails and replaces nothing', async () => {
    const { dir, store } = fresh();
    await store.put('d/inner', Buffer.from('x'));
    await expectStorageError(store.put('d', Buffer.from('y')), 'permanent', /used as a directory/);
    expect(readdirSync(join(dir, 'p'))).toEqual(['d']);
    expect(readdirSync(join(dir, 'p/d'))).toEqual(['inner']);
  });

  it('an empty or missing store lists nothing', async () => {
    const { store } = fresh();
    const keys: string[] = [];
    for await (const o of store.list('')) keys.push(o.key);
    expect(keys).toEqual([]);
  });

  it.skipIf(process.getuid?.() === 0)('classifies permission problems (skipped as root: root ignores file modes)', async () => {
    const { dir, store } = fresh();
    await store.put('ro/obj', Buffer.from('x'));
    chmodSync(join(dir, 'p/ro'), 0o500);
    try {
      await expectStorageError(store.put('ro/new', Buffer.from('y')), 'permission', /permission denied writing/);
    } finally {
      chmodSync(join(dir, 'p/ro'), 0o700);
    }
  });

  it('refuses a relative path', () => {
    expect(() => new LocalStorage({ path: 'relative/dir', prefix: '' })).toThrow(/absolute/);
  });

  it('reads what it wrote with a range, byte for byte', async () => {
    const { store } = fresh();
    const bytes = Buffer.from('0123456789');
    await store.put('r', bytes);
    expect((await readAll(await store.get('r', { offset: 3, length: 4 }))).toString()).toBe('3456');
  });
});
