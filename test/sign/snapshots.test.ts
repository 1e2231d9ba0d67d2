/**
 * Signed snapshots end to end, on a real local store: real backups (the engine, with a
 * `signing_key` made by `ssh-keygen -t ed25519 -N ''`), then the commands a reader runs with
 * `--signers`, and the stock `ssh-keygen -Y verify` on the stored signature.
 *
 * The store gets four snapshots:
 *   S1 testhost, signed by testhost's key          valid
 *   S2 testhost, no signing_key                    unsigned
 *   S3 testhost, signed by a key allowed for host2  not allowed for testhost
 *   S4 host2, signed by testhost's key             not allowed for host2
 * and at the end S1's root is replaced (re-encrypted to the public recipient: a new name).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/index.js';
import type { Config } from '../../src/config/index.js';
import { decrypt, encrypt, parseIdentity, parseRecipient } from '../../src/crypto/index.js';
import { ExitCode } from '../../src/errors.js';
import { listSnapshots, metadataKey, signatureOf, type SnapshotListing } from '../../src/snapshot/index.js';
import { openStorage, type Storage } from '../../src/storage/index.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { jsonLines, runMain } from '../helpers/io.js';
import { requireTool } from '../helpers/tools.js';
import { sshKeygen } from './kit.js';

const INDEX = 'index/';
let ws: Workspace;
let storage: Storage;
let hostKey: string;
let otherKey: string;
let signers: string;
let url: string;
const ids: Record<'s1' | 's2' | 's3' | 's4', string> = { s1: '', s2: '', s3: '', s4: '' };

/** One real backup of the workspace's source with `over` applied to its config. */
async function backup(name: string, over: Partial<Config>): Promise<string> {
  const config: Config = { ...ws.config(), indexPath: join(ws.cacheDir, `${name}.sqlite`), ...over };
  const summary = await runBackup(config, { storage, workers: 1 });
  return summary.snapshotId;
}

async function listing(id: string): Promise<SnapshotListing> {
  const found = (await listSnapshots(storage, INDEX)).find((s) => s.id === id);
  if (!found) throw new Error(`no snapshot ${id}`);
  return found;
}

const cli = (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> =>
  runMain(args, { VAULTIK_PRIVATE_KEY: ws.identity, ...env });

beforeAll(async () => {
  requireTool('ssh-keygen');
  ws = makeWorkspace();
  writeFileSync(join(ws.src, 'a.txt'), 'signed content\n');
  writeFileSync(join(ws.src, 'b.bin'), Buffer.alloc(70_000, 7));
  ws.writeConfig('', `local: {path: ${ws.store}, prefix: box}`);
  storage = openStorage(ws.config().storage);
  url = `file://${ws.store}`;
  hostKey = sshKeygen(ws.root);
  otherKey = sshKeygen(ws.root);
  signers = join(ws.root, 'allowed_signers');
  writeFileSync(signers, `testhost ${readFileSync(`${hostKey}.pub`, 'utf8')}host2 ${readFileSync(`${otherKey}.pub`, 'utf8')}`);
  ids.s1 = await backup('s1', { signingKey: hostKey });
  ids.s2 = await backup('s2', {});
  ids.s3 = await backup('s3', { signingKey: otherKey });
  ids.s4 = await backup('s4', { hostname: 'host2', signingKey: hostKey });
}, 60_000);

afterAll(async () => {
  await storage?.close();
  ws?.cleanup();
});

describe('signed snapshots', () => {
  it('a backup with signing_key stores <id>.<root hash>.sig, which the stock ssh-keygen -Y verify accepts', async () => {
    const s1 = await listing(ids.s1);
    const sig = signatureOf(s1);
    expect(sig?.key).toBe(`${INDEX}${ids.s1}.${s1.root.sha256}.sig`);
    expect(signatureOf(await listing(ids.s2))).toBeUndefined();
    // docs/FORMAT.md "Signatures", word for word: everything it needs is in object names.
    const stock = (id: string, host: string, l: SnapshotListing): ReturnType<typeof spawnSync> =>
      spawnSync(
        'sh',
        [
          '-c',
          `printf 'vaultik snapshot signature v1\\nsnapshot %s\\nroot %s\\nmanifest %s\\n' "$1" "$2" "$3" | ssh-keygen -Y verify -f "$4" -I "$5" -n vaultik-snapshot -s "$6"`,
          'sh',
          id,
          l.root.sha256,
          l.manifests[0]!.sha256,
          signers,
          host,
          join(ws.store, 'box', signatureOf(l)!.key),
        ],
        { encoding: 'utf8' },
      );
    const ok = stock(ids.s1, 'testhost', s1);
    expect(ok.status, `${ok.stdout}${ok.stderr}`).toBe(0);
    expect(ok.stdout).toContain('Good "vaultik-snapshot" signature for testhost');
    // testhost's key signed S4, but allowed_signers allows it for testhost only.
    const s4 = await listing(ids.s4);
    expect(stock(ids.s4, 'host2', s4).status).not.toBe(0);
    // The same signature does not cover another manifest.
    expect(stock(ids.s1, 'testhost', { ...s1, manifests: (await listing(ids.s2)).manifests }).status).not.toBe(0);
  });

  it('verify --signers reports every snapshot without a valid signature (exit 5); plain verify does not look', async () => {
    const plain = await cli(['verify', url, 'box']);
    expect(plain.code, plain.stderr).toBe(ExitCode.OK);
    const r = await cli(['verify', url, 'box', '--signers', signers, '--json']);
    expect(r.code).toBe(ExitCode.DATA);
    const report = JSON.parse(r.stdout) as { validSignatures: number; problems: { kind: string; snapshot: string; message: string }[] };
    expect(report.validSignatures).toBe(1);
    const problems = report.problems.filter((p) => p.kind === 'signature');
    expect(problems.map((p) => p.snapshot).sort()).toEqual([ids.s2, ids.s3, ids.s4].sort());
    const of = (id: string): string => problems.find((p) => p.snapshot === id)!.message;
    expect(of(ids.s2)).toBe('unsigned');
    expect(of(ids.s3)).toMatch(/^signed by a key not allowed for host testhost: key SHA256:\S+ is not an allowed signer/);
    expect(of(ids.s4)).toMatch(/^signed by a key not allowed for host host2: /);
    expect(report.problems.filter((p) => p.kind !== 'signature')).toEqual([]);
  });

  it('restore/fetch/ls --signers refuse what is not validly signed (exit 5); latest is the newest validly signed', async () => {
    const plain = await cli(['restore', url, 'box', 'latest', join(ws.root, 'r0'), '--host', 'testhost']);
    expect(plain.code, plain.stderr).toBe(ExitCode.OK);
    expect(plain.stdout).toContain(`restored snapshot ${ids.s3}`);
    const signed = await cli(['restore', url, 'box', 'latest', join(ws.root, 'r1'), '--signers', signers]);
    expect(signed.code, signed.stderr).toBe(ExitCode.OK);
    expect(signed.stdout).toContain(`restored snapshot ${ids.s1}`);
    expect(readFileSync(join(ws.root, 'r1', ws.src, 'a.txt'), 'utf8')).toBe('signed content\n');

    const unsigned = await cli(['restore', url, 'box', ids.s2, join(ws.root, 'r2'), '--signers', signers]);
    expect(unsigned.code).toBe(ExitCode.DATA);
    expect(unsigned.stderr).toContain(`snapshot ${ids.s2} is refused: unsigned`);
    expect(() => readdirSync(join(ws.root, 'r2'))).toThrow(); // nothing written
    const wrongHost = await cli(['fetch', url, 'box', ids.s4, `${ws.src}/a.txt`, join(ws.root, 'f4'), '--signers', signers]);
    expect(wrongHost.code).toBe(ExitCode.DATA);
    expect(wrongHost.stderr).toContain('signed by a key not allowed for host host2');
    const otherKeyLs = await cli(['ls', url, 'box', ids.s3, '--signers', signers]);
    expect(otherKeyLs.code).toBe(ExitCode.DATA);
    expect(otherKeyLs.stderr).toContain('not allowed for host testhost');
    const ls = await cli(['ls', url, 'box', ids.s1, '--signers', signers]);
    expect(ls.code, ls.stderr).toBe(ExitCode.OK);
    expect(ls.stdout).toContain(`${ws.src}/a.txt`);
    const none = await cli(['ls', url, 'box', 'latest', '--host', 'host2', '--signers', signers]);
    expect(none.code).toBe(ExitCode.DATA);
    expect(none.stderr).toContain("no snapshot of host 'host2' has a valid signature");
  });

  it('snapshots shows each signature: checked with --signers, "signed (unchecked)" without', async () => {
    type Row = { id: string; signature: string; suspect: string[]; signer?: string };
    const plain = jsonLines((await cli(['snapshots', url, 'box', '--json'])).stdout) as unknown as Row[];
    expect(Object.fromEntries(plain.map((r) => [r.id, r.signature]))).toEqual({
      [ids.s1]: 'signed (unchecked)',
      [ids.s2]: 'unsigned',
      [ids.s3]: 'signed (unchecked)',
      [ids.s4]: 'signed (unchecked)',
    });
    expect(plain.every((r) => r.suspect.length === 0)).toBe(true);
    const checked = jsonLines((await cli(['snapshots', url, 'box', '--json', '--signers', signers])).stdout) as unknown as Row[];
    expect(Object.fromEntries(checked.map((r) => [r.id, r.signature]))).toEqual({
      [ids.s1]: 'valid',
      [ids.s2]: 'unsigned',
      [ids.s3]: 'not allowed',
      [ids.s4]: 'not allowed',
    });
    expect(checked.find((r) => r.id === ids.s1)!.signer).toMatch(/^SHA256:/);
    const text = await cli(['snapshots', url, 'box', '--signers', signers]);
    expect(text.stdout).toMatch(new RegExp(`^${ids.s1} .* valid$`, 'm'));
    expect(text.stdout).toMatch(new RegExp(`^${ids.s2} .*  SUSPECT$`, 'm'));
    expect(text.stderr).toContain(`${ids.s2} is suspect: unsigned`);
  });

  it('forget --signers: unsigned and badly signed snapshots take no keep slot, and forget refuses until told', async () => {
    type Plan = { keep: { id: string; reasons: string[] }[]; remove: { id: string }[] };
    // Without signers the newest testhost snapshot (S3, signed by the wrong key) is "last".
    const plain = JSON.parse((await cli(['forget', url, 'box', '--keep-last', '1', '--host', 'testhost', '--dry-run', '--json'])).stdout) as Plan;
    expect(plain.keep.map((k) => k.id)).toEqual([ids.s3]);
    const refused = await cli(['forget', url, 'box', '--keep-last', '1', '--signers', signers, '--dry-run']);
    expect(refused.code).toBe(ExitCode.SUSPECT);
    expect(refused.stderr).toContain(`${ids.s2}: unsigned`);
    const r = await cli(['forget', url, 'box', '--keep-last', '1', '--host', 'testhost', '--signers', signers, '--suspects', 'forget', '--dry-run', '--json']);
    expect(r.code, r.stderr).toBe(ExitCode.OK);
    const plan = JSON.parse(r.stdout) as Plan;
    expect(plan.keep.map((k) => k.id)).toEqual([ids.s1]);
    expect(plan.remove.map((k) => k.id).sort()).toEqual([ids.s2, ids.s3].sort());
  });

  it('prune --signers keeps what every snapshot references and notes the ones not validly signed', async () => {
    const r = await cli(['prune', url, 'box', '--dry-run', '--grace', '0', '--signers', signers]);
    expect(r.code, r.stderr).toBe(ExitCode.OK);
    expect(r.stderr).toContain(`note: snapshot ${ids.s2}: unsigned; its blobs are kept`);
    expect(r.stderr).toContain(`note: snapshot ${ids.s4}: signed by a key not allowed for host host2`);
    expect(r.stderr).not.toContain(`snapshot ${ids.s1}:`);
    expect(r.stdout).toMatch(/to delete: 0 blob\(s\)/);
  });

  it('a replaced root has a new name and no signature: refused with --signers, restorable without', async () => {
    const s1 = await listing(ids.s1);
    // What anyone with the public recipient and write access can do: a root that decrypts fine.
    const original = readFileSync(join(ws.store, 'box', s1.root.key));
    const forged = encrypt(decrypt(original, [parseIdentity(ws.identity)]), [parseRecipient(ws.recipient)]);
    const { createHash } = await import('node:crypto');
    const forgedKey = metadataKey(INDEX, ids.s1, createHash('sha256').update(forged).digest('hex'));
    await storage.put(forgedKey, forged);
    unlinkSync(join(ws.store, 'box', s1.root.key));
    expect((await listing(ids.s1)).root.key).toBe(forgedKey);

    const refused = await cli(['restore', url, 'box', ids.s1, join(ws.root, 't1'), '--signers', signers]);
    expect(refused.code).toBe(ExitCode.DATA);
    expect(refused.stderr).toContain(`snapshot ${ids.s1} is refused: unsigned`);
    const none = await cli(['restore', url, 'box', 'latest', join(ws.root, 't2'), '--host', 'testhost', '--signers', signers]);
    expect(none.code).toBe(ExitCode.DATA);
    expect(none.stderr).toContain("no snapshot of host 'testhost' has a valid signature");
    const plain = await cli(['restore', url, 'box', ids.s1, join(ws.root, 't3')]);
    expect(plain.code, plain.stderr).toBe(ExitCode.OK);
  });
});
