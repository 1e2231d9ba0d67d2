/**
 * The shape of a CLI command. The argv layer (main.ts) only finds the command and calls `run`;
 * each command parses its own arguments (with `parseCommandArgs`) and calls plain functions from
 * the core modules, which never import the CLI.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';

/** What a command may touch of the process: injectable so commands are testable without a shell. */
export interface CommandIO {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  /** True when stderr is an interactive terminal (live progress allowed). */
  isTTY: boolean;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}

/**
 * One option of a command: parseArgs's fields plus the text `--help`, the man page and shell
 * completion are built from (src/cli/help.ts), so the three never disagree with the parser.
 */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** What the value is, in help text (`FILE`, `N`, `24h`); string options only. */
  arg?: string;
  /** One line: what the option does. */
  help: string;
  /** The values a shell may complete (`keep`, `forget`); else files complete when arg is FILE/DIR. */
  choices?: readonly string[];
}

export type CommandOptions = Readonly<Record<string, OptionSpec>>;

export interface Command {
  name: string;
  /** One line for `vaultik --help`. */
  summary: string;
  /** Usage text for `vaultik <name> --help`. */
  usage: string;
  /** Every option `run` accepts: `--help`, the man page and completion list exactly these. */
  options: CommandOptions;
  /** Returns the process exit code. Throws VaultikError for failures. */
  run(argv: string[], io: CommandIO): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** The parseArgs part of each option (parseArgs would ignore the rest; it gets only its own). */
function parserOptions(options: CommandOptions): Options {
  return Object.fromEntries(
    Object.entries(options).map(([name, o]) => [name, { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) }]),
  );
}

/**
 * parseArgs with vaultik's conventions: strict, positionals allowed, errors become UsageError
 * (exit code 2) that mention the command's usage.
 */
export function parseCommandArgs<O extends CommandOptions>(
  argv: string[],
  options: O,
  usage: string,
): { values: ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>['values']; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({ args: argv, options: parserOptions(options), allowPositionals: true, strict: true });
    return { values: values as ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>['values'], positionals };
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\nusage: ${usage}`);
  }
}

/** Throws a UsageError unless `positionals` has between min and max entries. */
export function expectPositionals(positionals: string[], min: number, max: number, usage: string): void {
  if (positionals.length < min || positionals.length > max) {
    throw new UsageError(`expected ${min === max ? min : `${min} to ${max}`} arguments, got ${positionals.length}\n\nusage: ${usage}`);
  }
}
