/**
 * prune, forget and verify against real S3 servers (s3rver, and radosgw when installed), through
 * openStorage's retry and limit wrappers, behind the fault proxy:
 * - the full cycle (overlapping and disjoint snapshots, forget, prune, read back, deep verify);
 * - DeleteObjects failing transiently is retried; the wrong key deletes nothing;
 * - a backup in flight during prune, with real S3 timestamps: grace 0 breaks it, a grace longer
 *   than its age loses nothing;
 * - the multipart janitor: s3rver cannot list uploads (prune notes it and carries on); against a
 *   stub speaking ListMultipartUploads/AbortMultipartUpload, only uploads older than the grace
 *   are aborted.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { S3MultipartJanitor, executeForget, executePrune, planForget, planPrune, type PruneOptions } from '../../src/prune/index.js';
import { listSnapshots, readManifest } from '../../src/snapshot/index.js';
import { openStorage } from '../../src/storage/open.js';
import { S3Storage } from '../../src/storage/s3.js';
import type { Storage } from '../../src/storage/types.js';
import { verifyStore } from '../../src/verify/index.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultProxy.js';
import { s3Servers, type S3Server } from '../helpers/s3servers.js';
import { makeTempDir } from '../helpers/tmp.js';
import { DAY, INDEX, Source, allKeys, blobKeys, newKeys, readSnapshot, sampleFiles } from './kit.js';

const tmp = makeTempDir('vaultik-prune-s3-');
const keys = newKeys();
// S3 records every object now, and snapshots are judged by that time (a snapshot dated more
// than a backup run before its store time is suspect): the made-up times lie in the last days.
const T0 = Date.now() - 5 * DAY;
let n = 0;
afterAll(() => tmp.cleanup());

const later = (ms: number) => (): Date => new Date(Date.now() + ms);

async function referenced(storage: Storage): Promise<Set<string>> {
  const out = new Set<string>();
  for (const s of await listSnapshots(storage, INDEX)) {
    for (const object of s.manifests) for (const b of (await readManifest(storage, object, s.id))?.blobs ?? []) out.add(b.hash);
  }
  return out;
}

for (const kind of s3Servers()) {
  describe.skipIf(kind.missing)(`prune on S3 (${kind.name})${kind.label}`, () => {
    let server: S3Server;
    let proxy: FaultProxy;
    beforeAll(async () => {
      server = await kind.start();
      proxy = await startFaultProxy(server.endpoint);
    });
    afterAll(async () => {
      await proxy?.close();
      await server?.stop();
    });

    function newStore(): { storage: Storage; tmpDir: string; prefix: string } {
      const prefix = `p${++n}/`;
      const tmpDir = join(tmp.dir, `tmp-${n}`);
      mkdirSync(tmpDir, { recursive: true });
      const spec = { ...server.spec(prefix), endpoint: proxy.endpoint };
      return { storage: openStorage(spec, { retry: { baseDelayMs: 5, maxDelayMs: 20 } }), tmpDir, prefix };
    }

    it('forget, prune with retried deletes, and every remaining snapshot reads back byte for byte', async () => {
      const { storage, tmpDir, prefix } = newStore();
      const expected = new Map<string, Record<string, Buffer>>();
      const a = new Source(storage, keys, { host: 'a', tmpDir, chunkSize: 2048, blobLimit: 8192 });
      const b = new Source(storage, keys, { host: 'b', tmpDir, chunkSize: 2048, blobLimit: 8192 });
      const shared = sampleFiles(1, ['base'], 12_000);
      for (let d = 0; d < 4; d++) {
        const fa = { ...shared, [`d${d}`]: sampleFiles(10 + d, ['x'], 6000).x! };
        expected.set((await a.backup(new Date(T0 + d * DAY), fa)).id, fa);
      }
      const fb = sampleFiles(50, ['y'], 15_000);
      expected.set((await b.backup(new Date(T0 + DAY / 2), fb)).id, fb);

      const forget = await planForget(storage, { indexPrefix: INDEX, policy: { last: 2 } });
      expect(forget.remove.map((d) => d.snapshot.host)).toEqual(['a', 'a']);
      await executeForget(storage, forget);

      const opts: PruneOptions = { indexPrefix: INDEX, identities: [keys.identity], tmpDir, now: later(2 * DAY) };
      const plan = await planPrune(storage, opts);
      expect(plan.deleteBlobs.length).toBeGreaterThan(0);
      proxy.resetStats();
      const remove = proxy.addFault({ match: 'DeleteObjects', fault: { kind: 'error', status: 503, code: 'SlowDown' }, times: 1 });
      const result = await executePrune(storage, plan, opts);
      remove();
      expect(proxy.count('DeleteObjects')).toBeGreaterThanOrEqual(2); // the failed one, retried
      expect(result.deletedBlobs).toBe(plan.deleteBlobs.length);

      const left = new Set((await blobKeys(storage)).map((k) => k.split('/').pop()!));
      expect(left).toEqual(await referenced(storage));
      for (const d of forget.keep) {
        const got = await readSnapshot(storage, d.snapshot.id, [keys.identity], tmpDir);
        for (const [name, content] of Object.entries(expected.get(d.snapshot.id)!)) expect(got.get(name)!.equals(content)).toBe(true);
      }
      const report = await verifyStore(storage, { indexPrefix: INDEX, deep: { identities: [keys.identity], tmpDir } });
      expect(report.problems).toEqual([]);
      // s3rver cannot list multipart uploads: noted, not fatal (see the janitor tests).
      const raw = new S3Storage(server.spec(prefix));
      const withJanitor = await planPrune(storage, { ...opts, janitor: new S3MultipartJanitor(raw) });
      await raw.close();
      if (kind.listsUploads) expect(withJanitor.notes.join('\n')).not.toMatch(/incomplete multipart uploads were not checked/);
      else expect(withJanitor.notes.join('\n')).toMatch(/incomplete multipart uploads were not checked/);
      expect(withJanitor.warnings).toEqual([]);
    });

    it('with the wrong key deletes nothing', async () => {
      const { storage, tmpDir } = newStore();
      const src = new Source(storage, keys, { host: 'h', tmpDir, chunkSize: 1024, blobLimit: 4096 });
      const first = await src.backup(new Date(T0), sampleFiles(1, ['f'], 5000));
      src.resetDedup();
      await src.backup(new Date(T0 + DAY), sampleFiles(2, ['f'], 5000));
      await executeForget(storage, await planForget(storage, { indexPrefix: INDEX, ids: [first.id] }));
      const before = await allKeys(storage);
      proxy.resetStats();
      const err = await planPrune(storage, { indexPrefix: INDEX, identities: [newKeys().identity], tmpDir, now: later(2 * DAY) }).catch((e: unknown) => e);
      expect((err as VaultikError).exitCode).toBe(ExitCode.NO_IDENTITY);
      expect(proxy.count('DeleteObjects') + proxy.count('DeleteObject')).toBe(0);
      expect(await allKeys(storage)).toEqual(before);
    });

    it('a backup in flight: grace 0 breaks its snapshot, a grace longer than its age loses nothing', async () => {
      for (const graceMs of [0, 2000]) {
        const { storage, tmpDir } = newStore();
        const src = new Source(storage, keys, { host: 'h', tmpDir, chunkSize: 1024, blobLimit: 4096 });
        await src.backup(new Date(T0), sampleFiles(1, ['f'], 5000));
        await sleep(3000); // the first snapshot's objects are now older than 2 s
        const running = await src.backup(new Date(T0 + DAY), { ...sampleFiles(1, ['f'], 5000), g: sampleFiles(7, ['g'], 5000).g! }, { publish: false });
        const opts: PruneOptions = { indexPrefix: INDEX, identities: [keys.identity], tmpDir, graceMs };
        const result = await executePrune(storage, await planPrune(storage, opts), opts);
        await running.publish();
        if (graceMs === 0) {
          expect(result.deletedBlobs).toBe(running.uploaded.length);
          await expect(readSnapshot(storage, running.id, [keys.identity], tmpDir)).rejects.toThrow(/does not exist|not found/);
          expect((await verifyStore(storage, { indexPrefix: INDEX })).problems.map((p) => p.kind)).toContain('missing-blob');
        } else {
          expect(result.deletedBlobs).toBe(0);
          const got = await readSnapshot(storage, running.id, [keys.identity], tmpDir);
          expect(got.get('g')!.equals(sampleFiles(7, ['g'], 5000).g!)).toBe(true);
          expect((await verifyStore(storage, { indexPrefix: INDEX })).problems).toEqual([]);
        }
      }
    });

    it('verify catches a blob deleted on S3', async () => {
      const { storage, tmpDir } = newStore();
      const src = new Source(storage, keys, { host: 'h', tmpDir, chunkSize: 1024, blobLimit: 4096 });
      const run = await src.backup(new Date(T0), sampleFiles(3, ['f'], 9000));
      const victim = run.uploaded[1]!;
      await storage.delete([`blobs/${victim.slice(0, 2)}/${victim.slice(2, 4)}/${victim}`]);
      const report = await verifyStore(storage, { indexPrefix: INDEX });
      expect(report.problems).toEqual([{ kind: 'missing-blob', hash: victim, snapshots: [run.id] }]);
    });
  });
}

describe('multipart janitor (stub S3 server)', () => {
  let server: Server;
  let endpoint: string;
  const aborted: string[] = [];
  const now = Date.now();
  const uploads = [
    { key: 'pre/blobs/aa/bb/old', id: 'u-old', initiated: new Date(now - 3 * DAY) },
    { key: 'pre/blobs/cc/dd/young', id: 'u-young', initiated: new Date(now - 3600_000) },
    { key: 'pre/index/old2', id: 'u-old2', initiated: new Date(now - 2 * DAY) },
  ];

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'http://stub');
      if (req.method === 'GET' && url.searchParams.has('uploads')) {
        // Two pages, to exercise the markers.
        const page = url.searchParams.get('key-marker') ? uploads.slice(2) : uploads.slice(0, 2);
        const truncated = !url.searchParams.get('key-marker');
        const items = page
          .map((u) => `<Upload><Key>${u.key}</Key><UploadId>${u.id}</UploadId><Initiated>${u.initiated.toISOString()}</Initiated></Upload>`)
          .join('');
        res.writeHead(200, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>b</Bucket><Prefix>${url.searchParams.get('prefix') ?? ''}</Prefix>` +
            `<IsTruncated>${truncated}</IsTruncated>${truncated ? `<NextKeyMarker>${page[1]!.key}</NextKeyMarker><NextUploadIdMarker>${page[1]!.id}</NextUploadIdMarker>` : ''}${items}</ListMultipartUploadsResult>`,
        );
        return;
      }
      if (req.method === 'DELETE' && url.searchParams.has('uploadId')) {
        aborted.push(`${decodeURIComponent(url.pathname)} ${url.searchParams.get('uploadId')}`);
        res.writeHead(204).end();
        return;
      }
      res.writeHead(501, { 'content-type': 'application/xml' }).end('<Error><Code>NotImplemented</Code></Error>');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('lists every page under the prefix and aborts only uploads older than the grace', async () => {
    const raw = new S3Storage({ type: 's3', bucket: 'b', prefix: 'pre/', endpoint, region: 'us-east-1', accessKeyId: 'x', secretAccessKey: 'y' });
    const janitor = new S3MultipartJanitor(raw);
    const listed = [];
    for await (const u of janitor.listIncompleteUploads()) listed.push(u.key);
    expect(listed).toEqual(['blobs/aa/bb/old', 'blobs/cc/dd/young', 'index/old2']);

    // An empty local store stands in for the objects; the janitor is what is exercised.
    const tmpDir = join(tmp.dir, 'janitor');
    mkdirSync(tmpDir, { recursive: true });
    const { LocalStorage } = await import('../../src/storage/local.js');
    mkdirSync(join(tmp.dir, 'janitor-store'));
    const storage = new LocalStorage({ path: join(tmp.dir, 'janitor-store'), prefix: '' });
    const opts: PruneOptions = { indexPrefix: INDEX, identities: [keys.identity], tmpDir, janitor };
    const plan = await planPrune(storage, opts);
    expect(plan.abortUploads.map((u) => u.uploadId)).toEqual(['u-old', 'u-old2']);
    const result = await executePrune(storage, plan, opts);
    expect(result.abortedUploads).toBe(2);
    expect(aborted).toEqual(['/b/pre/blobs/aa/bb/old u-old', '/b/pre/index/old2 u-old2']);
    await raw.close();
  });
});
