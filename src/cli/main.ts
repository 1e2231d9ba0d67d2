#!/usr/bin/env node
/**
 * vaultik's entry point: finds the command, wires signals and maps errors to exit codes.
 * Nothing here knows how a command works.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { commands } from './commands/index.js';
import { setHeapFlags } from './heapFlags.js';
import { commandHelp } from './help.js';
import type { CommandIO } from './command.js';
import { VaultikError, ExitCode, errorMessage } from '../errors.js';

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function helpText(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    `vaultik ${version()} — encrypted, deduplicating backups with no secret on the source`,
    '',
    'usage: vaultik <command> [arguments]',
    '',
    'commands:',
    ...lines,
    '',
    'Run `vaultik <command> --help` for a command\'s arguments and options; `man vaultik` has them all. Exit codes are listed in README.md.',
  ].join('\n');
}

/** Runs vaultik with `argv` (without node and the script) and returns the exit code. */
export async function main(argv: string[], io: CommandIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || (name === 'help' && rest.length === 0)) {
    io.stdout.write(helpText() + '\n');
    return name === undefined ? ExitCode.USAGE : ExitCode.OK;
  }
  if (name === '--version' || name === '-V') {
    io.stdout.write(version() + '\n');
    return ExitCode.OK;
  }
  if (name === 'help' && rest.length > 0) return main([rest[0]!, '--help'], io);
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.stderr.write(`vaultik: unknown command '${name}'\n\n${helpText()}\n`);
    return ExitCode.USAGE;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout.write(`${commandHelp(command)}\n`);
    return ExitCode.OK;
  }
  try {
    return await command.run(rest, io);
  } catch (caught) {
    // An abort often surfaces as a stream's generic AbortError ("The operation was aborted");
    // the signal's reason says what happened (interrupted by SIGTERM: exit 130).
    const err = !(caught instanceof VaultikError) && io.signal.aborted && io.signal.reason instanceof VaultikError ? io.signal.reason : caught;
    if (err instanceof VaultikError) {
      io.stderr.write(`vaultik ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    io.stderr.write(`vaultik ${name}: unexpected error: ${errorMessage(err)}\n`);
    if (err instanceof Error && err.stack && io.env.VAULTIK_DEBUG) io.stderr.write(err.stack + '\n');
    return ExitCode.FAILURE;
  }
}

function isEntryPoint(): boolean {
  // Runs as a program (bin link or `node dist/cli/main.js`), not when imported by tests.
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/**
 * Runs the CLI as the process: process.argv, stdio, signals, exit code. bin.ts calls it after
 * setting V8's heap flags; `node dist/cli/main.js` runs it too (with the flags set a bit late).
 */
export function runAsProgram(): void {
  setHeapFlags();
  // The AWS SDK prints a "Node.js version support" notice on Node < 22 for every command that
  // creates an S3 client; it is noise for users (and would break `backup --cron` silence).
  // A user's explicit setting wins.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  // A closed pipe (`vaultik ls … | head`) is not an error worth a stack trace.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(process.exitCode ?? ExitCode.OK);
      throw err;
    });
  }
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupts++;
    if (interrupts > 1) process.exit(ExitCode.INTERRUPTED);
    controller.abort(new VaultikError(`interrupted by ${sig}`, ExitCode.INTERRUPTED));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const io: CommandIO = {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    isTTY: Boolean(process.stderr.isTTY),
    signal: controller.signal,
  };
  main(process.argv.slice(2), io).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`vaultik: ${errorMessage(err)}\n`);
      process.exitCode = ExitCode.FAILURE;
    },
  );
}

if (isEntryPoint()) runAsProgram();
