/**
 * The prune, forget and verify commands through the CLI entry point (main), on a local store:
 * argument handling, text and --json output, exit codes, keyless forget and verify.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { blobKey } from '../../src/blob/index.js';
import { ExitCode } from '../../src/errors.js';
import { LocalStorage } from '../../src/storage/local.js';
import { makeTempDir } from '../helpers/tmp.js';
import { runMain } from '../helpers/io.js';
import { DAY, Source, allKeys, blobKeys, keysUnder, newKeys, readSnapshot, sampleFiles, setMtime, type BackupRun } from './kit.js';
import { findIndexKey } from '../helpers/snapshots.js';

const tmp = makeTempDir('vaultik-prune-cli-');
afterAll(tmp.cleanup);
const keys = newKeys();
const T0 = Date.UTC(2026, 0, 1, 3);
let n = 0;

describe('prune, forget and verify commands', () => {
  let root: string;
  let url: string;
  let storage: LocalStorage;
  let tmpDir: string;
  const runs: Record<string, BackupRun[]> = {};
  const withKey = { VAULTIK_PRIVATE_KEY: keys.secret };

  beforeEach(async () => {
    root = join(tmp.dir, `store-${++n}`);
    mkdirSync(root);
    tmpDir = join(tmp.dir, `tmp-${n}`);
    mkdirSync(tmpDir, { recursive: true });
    url = pathToFileURL(root).href;
    storage = new LocalStorage({ path: root, prefix: 'p' });
    for (const host of ['web', 'db']) {
      const src = new Source(storage, keys, { host, tmpDir, chunkSize: 1024, blobLimit: 4096 });
      runs[host] = [];
      for (let d = 0; d < 3; d++) {
        runs[host].push(await src.backup(new Date(T0 + d * DAY), sampleFiles(d + (host === 'db' ? 10 : 0), ['f'], 6000)));
      }
    }
    const old = new Date(Date.now() - 3 * DAY);
    // Roots keep the time of their snapshot (the store-clock checks compare the two).
    for (const k of await allKeys(storage)) if (!k.endsWith('.db.zst.age')) setMtime(join(root, 'p'), k, old);
  });

  it('forget is keyless, prints the plan, and honours --dry-run', async () => {
    const before = await allKeys(storage);
    const dry = await runMain(['forget', url, 'p', '--keep-last', '2', '--dry-run']);
    expect(dry.code).toBe(ExitCode.OK);
    expect(dry.stdout).toContain('host web: keep 2, remove 1');
    expect(dry.stdout).toContain(`remove  ${runs.web![0]!.id}`);
    expect(dry.stdout).toMatch(/keep {4}\S+ {2}\(latest, last\)/);
    expect(dry.stdout).toContain('dry run: nothing was removed');
    expect(await allKeys(storage)).toEqual(before);

    const real = await runMain(['forget', url, 'p', '--keep-last', '1', '--host', 'db', '--json']);
    expect(real.code).toBe(ExitCode.OK);
    const out = JSON.parse(real.stdout) as { forgotten: string[]; untouched: number };
    expect(out.forgotten.sort()).toEqual([runs.db![0]!.id, runs.db![1]!.id].sort());
    expect(out.untouched).toBe(3);
    expect((await keysUnder(storage, 'index/')).filter((k) => k.includes('db-'))).toHaveLength(2);
  });

  it('forget refuses without a keep option and with bad numbers', async () => {
    expect((await runMain(['forget', url, 'p'])).code).toBe(ExitCode.USAGE);
    expect((await runMain(['forget', url, 'p', '--keep-daily', 'x'])).code).toBe(ExitCode.USAGE);
    expect((await runMain(['forget', url, 'p', '--keep-within', '1y'])).stderr).toMatch(/keep-within/);
    expect(await runMain(['forget', url, 'p', '--keep-last', '1', '--suspects', 'maybe'])).toMatchObject({ code: ExitCode.USAGE, stderr: expect.stringMatching(/--suspects: expected 'keep' or 'forget', got 'maybe'/) as unknown });
    expect(await runMain(['forget', url, 'p', '--keep-last', '1', '--clock-tolerance', 'soon'])).toMatchObject({ code: ExitCode.USAGE, stderr: expect.stringMatching(/--clock-tolerance/) as unknown });
    expect(await runMain(['forget', url, 'p', '--keep-last', '1', '--max-run', '-1d'])).toMatchObject({ code: ExitCode.USAGE, stderr: expect.stringMatching(/--max-run/) as unknown });
    expect((await runMain(['forget', url, 'p', runs.web![2]!.id])).stderr).toMatch(/latest snapshot of host 'web'/);
  });

  it('prune --dry-run reports, changes nothing; prune deletes; --json', async () => {
    await runMain(['forget', url, 'p', runs.web![0]!.id, runs.web![1]!.id]);
    const before = await allKeys(storage);
    const dry = await runMain(['prune', url, 'p', '--dry-run'], withKey);
    expect(dry.code).toBe(ExitCode.OK);
    expect(dry.stdout).toMatch(/to delete: [1-9]\d* blob\(s\)/);
    expect(dry.stdout).toContain('dry run: nothing was deleted');
    expect(await allKeys(storage)).toEqual(before);

    const real = await runMain(['prune', url, 'p', '--json'], withKey);
    expect(real.code).toBe(ExitCode.OK);
    const out = JSON.parse(real.stdout) as { delete: { blobs: number; bytes: number }; deleted: { blobs: number; bytes: number }; seconds: number; exitCode: number };
    expect(out.deleted.blobs).toBe(out.delete.blobs);
    expect(out.deleted.bytes).toBe(out.delete.bytes);
    expect(out.deleted.blobs).toBeGreaterThan(0);
    expect(out.exitCode).toBe(0);
    expect((await runMain(['verify', url, 'p'])).code).toBe(ExitCode.OK);
  });

  it('prune with the wrong key or no key deletes nothing', async () => {
    await runMain(['forget', url, 'p', '--keep-last', '1']);
    const before = await allKeys(storage);
    const wrong = await runMain(['prune', url, 'p', '--keep-latest'], { VAULTIK_PRIVATE_KEY: newKeys().secret });
    expect(wrong.code).toBe(ExitCode.NO_IDENTITY);
    expect(wrong.stderr).toMatch(/nothing was deleted/);
    expect((await runMain(['prune', url, 'p'])).code).toBe(ExitCode.USAGE);
    expect((await runMain(['prune', url, 'p', '--grace', '1y'], withKey)).code).toBe(ExitCode.USAGE);
    expect(await allKeys(storage)).toEqual(before);
  });

  it('prune --keep-latest keeps only the latest snapshot per host, which restore byte for byte', async () => {
    const res = await runMain(['prune', url, 'p', '--keep-latest'], withKey);
    expect(res.code).toBe(ExitCode.OK);
    expect(res.stdout).toMatch(/forgot 4 snapshot\(s\)/);
    const index = await keysUnder(storage, 'index/');
    const roots = index.filter((k) => k.endsWith('.db.zst.age'));
    expect(roots).toEqual([runs.db![2]!.id, runs.web![2]!.id].map((id) => findIndexKey(roots, 'index/', id)).sort());
    expect(index).toHaveLength(4);
    const referenced = new Set([...runs.db![2]!.blobs, ...runs.web![2]!.blobs].map((b) => b.hash));
    expect(new Set((await blobKeys(storage)).map((k) => k.split('/').pop()))).toEqual(referenced);
    const web = await readSnapshot(storage, runs.web![2]!.id, [keys.identity], tmpDir);
    expect(web.get('f')!.equals(sampleFiles(2, ['f'], 6000).f!)).toBe(true);
  });

  it('verify: exit 0 on a clean store, DATA with the problem on a flipped byte; --json, --sample, --deep', async () => {
    const ok = await runMain(['verify', url, 'p']);
    expect(ok.code).toBe(ExitCode.OK);
    expect(ok.stdout).toMatch(/no problems found/);
    const victim = runs.web![1]!.uploaded[0]!;
    const path = join(root, 'p', ...blobKey(victim).split('/'));
    const bytes = readFileSync(path);
    bytes[200]! ^= 0x80;
    writeFileSync(path, bytes);
    const bad = await runMain(['verify', url, 'p']);
    expect(bad.code).toBe(ExitCode.DATA);
    expect(bad.stderr).toContain(`corrupt blob ${victim}`);
    const asJson = JSON.parse((await runMain(['verify', url, 'p', '--json', '--sample', '100%'])).stdout) as { problems: { kind: string }[]; exitCode: number };
    expect(asJson.problems.map((p) => p.kind)).toEqual(['corrupt-blob']);
    expect(asJson.exitCode).toBe(ExitCode.DATA);
    expect((await runMain(['verify', url, 'p', '--sample', '10'])).code).toBe(ExitCode.USAGE);
    expect((await runMain(['verify', url, 'p', '--deep'])).code).toBe(ExitCode.USAGE);
    const deep = await runMain(['verify', url, 'p', '--deep'], withKey);
    expect(deep.code).toBe(ExitCode.DATA);
    expect(deep.stdout).toMatch(/deep: \d+ chunk\(s\)/);
    expect((await runMain(['verify', url, 'p', '--deep'], { VAULTIK_PRIVATE_KEY: newKeys().secret })).code).toBe(ExitCode.NO_IDENTITY);
  });
});
