/**
 * The host side of signing: the `signing_key` and `allowed_signers` config keys, a key that
 * cannot sign failing the backup (exit 2) and the daemon's start before anything is uploaded,
 * and a signed backup to the real S3 server (s3rver) checked by the commands that take the
 * config's `allowed_signers`.
 */
import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runBackup } from '../../src/backup/index.js';
import { ConfigError, parseConfig, type Config } from '../../src/config/index.js';
import { Daemon } from '../../src/daemon/index.js';
import { generateKeyPair } from '../../src/crypto/index.js';
import { ExitCode, VaultikError } from '../../src/errors.js';
import { openStorage } from '../../src/storage/index.js';
import { makeWorkspace, type Workspace } from '../backup/helpers.js';
import { jsonLines, runMain } from '../helpers/io.js';
import { startS3rver, type S3rverHandle } from '../helpers/s3rver.js';
import { makeTempDir } from '../helpers/tmp.js';
import { sshKeygen } from './kit.js';

const R = generateKeyPair().recipient;
const base = (extra: string): string => `source_dirs: [/etc]\nage_recipient: ${R}\nlocal: {path: /srv/b}\nhostname: h\n${extra}`;
const parse = (text: string): Config => parseConfig(text, '/etc/vaultik/config.yaml', { env: {}, uid: 1000, homedir: '/home/t' });

function errorsOf(text: string): string {
  try {
    parse(text);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('expected a ConfigError');
}

describe('config: signing_key and allowed_signers', () => {
  it('are optional, and relative paths are relative to the config file', () => {
    const none = parse(base(''));
    expect(none.signingKey).toBeUndefined();
    expect(none.allowedSigners).toBeUndefined();
    const c = parse(base('signing_key: keys/host_ed25519\nallowed_signers: /etc/ssh/vaultik_signers\n'));
    expect(c.signingKey).toBe('/etc/vaultik/keys/host_ed25519');
    expect(c.allowedSigners).toBe('/etc/ssh/vaultik_signers');
  });

  it('name the key and line of a bad value', () => {
    expect(errorsOf(base('signing_key: ~/.ssh/id_ed25519\n'))).toContain('config.yaml:5: signing_key: "~/.ssh/id_ed25519": "~" is not expanded');
    expect(errorsOf(base('\nallowed_signers: [a, b]\n'))).toMatch(/config\.yaml:6: allowed_signers: expected the path of an allowed_signers file/);
    expect(errorsOf(base('signing_key: ""\n'))).toContain('config.yaml:5: signing_key: expected the path of an SSH Ed25519 private key, got an empty string');
  });
});

describe('a signing key that cannot sign', () => {
  let ws: Workspace;
  beforeAll(() => {
    ws = makeWorkspace();
    writeFileSync(join(ws.src, 'a.txt'), 'x\n');
  });
  afterAll(() => ws.cleanup());

  it('fails the backup with exit 2 before anything is uploaded, naming the config key, never the key', async () => {
    const readable = sshKeygen(ws.root);
    chmodSync(readable, 0o644); // others may read it: refused, as ssh-keygen refuses it
    for (const [path, why] of [
      [join(ws.root, 'missing_key'), 'ENOENT'],
      [readable, 'others'],
      [`${readable}.pub`, ''],
    ] as const) {
      const config = { ...ws.config(), signingKey: path };
      const storage = openStorage(config.storage);
      const err = await runBackup(config, { storage, workers: 1 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      await storage.close();
      expect(err).toBeInstanceOf(VaultikError);
      expect((err as VaultikError).exitCode).toBe(ExitCode.USAGE);
      expect((err as Error).message).toContain(`signing_key: `);
      expect((err as Error).message).toContain(why);
      expect((err as Error).message).not.toContain(readFileSync(readable, 'utf8').split('\n')[1]!.slice(0, 20));
      expect(readdirSync(ws.store)).toEqual([]);
    }
    ws.writeConfig(`signing_key: ${join(ws.root, 'missing_key')}`);
    const cli = await runMain(['backup', ws.configPath]);
    expect(cli.code).toBe(ExitCode.USAGE);
    expect(cli.stderr).toContain('signing_key: cannot read SSH private key');
    expect(readdirSync(ws.store)).toEqual([]);
  });

  it('stops the daemon at start (exit 2), before it watches or backs up', async () => {
    const events: string[] = [];
    const config = { ...ws.config(), signingKey: join(ws.root, 'missing_key') };
    const daemon = new Daemon({
      config,
      reloadConfig: () => config,
      openStorage: (c) => openStorage(c.storage),
      signal: new AbortController().signal,
      onEvent: (e) => events.push(e.type),
      workers: 1,
    });
    const err = await daemon.run().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as VaultikError).exitCode).toBe(ExitCode.USAGE);
    expect(events).toEqual([]);
    expect(readdirSync(ws.store)).toEqual([]);
  });
});

describe('signed backups on S3 (s3rver), checked through the config', () => {
  let s3: S3rverHandle;
  const tmp = makeTempDir('vaultik-sign-s3-');
  let cfg: string;
  let identity: string;
  const src = join(tmp.dir, 'src');

  beforeAll(async () => {
    s3 = await startS3rver();
    mkdirSync(src);
    writeFileSync(join(src, 'a.txt'), 'over s3\n');
    const key = sshKeygen(tmp.dir);
    const kp = generateKeyPair();
    identity = kp.identity;
    writeFileSync(join(tmp.dir, 'allowed_signers'), `box ${readFileSync(`${key}.pub`, 'utf8')}`);
    cfg = join(tmp.dir, 'vaultik.yaml');
    const write = (extra: string): void =>
      writeFileSync(
        cfg,
        [
          `source_dirs: [${src}]`,
          `age_recipient: ${kp.recipient}`,
          `s3: {endpoint: ${s3.endpoint}, bucket: ${s3.bucket}, prefix: box, region: us-east-1, access_key_id: S3RVER, secret_access_key: S3RVER}`,
          `index_path: ${join(tmp.dir, 'cache.sqlite')}`,
          'chunk_size: 64KiB',
          'blob_size_limit: 1MiB',
          'hostname: box',
          'allowed_signers: allowed_signers',
          extra,
        ].join('\n') + '\n',
      );
    write(`signing_key: ${key}`);
    expect((await runMain(['backup', cfg])).code).toBe(ExitCode.OK);
    // A newer snapshot without signing_key: what the reader must not take for "latest".
    write('');
    writeFileSync(join(src, 'a.txt'), 'unsigned\n');
    expect((await runMain(['backup', cfg])).code).toBe(ExitCode.OK);
  }, 60_000);

  afterAll(async () => {
    await s3?.stop();
    tmp.cleanup();
  });

  it('verify, snapshots and restore --config use allowed_signers: the signed snapshot passes, the unsigned one does not', async () => {
    const v = await runMain(['verify', '--config', cfg]);
    expect(v.code).toBe(ExitCode.DATA);
    expect(v.stdout).toContain('signatures: 1 of 2 snapshot(s) validly signed');
    expect(v.stderr).toMatch(/snapshot box-\S+: unsigned/);
    const list = jsonLines((await runMain(['snapshots', '--config', cfg, '--json'])).stdout) as unknown as { id: string; signature: string }[];
    expect(list.map((s) => s.signature)).toEqual(['valid', 'unsigned']);
    const target = join(tmp.dir, 'restored');
    const r = await runMain(['restore', '--config', cfg, 'latest', target], { VAULTIK_PRIVATE_KEY: identity });
    expect(r.code, r.stderr).toBe(ExitCode.OK);
    expect(r.stdout).toContain(`restored snapshot ${list[0]!.id}`);
    expect(readFileSync(join(target, src, 'a.txt'), 'utf8')).toBe('over s3\n');
    const refused = await runMain(['restore', '--config', cfg, list[1]!.id, join(tmp.dir, 'r2')], { VAULTIK_PRIVATE_KEY: identity });
    expect(refused.code).toBe(ExitCode.DATA);
    expect(refused.stderr).toContain('is refused: unsigned');
  });

  it('--signers with a file that lists no key is a usage error', async () => {
    const empty = join(tmp.dir, 'empty_signers');
    writeFileSync(empty, '# nobody\n');
    const r = await runMain(['snapshots', '--config', cfg, '--signers', empty]);
    expect(r.code).toBe(ExitCode.USAGE);
    expect(r.stderr).toContain('lists no key');
  });
});
