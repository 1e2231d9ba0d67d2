/**
 * Running the CLI in this process: a CommandIO whose stdout and stderr are collected as text
 * (not a terminal, never aborted). The tests that spawn the CLI as a child process use
 * test/backup/cli.ts (the built package) or test/restore/helpers.ts `runCli` (the sources).
 */
import { PassThrough } from 'node:stream';
import type { CommandIO } from '../../src/cli/command.js';

export interface CapturedIO {
  io: CommandIO;
  /** Everything written to stdout so far. */
  out(): string;
  /** Everything written to stderr so far. */
  err(): string;
}

/**
 * @param env the command's environment (VAULTIK_PRIVATE_KEY, AWS_*); nothing is inherited.
 * @param stdoutEncoding 'latin1' keeps non-UTF-8 bytes (file names) one character per byte.
 */
export function captureIO(env: NodeJS.ProcessEnv = {}, stdoutEncoding: BufferEncoding = 'utf8'): CapturedIO {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let o = '';
  let e = '';
  stdout.on('data', (d: Buffer) => (o += d.toString(stdoutEncoding)));
  stderr.on('data', (d: Buffer) => (e += d.toString()));
  return { io: { stdout, stderr, env, isTTY: false, signal: new AbortController().signal }, out: () => o, err: () => e };
}

/** Runs `vaultik <argv>` through the CLI's main and returns its exit code and output. */
export async function runMain(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  // Imported when first used: main loads every command (the S3 SDK too).
  const { main } = await import('../../src/cli/main.js');
  const c = captureIO(env);
  const code = await main(argv, c.io);
  return { code, stdout: c.out(), stderr: c.err() };
}

/** --json output (JSON Lines): every line parsed on its own; each carries its `type`. */
export function jsonLines(stdout: string): { type: string; [k: string]: unknown }[] {
  return stdout
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { type: string; [k: string]: unknown });
}
