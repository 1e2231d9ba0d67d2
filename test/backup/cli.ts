/**
 * Running the real CLI (the package's `vaultik` executable, dist/cli/bin.js) from tests: builds dist/ first when any source
 * file is newer than its compiled output, and spawns with an environment scrubbed of every
 * VAULTIK_* variable (no private key can leak in) and of the AWS SDK's warning switch (so the
 * tests see what a user's shell would print).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
/** The file package.json's `bin` names: what `npm install -g` links onto the PATH. */
export const MAIN = join(REPO, (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { bin: { vaultik: string } }).bin.vaultik);

function sourcesNewerThanDist(dir: string): boolean {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = statSync(path);
    if (st.isDirectory()) {
      if (sourcesNewerThanDist(path)) return true;
    } else if (name.endsWith('.ts')) {
      const out = join(REPO, 'dist', relative(join(REPO, 'src'), path)).replace(/\.ts$/, '.js');
      if (!existsSync(out) || statSync(out).mtimeMs < st.mtimeMs) return true;
    }
  }
  return false;
}

/**
 * Writes a backup config at `path`: one source, a local store (prefix `pc`), the state cache at
 * `indexPath`, host `h`.
 */
export function writeBackupConfig(path: string, o: { src: string; store: string; recipient: string; indexPath: string }): string {
  const lines = [`source_dirs: [${JSON.stringify(o.src)}]`, `age_recipient: ${o.recipient}`, `local: {path: ${JSON.stringify(o.store)}, prefix: pc}`, `index_path: ${JSON.stringify(o.indexPath)}`, 'hostname: h'];
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

/** Compiles src/ to dist/ unless it is up to date. */
export function ensureBuilt(): void {
  if (existsSync(MAIN) && !sourcesNewerThanDist(join(REPO, 'src'))) return;
  try {
    execFileSync(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(REPO, 'tsconfig.build.json')], { stdio: 'pipe' });
  } catch (err) {
    // tsc still emits on type errors elsewhere in the tree; only a missing entry point is fatal.
    if (!existsSync(MAIN)) throw err;
  }
}

/** process.env without VAULTIK_* and the SDK's warning switch, plus `extra`. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('VAULTIK_') || k === 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED' || k === 'NODE_OPTIONS') continue;
    if (k.startsWith('AWS_')) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI (`nodeArgs` go to node, before the script); `done` resolves when it exits. */
export function startCli(args: string[], env: NodeJS.ProcessEnv = cleanEnv(), nodeArgs: string[] = []): { child: ChildProcess; done: Promise<CliResult> } {
  return startNode([...nodeArgs, MAIN, ...args], env);
}

/**
 * Starts this Node with `args` (flags, a script, its arguments), as the user `ids` when given;
 * `done` resolves when it exits.
 */
export function startNode(args: string[], env: NodeJS.ProcessEnv = cleanEnv(), ids: { uid?: number; gid?: number } = {}): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, args, { ...ids, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<CliResult>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

/** Runs the CLI to completion. */
export function runCli(args: string[], env?: NodeJS.ProcessEnv, nodeArgs?: string[]): Promise<CliResult> {
  return startCli(args, env, nodeArgs).done;
}
