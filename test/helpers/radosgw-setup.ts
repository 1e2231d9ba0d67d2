/**
 * vitest global setup: starts radosgw (test/helpers/radosgw.ts) once for the whole run, in the
 * background, and provides its endpoint and credentials to the test files. Writes `<dir>/state`
 * ('ready' or the error) when the start settles; files wait for it, and fail (not skip) when it
 * failed. VAULTIK_RADOSGW_TIMING=1 prints how long the start took.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import type { RadosgwInfo } from './radosgw.js';
import { makeTempDir } from './tmp.js';

const RADOSGW_PACKAGES = 'radosgw ceph-mon ceph-osd';
const BINARIES = ['ceph-mon', 'ceph-osd', 'radosgw', 'radosgw-admin', 'monmaptool', 'ceph'];
const execFileAsync = promisify(execFile);
const STARTUP_TIMEOUT_MS = 90_000;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const missing = radosgwMissing();
  if (missing) {
    if (process.env.VAULTIK_REQUIRE_RADOSGW === '1') throw new Error(`VAULTIK_REQUIRE_RADOSGW=1 but ${missing}`);
    console.warn(`vaultik tests: ${missing}; the radosgw cases are skipped`);
    project.provide('radosgw', { missing });
    return async () => undefined;
  }
  const tmp = makeTempDir('vaultik-radosgw-');
  const cluster = await launchRadosgw(tmp.dir);
  const began = Date.now();
  const settled = cluster.started.then(
    () => writeFileSync(`${tmp.dir}/state`, 'ready'),
    (err: unknown) => writeFileSync(`${tmp.dir}/state`, err instanceof Error ? err.message : String(err)),
  );
  if (process.env.VAULTIK_RADOSGW_TIMING === '1') void settled.then(() => console.warn(`radosgw ready after ${Date.now() - began} ms`));
  project.provide('radosgw', cluster.info);
  return async () => {
    await cluster.stop();
    await settled;
    if (existsSync(join(tmp.dir, 'exited'))) {
      console.warn(`radosgw: a ceph daemon died during the run; logs kept in ${tmp.dir}/log:\n${readFileSync(join(tmp.dir, 'exited'), 'utf8')}`);
      return;
    }
    tmp.cleanup();
  };
}

/** The binaries radosgw needs that are not on the PATH, as a sentence; undefined when all are. */
function radosgwMissing(): string | undefined {
  const absent = BINARIES.filter((b) => spawnSync('sh', ['-c', `command -v ${b}`], { stdio: 'ignore' }).status !== 0);
  return absent.length === 0 ? undefined : `radosgw not installed (no ${absent.join(', ')}): apt-get install ${RADOSGW_PACKAGES}`;
}

/** The kernel's ephemeral port range (what `listen(0)` and outgoing connections take). */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low! > 0 && high! >= low!) return [low!, high!];
  } catch {
    // not Linux: the IANA range
  }
  return [49152, 65535];
}

/**
 * A port free on 127.0.0.1 right now, outside the ephemeral range. A port from listen(0) would
 * be ephemeral: in the seconds before ceph binds it, another test's server (listen(0)) or an
 * outgoing connection can take it, rgw then fails to bind, and the readiness check would be
 * answered by the other server.
 */
async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  const floor = Math.min(20_000, low - 2_000);
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = floor + Math.floor(Math.random() * (low - floor));
    const srv = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      await new Promise((resolve) => srv.close(resolve));
      return port;
    }
  }
  throw new Error(`no free port in ${floor}-${low - 1} on 127.0.0.1`);
}

interface RadosgwCluster {
  info: Required<Omit<RadosgwInfo, 'missing'>>;
  /** Resolves once the user exists and rgw answers; rejects with the failing step. */
  started: Promise<void>;
  stop(): Promise<void>;
}

/**
 * Starts the cluster in `dir` (which must exist and be empty). Returns at once with the endpoint
 * and credentials; `started` settles when it is usable.
 */
async function launchRadosgw(dir: string): Promise<RadosgwCluster> {
  const [monPort, rgwPort] = [await freePort(), await freePort()];
  const fsid = randomUUID();
  const info = {
    dir,
    endpoint: `http://127.0.0.1:${rgwPort}`,
    accessKeyId: `VAULTIK${randomBytes(6).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(20).toString('hex'),
  };
  for (const d of ['run', 'log', 'mon', 'osd']) mkdirSync(join(dir, d));
  const conf = join(dir, 'ceph.conf');
  // auth none needs every messenger mode at crc, else rgw loops on auth error -13.
  writeFileSync(
    conf,
    `[global]
fsid = ${fsid}
mon_host = v2:127.0.0.1:${monPort}
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_cluster_mode = crc
ms_service_mode = crc
ms_client_mode = crc
ms_mon_cluster_mode = crc
ms_mon_service_mode = crc
ms_mon_client_mode = crc
mon_allow_pool_size_one = true
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
run_dir = ${dir}/run
log_file = ${dir}/log/$name.log
admin_socket = ${dir}/run/$name.asok
pid_file = ${dir}/run/$name.pid
keyring = ${dir}/keyring
[mon.a]
mon_data = ${dir}/mon
public_addr = 127.0.0.1:${monPort}
[osd.0]
osd_objectstore = memstore
osd_data = ${dir}/osd
memstore_device_bytes = 4294967296
[client.rgw]
rgw_frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw_data = ${dir}/rgw
# Tests upload parts of 100 KiB (S3 and rgw require 5 MiB).
rgw_multipart_min_part_size = 65536
`,
  );
  const children: ChildProcess[] = [];
  // stop() may come before the start is done (a run of one file that needs no radosgw).
  const stopping = new AbortController();
  const daemon = (cmd: string, args: string[]): void => {
    stopping.signal.throwIfAborted();
    const child = spawn(cmd, ['-f', '-c', conf, ...args], { stdio: 'ignore' });
    child.on('error', () => undefined);
    // A daemon that dies before stop() says so where the tests look (radosgw.ts, `exited`).
    child.on('exit', (code, signal) => {
      if (!stopping.signal.aborted) appendFileSync(join(dir, 'exited'), `${cmd} ${args.join(' ')} exited (code ${code}, signal ${signal}) at ${new Date().toISOString()}\n`);
    });
    children.push(child);
  };
  // Asynchronous: the global setup shares its event loop with vitest's scheduling.
  const run = async (cmd: string, args: string[]): Promise<void> => {
    try {
      await execFileAsync(cmd, args, { timeout: 30_000, signal: stopping.signal });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? '';
      throw new Error(`${cmd} ${args.join(' ')} failed: ${stderr || (err as Error).message}`);
    }
  };
  const started = (async () => {
    await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, join(dir, 'monmap')]);
    await run('ceph-mon', ['-c', conf, '-i', 'a', '--mkfs', '--monmap', join(dir, 'monmap')]);
    daemon('ceph-mon', ['-i', 'a']);
    await run('ceph', ['-c', conf, '--connect-timeout', '20', 'osd', 'create']);
    await run('ceph-osd', ['-c', conf, '-i', '0', '--mkfs']);
    daemon('ceph-osd', ['-i', '0']);
    daemon('radosgw', ['-n', 'client.rgw']);
    await run('radosgw-admin', ['-c', conf, 'user', 'create', '--uid=vaultik', '--display-name=vaultik', `--access-key=${info.accessKeyId}`, `--secret-key=${info.secretAccessKey}`]);
    const deadline = Date.now() + STARTUP_TIMEOUT_MS;
    for (;;) {
      // rgw's answer, not any server's: S3 sets x-amz-request-id.
      const up = await fetch(info.endpoint).then(
        (r) => r.status < 500 && r.headers.has('x-amz-request-id'),
        () => false,
      );
      if (up) return;
      stopping.signal.throwIfAborted();
      if (Date.now() > deadline) throw new Error(`rgw never answered on ${info.endpoint} (logs in ${dir}/log)`);
      await sleep(200);
    }
  })();
  return {
    info,
    started,
    // Memstore keeps nothing worth a clean shutdown; the OSD ignores SIGTERM while it waits for
    // the mon anyway.
    stop: async () => {
      stopping.abort(new Error('stopped'));
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              c.once('exit', () => resolve());
              c.kill('SIGKILL');
            }),
        ),
      );
    },
  };
}
