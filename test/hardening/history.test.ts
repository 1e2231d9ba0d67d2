/**
 * History cannot be erased: the attacks of issue 15, replayed on a local store and on S3
 * (s3rver), by someone who holds only what a backed-up host holds: the public recipient and a
 * write credential. After each, every real snapshot that the same retention policy keeps without
 * the attack still restores byte for byte, or the tool refuses to act with a clear message and a
 * documented exit code; nothing those snapshots need is deleted.
 *
 * Honest snapshots are made by the real backup engine (with its state cache, so "the next honest
 * backup" is the real thing); forgeries by the prune test kit's Source, which writes valid blobs,
 * shards, manifests and roots with nothing but the recipient. On the local store the store time
 * of an honest root is set to when its backup ran (its file's mtime, which is what a local store
 * records); a forgery's objects keep the time they were written, as they would in an attack
 * through the store's interface (docs/SECURITY.md says what an attacker who sets mtimes can do).
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/index.js';
import { main } from '../../src/cli/main.js';
import { generateKeyPair, parseIdentity, parseRecipient } from '../../src/crypto/index.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { SuspectSnapshotsError, executeForget, executePrune, planForget, planPrune, type RetentionPolicy } from '../../src/prune/index.js';
import { runRestore } from '../../src/restore/index.js';
import { listSnapshots, type SnapshotListing } from '../../src/snapshot/index.js';
import { LocalStorage, openStorage, type Storage } from '../../src/storage/index.js';
import { verifyStore } from '../../src/verify/index.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { DAY, Source, sampleFiles, type Keys } from '../prune/kit.js';
import { captureIO } from '../helpers/io.js';
import { s3Servers, type S3Server } from '../helpers/s3servers.js';
import { listingOf, setStoreTime } from '../helpers/snapshots.js';
import { makeTempDir } from '../helpers/tmp.js';
import { goldenCopy, restoreDiffs } from './kit.js';

const tmp = makeTempDir('vaultik-history-');
afterAll(() => tmp.cleanup());
let ws: Workspace | undefined;

afterEach(() => {
  ws?.cleanup();
  ws = undefined;
});

/** The routine policy of the attack. */
const ROUTINE: RetentionPolicy = { daily: 7, weekly: 5, monthly: 12 };

interface Honest {
  ws: Workspace;
  storage: Storage;
  /** Snapshot id → a golden copy of the source as backed up. */
  golden: Map<string, string>;
  ids: string[];
}

/**
 * `days` honest daily backups of a small tree by the real engine, the last one `endAgo` before
 * now. With `backdate`, each root is recorded by the store when its backup ran (local store);
 * without, now (S3: the server's clock).
 */
async function honestHistory(storeYaml: string | undefined, days: number, backdate: boolean): Promise<Honest> {
  const w = makeWorkspace();
  ws = w;
  if (storeYaml) w.writeConfig('', storeYaml);
  const config = w.config();
  const storage = openStorage(config.storage);
  const golden = new Map<string, string>();
  const ids: string[] = [];
  const now = Date.now();
  writeFileSync(join(w.src, 'base.bin'), sampleFiles(1, ['x'], 200_000).x!);
  for (let d = 0; d < days; d++) {
    writeFileSync(join(w.src, `day-${d}.bin`), sampleFiles(100 + d, ['x'], 30_000).x!);
    writeFileSync(join(w.src, 'changing.txt'), `day ${d}\n`.repeat(1000));
    const when = backdate ? new Date(now - (days - d) * DAY) : new Date(now - (days - d) * 60_000);
    const summary = await runBackup(config, { storage, workers: 2, progressIntervalMs: 0, now: () => when });
    if (backdate) {
      const s = await listingOf(storage, 'index/', summary.snapshotId);
      const files = new LocalStorage({ path: w.store, prefix: '' }); // the store's own times: file mtimes
      for (const o of [s.root, ...s.manifests]) expect(setStoreTime(files, o.key, new Date(when.getTime() + 2000))).toBe(true);
    }
    const copy = join(w.root, `golden-${d}`);
    goldenCopy(w.src, copy);
    golden.set(summary.snapshotId, copy);
    ids.push(summary.snapshotId);
  }
  return { ws: w, storage, golden, ids };
}

/** The attacker: the host's name and the public recipient, nothing else. */
function forger(h: Honest): Source {
  // The forger's Source never decrypts: it gets no usable identity.
  const keys: Keys = { identity: parseIdentity(generateKeyPair().identity), recipient: parseRecipient(h.ws.recipient), secret: '' };
  const dir = join(tmp.dir, `forger-${Math.random().toString(36).slice(2)}`);
  mkdirSync(dir, { recursive: true });
  // storeTime 'now': the forger cannot choose the store's time (see the file comment).
  return new Source(h.storage, keys, { host: 'testhost', tmpDir: dir, keepStoreTime: true });
}

/** Every snapshot of `ids` restores byte for byte (a golden copy of each was taken). */
async function expectRestores(h: Honest, ids: readonly string[]): Promise<void> {
  expect(ids.length).toBeGreaterThan(0);
  for (const id of ids) {
    expect(await restoreDiffs(h.storage, h.ws.identity, id, h.golden.get(id)!, h.ws.src, tmp.dir), id).toEqual([]);
  }
}

const realIds = (list: readonly { snapshot: SnapshotListing }[], h: Honest): string[] =>
  list.map((d) => d.snapshot.id).filter((id) => h.golden.has(id)).sort();

/** The stores of the attacks: a local directory, then each real S3 server. */
const STORES: { name: string; server?: ReturnType<typeof s3Servers>[number] }[] = [{ name: 'local store' }, ...s3Servers().map((server) => ({ name: `S3 (${server.name})${server.label}`, server }))];

describe.each(STORES)('forged snapshots cannot cost a real one: $name', ({ server }) => {
  const onS3 = server !== undefined;
  let s3: S3Server | undefined;
  beforeAll(async () => {
    if (server && !server.missing) s3 = await server.start();
  });
  afterAll(async () => {
    await s3?.stop();
  });
  const s3Yaml = (prefix: string): string => s3!.yaml(prefix);
  const skip = server?.missing !== undefined && server.missing !== false;
  it.skipIf(skip)('30 future-dated forgeries: forget refuses (exit 8); told to keep them, it decides as without them; prune and the next backup lose nothing', async () => {
    const prefix = `hist-${Math.random().toString(36).slice(2)}/`;
    const h = await honestHistory(onS3 ? s3Yaml(prefix) : undefined, 10, !onS3);
    const policy: RetentionPolicy = onS3 ? { last: 4 } : ROUTINE;
    const baseline = await planForget(h.storage, { indexPrefix: 'index/', policy });
    expect(baseline.suspects).toBe(0);

    // The attack: 30 empty snapshots dated 1..30 days into the future.
    const f = forger(h);
    for (let i = 1; i <= 30; i++) await f.backup(new Date(Date.now() + i * DAY), {});
    const listed = await listSnapshots(h.storage, 'index/');
    expect(listed.filter((s) => s.suspect.length > 0)).toHaveLength(30);
    expect(listed.filter((s) => s.suspect.length > 0).every((s) => /after the store recorded it/.test(s.suspect[0]!))).toBe(true);

    // Without a decision, forget refuses: library and CLI (documented exit code 8).
    const refused = await planForget(h.storage, { indexPrefix: 'index/', policy }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(SuspectSnapshotsError);
    expect((refused as VaultikError).exitCode).toBe(ExitCode.SUSPECT);
    const io = captureIO();
    const code = await main(['forget', '--config', h.ws.configPath, ...(onS3 ? ['--keep-last', '4'] : ['--keep-daily', '7', '--keep-weekly', '5', '--keep-monthly', '12'])], io.io);
    expect(code, io.err()).toBe(ExitCode.SUSPECT);
    expect(io.err()).toMatch(/30 suspect snapshot\(s\).*nothing was removed/s);
    expect(io.err()).toMatch(/--suspects keep/);
    expect((await listSnapshots(h.storage, 'index/')).length).toBe(40);

    // --suspects keep: the real snapshots are judged exactly as without the attack.
    const plan = await planForget(h.storage, { indexPrefix: 'index/', policy, suspects: 'keep' });
    expect(realIds(plan.keep, h)).toEqual(realIds(baseline.keep, h));
    expect(realIds(plan.remove, h)).toEqual(realIds(baseline.remove, h));
    expect(plan.keep.filter((d) => !h.golden.has(d.snapshot.id))).toHaveLength(30);
    await executeForget(h.storage, plan);
    const prune = { indexPrefix: 'index/', identities: [parseIdentity(h.ws.identity)], tmpDir: tmp.dir, graceMs: 0 };
    await executePrune(h.storage, await planPrune(h.storage, prune), prune);
    await expectRestores(h, realIds(baseline.keep, h));

    // The next honest backup deduplicates against its latest real snapshot, which was kept.
    writeFileSync(join(h.ws.src, 'after.txt'), 'after the attack\n');
    const next = await runBackup(h.ws.config(), { storage: h.storage, workers: 2, progressIntervalMs: 0 });
    const copy = join(h.ws.root, 'golden-next');
    goldenCopy(h.ws.src, copy);
    h.golden.set(next.snapshotId, copy);
    await expectRestores(h, [next.snapshotId]);
    const report = await verifyStore(h.storage, { indexPrefix: 'index/', deep: { identities: [parseIdentity(h.ws.identity)], tmpDir: tmp.dir } });
    expect(report.problems.filter((p) => p.kind !== 'suspect')).toEqual([]);
    expect(report.problems.filter((p) => p.kind === 'suspect')).toHaveLength(30);

    // --suspects forget removes every forgery and no real snapshot.
    const purge = await planForget(h.storage, { indexPrefix: 'index/', policy: { last: -1 }, suspects: 'forget' });
    expect(purge.remove).toHaveLength(30);
    expect(purge.remove.every((d) => !h.golden.has(d.snapshot.id))).toBe(true);
    await h.storage.close();
  });

  it.skipIf(skip)('a root replaced in place, or a second root under a real id: restore refuses (exit 5), keyless verify names it, prune keeps everything', async () => {
    const prefix = `repl-${Math.random().toString(36).slice(2)}/`;
    const h = await honestHistory(onS3 ? s3Yaml(prefix) : undefined, 2, false);
    const [first, victim] = h.ids as [string, string];
    const real = await listingOf(h.storage, 'index/', victim);

    // A forged snapshot with the victim's id (a file pointing at the attacker's new blob), written
    // beside it: a second root under one id.
    const f = forger(h);
    await f.backup(real.time, { 'evil.txt': Buffer.from('attacker content\n') });
    const both = await listingOf(h.storage, 'index/', victim);
    expect(both.otherRoots).toHaveLength(1);
    expect(both.suspect).toContain('2 root objects share its id');
    const err = await runRestore({ storage: h.storage, identities: [parseIdentity(h.ws.identity)], snapshotId: victim, target: join(tmp.dir, `r-${prefix}`), tmpDir: tmp.dir }).catch((e: unknown) => e);
    expect((err as VaultikError).exitCode).toBe(ExitCode.DATA);
    expect((err as Error).message).toMatch(/has 2 root objects .*refusing to choose/);
    // `latest` never picks a suspect snapshot: it falls back to the snapshot before.
    const latest = await runRestore({ storage: h.storage, identities: [parseIdentity(h.ws.identity)], snapshotId: 'latest', target: join(tmp.dir, `l-${prefix}`), tmpDir: tmp.dir });
    expect(latest.snapshotId).toBe(first);
    rmSync(join(tmp.dir, `l-${prefix}`), { recursive: true, force: true });
    // Prune keeps what both roots reference (forging can only add): no blob is missing after it.
    const prune = { indexPrefix: 'index/', identities: [parseIdentity(h.ws.identity)], tmpDir: tmp.dir, graceMs: 0 };
    await executePrune(h.storage, await planPrune(h.storage, prune), prune);
    const keyless = await verifyStore(h.storage, { indexPrefix: 'index/' });
    expect(keyless.problems).toEqual([{ kind: 'suspect', snapshot: victim, reasons: ['2 root objects share its id', '2 manifests share its id'] }]);

    // The forged root replaces the real one in place (a store that allows overwrites): its bytes
    // no longer match the name.
    const forgedKey = both.otherRoots[0]!.key === real.root.key ? both.root.key : both.otherRoots[0]!.key;
    const forgedBytes = await readObject(h.storage, forgedKey);
    await h.storage.delete([forgedKey, real.root.key]);
    await overwrite(h.storage, real.root.key, forgedBytes);
    const replaced = await runRestore({ storage: h.storage, identities: [parseIdentity(h.ws.identity)], snapshotId: victim, target: join(tmp.dir, `x-${prefix}`), tmpDir: tmp.dir }).catch((e: unknown) => e);
    expect((replaced as VaultikError).exitCode).toBe(ExitCode.DATA);
    expect((replaced as Error).message).toMatch(/hashes to [0-9a-f]{64}, not its name/);
    const report = await verifyStore(h.storage, { indexPrefix: 'index/' });
    expect(report.problems).toContainEqual({ kind: 'bad-root', snapshot: victim, key: real.root.key, message: expect.stringMatching(/replaced or damaged/) as unknown });
    // The earlier snapshot is untouched and restores.
    await expectRestores(h, [first]);
    await h.storage.close();
  });
});

describe('a burst of plausible forgeries (local store): what it can and cannot do', () => {
  it('takes the current day and the last-N slots at most; every earlier real snapshot keeps its slot, and keep-within keeps them all', async () => {
    const h = await honestHistory(undefined, 10, true);
    const baseline = await planForget(h.storage, { indexPrefix: 'index/', policy: ROUTINE });
    const f = forger(h);
    for (let i = 0; i < 20; i++) await f.backup(new Date(Date.now() - 60_000 + i), {});
    const listed = await listSnapshots(h.storage, 'index/');
    expect(listed.filter((s) => s.suspect.length > 0)).toEqual([]); // plausible: nothing tells them apart
    const attacked = await planForget(h.storage, { indexPrefix: 'index/', policy: ROUTINE });
    // Real snapshots stored before today keep exactly their baseline decision...
    const today = new Date().toISOString().slice(0, 10);
    const earlier = (ids: string[]): string[] => ids.filter((id) => listed.find((s) => s.id === id)!.storeTime.toISOString().slice(0, 10) !== today);
    expect(earlier(realIds(attacked.keep, h))).toEqual(earlier(realIds(baseline.keep, h)));
    // ...and with --keep-within (by store time, which the attacker cannot move) every real
    // snapshot the baseline keeps is kept, whatever the burst.
    const guarded = await planForget(h.storage, { indexPrefix: 'index/', policy: { ...ROUTINE, withinMs: 2 * DAY } });
    for (const id of realIds(baseline.keep, h)) expect(realIds(guarded.keep, h)).toContain(id);
    await h.storage.close();
  });
});

async function readObject(storage: Storage, key: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of await storage.get(key)) parts.push(b as Buffer);
  return Buffer.concat(parts);
}

/** Writes `bytes` at `key` as an attacker would, around vaultik's no-overwrite put. */
async function overwrite(storage: Storage, key: string, bytes: Buffer): Promise<void> {
  await storage.delete([key]);
  await storage.put(key, bytes);
}
