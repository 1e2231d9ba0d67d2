/**
 * `vaultik completion bash|zsh|fish`: prints the shell completion script (src/cli/completion.ts),
 * built from the same option specs as `--help`. Installing it is one line, given in each
 * script's header comment and in README.md.
 */
import { ExitCode, UsageError } from '../../errors.js';
import { expectPositionals, parseCommandArgs, type CommandIO, type CommandOptions } from '../command.js';
import { SHELLS, completionScript, type CompletionCommand, type Shell } from '../completion.js';
import { commands } from './index.js';

const USAGE = 'vaultik completion bash|zsh|fish';

const OPTIONS = {} as const satisfies CommandOptions;

export const completionCommand: CompletionCommand = {
  name: 'completion',
  summary: 'print the shell completion script for bash, zsh or fish',
  usage: USAGE,
  options: OPTIONS,
  positionalChoices: SHELLS,
  run(argv: string[], io: CommandIO): Promise<number> {
    const { positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
    expectPositionals(positionals, 1, 1, USAGE);
    const shell = positionals[0]!;
    if (!(SHELLS as readonly string[]).includes(shell)) throw new UsageError(`unknown shell '${shell}' (expected ${SHELLS.join(', ')})\n\nusage: ${USAGE}`);
    io.stdout.write(completionScript(shell as Shell, commands));
    return Promise.resolve(ExitCode.OK);
  },
};
