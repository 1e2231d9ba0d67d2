/**
 * `vaultik keygen [-o FILE]`: writes a new age identity file like `age-keygen` (comments with the
 * creation time and public key, then the secret key) and prints the public key on stderr.
 * `vaultik keygen -y FILE` prints the recipients of an identity file, like `age-keygen -y`.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { generateKeyPair, parseIdentityFile } from '../../crypto/index.js';
import { ExitCode, UsageError, VaultikError } from '../../errors.js';
import { expectPositionals, parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';

const OPTIONS = {
  output: { type: 'string', short: 'o', arg: 'FILE', help: 'write the identity to FILE (mode 0600; never overwritten) instead of stdout' },
  y: { type: 'boolean', short: 'y', help: 'print the public key (recipient) of the identity file given as argument' },
} as const satisfies CommandOptions;

const USAGE = 'vaultik keygen [-o FILE] | vaultik keygen -y FILE';

/** The identity file text, in age-keygen's layout. */
export function identityFileText(identity: string, recipient: string, created: Date = new Date()): string {
  const time = created.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return `# created: ${time}\n# public key: ${recipient}\n${identity}\n`;
}

async function convert(path: string, io: CommandIO): Promise<number> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  for (const id of parseIdentityFile(text)) io.stdout.write(`${id.recipient.toString()}\n`);
  return ExitCode.OK;
}

export const keygenCommand: Command = {
  name: 'keygen',
  summary: 'generate an age key pair (the private key restores, the public key backs up)',
  usage: USAGE,
  options: OPTIONS,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
    if (values.y) {
      expectPositionals(positionals, 1, 1, USAGE);
      return convert(positionals[0]!, io);
    }
    expectPositionals(positionals, 0, 0, USAGE);
    const { identity, recipient } = generateKeyPair();
    const text = identityFileText(identity, recipient);
    if (values.output !== undefined) {
      try {
        // 'wx': never overwrite a key (it may be the only copy); 0600: the file holds a secret.
        await writeFile(values.output, text, { flag: 'wx', mode: 0o600 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
          throw new UsageError(`${values.output} already exists; refusing to overwrite a key file`);
        }
        throw new VaultikError(`cannot write ${values.output}: ${(err as Error).message}`, ExitCode.FAILURE, { cause: err });
      }
    } else {
      io.stdout.write(text);
    }
    io.stderr.write(`Public key: ${recipient}\n`);
    return ExitCode.OK;
  },
};
