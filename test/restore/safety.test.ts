/**
 * Restoring what a snapshot may not be trusted with, as root: --no-owner, --no-devices,
 * --no-specials and --no-setuid on `restore` and `fetch`. A real tree holds a character device
 * (1,3, like /dev/null), a FIFO, setuid/setgid files (some small enough for the decode workers
 * to write whole) and files of uid 12345; each option is checked with lstat on the result.
 * Needs root (mknod, chown): skipped, visibly, otherwise.
 */
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { SafetyPolicy } from '../../src/restore/index.js';
import type { Entry } from '../../src/snapshot/types.js';
import { openStorage } from '../../src/storage/index.js';
import { captureIO } from '../helpers/io.js';
import { makeTempDir } from '../helpers/tmp.js';
import { pseudoRandom } from '../helpers/tree.js';
import { jsonSummary, makeKey, snapshotTree } from './helpers.js';

const isRoot = process.getuid?.() === 0;
const FOREIGN = 12345;
const MANY = 100;

const tmp = makeTempDir('vaultik-restore-safety-');
afterAll(tmp.cleanup);
const key = makeKey();
const src = join(tmp.dir, 'src');
const store = join(tmp.dir, 'store');
// vaultik never creates the store directory itself.
mkdirSync(store);
const url = `file://${store}`;
let targets = 0;

function build(): void {
  mkdirSync(src);
  const file = (name: string, mode: number, owner = 0, group = owner): void => {
    writeFileSync(join(src, name), `${name}\n`);
    chownSync(join(src, name), owner, group);
    chmodSync(join(src, name), mode); // after chown, which clears setuid bits
  };
  file('suid-root', 0o4755);
  file('suid-foreign', 0o4755, FOREIGN);
  file('sgid-foreign', 0o2755, 0, FOREIGN);
  file('foreign', 0o644, FOREIGN);
  mkdirSync(join(src, 'sticky'));
  chmodSync(join(src, 'sticky'), 0o1777);
  // Many one-chunk files in one range of more than 256 KiB: the decode workers write them.
  mkdirSync(join(src, 'many'));
  for (let i = 0; i < MANY; i++) {
    const p = join(src, 'many', `f${String(i).padStart(3, '0')}`);
    writeFileSync(p, pseudoRandom(3000, i + 1));
    chownSync(p, FOREIGN, FOREIGN);
    chmodSync(p, 0o4755);
  }
  for (const [cmd, args] of [
    ['mknod', ['-m', '666', join(src, 'null'), 'c', '1', '3']],
    ['mkfifo', ['-m', '644', join(src, 'fifo')]],
  ] as const) {
    const r = spawnSync(cmd, args);
    if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr.toString()}`);
  }
}

beforeAll(async () => {
  if (!isRoot) return;
  build();
  const storage = openStorage({ type: 'local', path: store, prefix: '' });
  try {
    await snapshotTree(storage, src, { recipients: key.recipients, tmp: tmp.dir });
  } finally {
    await storage.close();
  }
}, 60_000);

interface Run {
  code: number;
  /** Where the source tree landed. */
  root: string;
  withheld: Record<string, number>;
  text: string;
}

/** `vaultik restore … latest <new dir> [options]`, once with --json and once as text. */
async function restore(options: string[]): Promise<Run> {
  const target = join(tmp.dir, `target-${targets++}`);
  const c = captureIO({ VAULTIK_PRIVATE_KEY: key.identity });
  const code = await main(['restore', url, '', 'latest', target, '--json', ...options], c.io);
  expect(c.err()).toBe('');
  const textTarget = join(tmp.dir, `target-${targets++}`);
  const t = captureIO({ VAULTIK_PRIVATE_KEY: key.identity });
  expect(await main(['restore', url, '', 'latest', textTarget, ...options], t.io)).toBe(code);
  return { code, root: join(target, src), withheld: jsonSummary(c.out()).withheld as Record<string, number>, text: t.out() };
}

const mode = (p: string): number => lstatSync(p).mode & 0o7777;
const owner = (p: string): [number, number] => {
  const st = lstatSync(p);
  return [st.uid, st.gid];
};

describe.skipIf(!isRoot)('restore and fetch of what a forged snapshot may hold (as root)', () => {
  it('without options: the device, the FIFO, setuid/setgid bits and foreign owners come back as recorded', async () => {
    const r = await restore([]);
    expect(r.code).toBe(0);
    const dev = lstatSync(join(r.root, 'null'));
    expect(dev.isCharacterDevice()).toBe(true);
    expect(dev.rdev).toBe(lstatSync('/dev/null').rdev);
    expect(lstatSync(join(r.root, 'fifo')).isFIFO()).toBe(true);
    expect(mode(join(r.root, 'suid-root'))).toBe(0o4755);
    expect(mode(join(r.root, 'suid-foreign'))).toBe(0o4755);
    expect(owner(join(r.root, 'suid-foreign'))).toEqual([FOREIGN, FOREIGN]);
    expect(mode(join(r.root, 'sgid-foreign'))).toBe(0o2755);
    expect(owner(join(r.root, 'foreign'))).toEqual([FOREIGN, FOREIGN]);
    expect(mode(join(r.root, 'many/f000'))).toBe(0o4755);
    expect(owner(join(r.root, 'many/f099'))).toEqual([FOREIGN, FOREIGN]);
    expect(r.withheld).toEqual({ devices: 0, specials: 0, setuid: 0, owners: 0 });
    expect(r.text).not.toMatch(/withheld/);
  });

  it('--no-devices skips the device node and nothing else; --no-specials skips the FIFO and nothing else', async () => {
    const d = await restore(['--no-devices']);
    expect(d.code).toBe(0);
    expect(existsSync(join(d.root, 'null'))).toBe(false);
    expect(lstatSync(join(d.root, 'fifo')).isFIFO()).toBe(true);
    expect(mode(join(d.root, 'suid-root'))).toBe(0o4755);
    expect(d.withheld).toEqual({ devices: 1, specials: 0, setuid: 0, owners: 0 });
    expect(d.text).toMatch(/^withheld: +1 device node \(as asked\)$/m);

    const s = await restore(['--no-specials']);
    expect(s.code).toBe(0);
    expect(existsSync(join(s.root, 'fifo'))).toBe(false);
    expect(lstatSync(join(s.root, 'null')).isCharacterDevice()).toBe(true);
    expect(s.withheld).toEqual({ devices: 0, specials: 1, setuid: 0, owners: 0 });
  });

  it('--no-setuid clears setuid and setgid bits (files written here and by the decode workers), keeps the sticky bit and owners', async () => {
    const r = await restore(['--no-setuid']);
    expect(r.code).toBe(0);
    expect(mode(join(r.root, 'suid-root'))).toBe(0o755);
    expect(mode(join(r.root, 'suid-foreign'))).toBe(0o755);
    expect(owner(join(r.root, 'suid-foreign'))).toEqual([FOREIGN, FOREIGN]);
    expect(mode(join(r.root, 'sgid-foreign'))).toBe(0o755);
    for (let i = 0; i < MANY; i++) expect(mode(join(r.root, 'many', `f${String(i).padStart(3, '0')}`))).toBe(0o755);
    expect(mode(join(r.root, 'sticky'))).toBe(0o1777);
    expect(lstatSync(join(r.root, 'null')).isCharacterDevice()).toBe(true);
    expect(r.withheld).toEqual({ devices: 0, specials: 0, setuid: 3 + MANY, owners: 0 });
    expect(r.text).toMatch(/^withheld: +setuid\/setgid bits of 103 entries \(as asked\)$/m);
  });

  it('--no-owner leaves everything to root, and clears a setuid/setgid bit that would now grant root', async () => {
    const r = await restore(['--no-owner']);
    expect(r.code).toBe(0);
    expect(owner(join(r.root, 'foreign'))).toEqual([0, 0]);
    expect(owner(join(r.root, 'suid-foreign'))).toEqual([0, 0]);
    expect(owner(join(r.root, 'many/f050'))).toEqual([0, 0]);
    // Recorded as root's: the bit means what it meant.
    expect(mode(join(r.root, 'suid-root'))).toBe(0o4755);
    // Recorded as another user's: kept, it would make the file setuid root.
    expect(mode(join(r.root, 'suid-foreign'))).toBe(0o755);
    expect(mode(join(r.root, 'sgid-foreign'))).toBe(0o755);
    for (let i = 0; i < MANY; i++) expect(mode(join(r.root, 'many', `f${String(i).padStart(3, '0')}`))).toBe(0o755);
    expect(mode(join(r.root, 'sticky'))).toBe(0o1777);
    expect(r.withheld).toEqual({ devices: 0, specials: 0, setuid: 2 + MANY, owners: 3 + MANY });
  });

  it('all four together, and --overwrite over a tree restored without them: nothing of it survives', async () => {
    const all = ['--no-owner', '--no-devices', '--no-specials', '--no-setuid'];
    const r = await restore(all);
    expect(r.code).toBe(0);
    expect(r.withheld).toEqual({ devices: 1, specials: 1, setuid: 3 + MANY, owners: 3 + MANY });
    expect(r.text).toMatch(/^withheld: +1 device node, 1 special file, setuid\/setgid bits of 103 entries, the owner of 103 entries \(as asked\)$/m);

    // The same target, restored first as recorded, then again with --overwrite and the options:
    // files found up to date get the withheld metadata too.
    const target = join(tmp.dir, `target-${targets++}`);
    const env = { VAULTIK_PRIVATE_KEY: key.identity };
    expect(await main(['restore', url, '', 'latest', target], captureIO(env).io)).toBe(0);
    const c = captureIO(env);
    expect(await main(['restore', url, '', 'latest', target, '--overwrite', '--no-setuid', '--json'], c.io)).toBe(0);
    const root = join(target, src);
    expect(mode(join(root, 'suid-root'))).toBe(0o755);
    expect(mode(join(root, 'many/f007'))).toBe(0o755);
  });

  it('fetch takes the same options: one device path is skipped (exit 0), a subtree loses owners and setuid bits', async () => {
    const env = { VAULTIK_PRIVATE_KEY: key.identity };
    const dev = join(tmp.dir, 'fetched-null');
    const c = captureIO(env);
    expect(await main(['fetch', url, '', 'latest', join(src, 'null'), dev, '--no-devices', '--json'], c.io)).toBe(0);
    expect(existsSync(dev)).toBe(false);
    expect(jsonSummary(c.out()).withheld).toEqual({ devices: 1, specials: 0, setuid: 0, owners: 0 });

    const many = join(tmp.dir, 'fetched-many');
    const m = captureIO(env);
    expect(await main(['fetch', url, '', 'latest', join(src, 'many'), many, '--no-owner', '--no-setuid'], m.io)).toBe(0);
    expect(m.out()).toMatch(/^withheld: +setuid\/setgid bits of 100 entries, the owner of 100 entries \(as asked\)$/m);
    expect(mode(join(many, 'f000'))).toBe(0o755);
    expect(owner(join(many, 'f000'))).toEqual([0, 0]);
  });
});

describe('SafetyPolicy (any user: the rules on their own)', () => {
  const entry = (type: Entry['type'], mode: number, uid = 0, gid = uid): Entry => ({ path: Buffer.from('p'), type, mode, uid, gid, mtimeNs: 0n, size: 0 });
  const me = { uid: 1000, gid: 100 };

  it('--no-owner clears a setuid bit recorded for another user and a setgid bit recorded for another group, nothing else', () => {
    const p = new SafetyPolicy({ noOwner: true }, me);
    expect(p.apply(entry('file', 0o6755, 1000, 100)).mode).toBe(0o6755);
    expect(p.apply(entry('file', 0o6755, 0, 100)).mode).toBe(0o2755);
    expect(p.apply(entry('file', 0o6755, 1000, 0)).mode).toBe(0o4755);
    expect(p.apply(entry('dir', 0o3777, 0, 0)).mode).toBe(0o1777);
    const same = entry('file', 0o644, 0, 0);
    expect(p.apply(same)).toBe(same);
    for (const e of [entry('file', 0o6755, 1000, 100), entry('file', 0o4755, 0, 100), entry('file', 0o644, 1000, 5)]) p.count(e);
    expect(p.withheld).toEqual({ devices: 0, specials: 0, setuid: 1, owners: 2 });
  });

  it('--no-setuid clears both bits of any entry and keeps the sticky bit; without options nothing changes', () => {
    const p = new SafetyPolicy({ noSetuid: true }, me);
    expect(p.apply(entry('file', 0o7755)).mode).toBe(0o1755);
    expect(p.apply(entry('dir', 0o2775)).mode).toBe(0o775);
    const none = new SafetyPolicy({}, me);
    const e = entry('file', 0o7755, 5, 5);
    expect(none.apply(e)).toBe(e);
    none.count(e);
    expect(none.withheld).toEqual({ devices: 0, specials: 0, setuid: 0, owners: 0 });
  });

  it('--no-devices skips character and block devices; --no-specials FIFOs and sockets', () => {
    const d = new SafetyPolicy({ noDevices: true }, me);
    const s = new SafetyPolicy({ noSpecials: true }, me);
    expect(['chardev', 'blockdev', 'fifo', 'socket', 'file', 'dir', 'symlink'].map((t) => d.skips(entry(t as Entry['type'], 0o644)) ?? '-')).toEqual(['devices', 'devices', '-', '-', '-', '-', '-']);
    expect(['chardev', 'blockdev', 'fifo', 'socket', 'file', 'dir', 'symlink'].map((t) => s.skips(entry(t as Entry['type'], 0o644)) ?? '-')).toEqual(['-', '-', 'specials', 'specials', '-', '-', '-']);
  });
});
