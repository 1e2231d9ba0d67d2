/**
 * Temp directories for decrypted metadata (plaintext names), which must not outlive the process.
 *
 * A `finally` or an exit handler does not run on SIGKILL (or the OOM killer), and unlinking the
 * file once SQLite has it open still leaves it on disk while it is being decrypted, and needs the
 * path later (ATTACH, reopening). So the cleanup is done by someone who survives the death: a
 * small watchdog process (detached, its own session, so a terminal's signals do not reach it)
 * holds the read end of a pipe from this process. The kernel closes that pipe when this process
 * dies, however it dies; the watchdog then deletes every directory of this process's pid under
 * the temp directories it was told about, and exits. A temp directory is registered (the write
 * completed into the pipe) before anything is created in it, so nothing is missed.
 *
 * As a backstop (the watchdog itself killed, a power cut with a disk-backed /tmp), the first use
 * of a temp directory also deletes the directories, owned by this user, of pids that are dead.
 * Directory names carry the pid: `vaultik-snapshot-<pid>-XXXXXX`, `vaultik-shard-<pid>-XXXXXX`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

const NAME = /^vaultik-(?:snapshot|shard)-(\d+)-/;

// Runs as `node -e` in the watchdog: argv[1] is the pid, stdin brings one temp dir a line.
const WATCHDOG = `
const fs = require('node:fs'), path = require('node:path');
const pid = process.argv[1], dirs = new Set();
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => { buf += d; const lines = buf.split('\\n'); buf = lines.pop(); for (const l of lines) if (l) dirs.add(l); });
process.stdin.on('close', () => {
  for (const dir of dirs) {
    let names = [];
    try { names = fs.readdirSync(dir); } catch {}
    for (const n of names) if (n.startsWith('vaultik-snapshot-' + pid + '-') || n.startsWith('vaultik-shard-' + pid + '-')) {
      try { fs.rmSync(path.join(dir, n), { recursive: true, force: true }); } catch {}
    }
  }
  process.exit(0);
});
process.stdin.resume();
`;

let watchdog: ChildProcess | undefined;
const registered = new Set<string>();

function startWatchdog(): ChildProcess {
  const child = spawn(process.execPath, ['-e', WATCHDOG, String(process.pid)], { detached: true, stdio: ['pipe', 'ignore', 'ignore'], env: {} });
  child.on('error', () => undefined);
  child.stdin!.on('error', () => undefined);
  // Neither the process nor the pipe keeps this process alive.
  child.unref();
  (child.stdin as unknown as { unref?: () => void }).unref?.();
  return child;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** Deletes the metadata directories of dead processes of this user (a reused pid keeps its). */
async function sweep(tmpDir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(tmpDir);
  } catch {
    return;
  }
  const uid = process.getuid?.();
  for (const n of names) {
    const pid = Number(NAME.exec(n)?.[1] ?? NaN);
    if (!Number.isSafeInteger(pid) || pid === process.pid || alive(pid)) continue;
    const p = join(tmpDir, n);
    try {
      if (uid !== undefined && (await stat(p)).uid !== uid) continue;
      await rm(p, { recursive: true, force: true });
    } catch {
      // gone already, or not ours to delete
    }
  }
}

async function register(tmpDir: string): Promise<void> {
  if (registered.has(tmpDir)) return;
  registered.add(tmpDir);
  await sweep(tmpDir);
  try {
    watchdog ??= startWatchdog();
    const stdin = watchdog.stdin!;
    // Resolved once the line is in the pipe: the watchdog reads it even after this process dies.
    await new Promise<void>((resolve) => stdin.write(`${tmpDir}\n`, () => resolve()));
  } catch {
    // No watchdog (cannot spawn): the sweep of the next run remains.
  }
}

/**
 * A fresh 0700 directory `vaultik-<kind>-<pid>-XXXXXX` under `tmpDir`, deleted by a watchdog if
 * this process dies before deleting it itself (see the top of this file).
 */
export async function makeMetadataDir(tmpDir: string, kind: 'snapshot' | 'shard'): Promise<string> {
  await register(tmpDir);
  return mkdtemp(join(tmpDir, `vaultik-${kind}-${process.pid}-`));
}
