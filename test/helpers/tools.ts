/**
 * Test helpers for external command-line tools (age, zstd, sqlite3). A test that needs a tool
 * calls requireTool(): it throws when the tool is missing, so CI (which installs them) can never
 * silently skip an interop check.
 */
import { execFileSync, spawnSync } from 'node:child_process';

export function hasTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/** @throws Error when `name` is not on the PATH. */
export function requireTool(name: string): void {
  if (!hasTool(name)) {
    throw new Error(`this test needs the '${name}' command-line tool (apt-get install ${name}); .ci/run installs it`);
  }
}

/** Runs a tool with stdin, returns stdout; throws with stderr on a non-zero exit. */
export function runTool(cmd: string, args: string[], input?: Buffer | string): Buffer {
  requireTool(cmd);
  return execFileSync(cmd, args, { input, maxBuffer: 1 << 30, stdio: ['pipe', 'pipe', 'pipe'] });
}
