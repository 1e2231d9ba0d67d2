/**
 * Everything vaultik says about its own command line, built from one source: each command's
 * name, summary, usage and option specs (src/cli/command.ts). `vaultik <command> --help`, the
 * man page (`npm run build` writes man/vaultik.1) and the shell completion scripts (`vaultik
 * completion bash|zsh|fish`) all come from here, so none of them can list an option the parser
 * does not take, or miss one it does.
 */
import type { Command, OptionSpec } from './command.js';
import { ExitCode } from '../errors.js';

/** `--name`, `-n, --name`, with the value's name for string options. */
function optionLabel(name: string, o: OptionSpec): string {
  const long = o.type === 'string' ? `--${name} ${o.arg ?? 'VALUE'}` : `--${name}`;
  return o.short ? `-${o.short}, ${long}` : long;
}

/** The text `vaultik <command> --help` prints. */
export function commandHelp(command: Command): string {
  const entries = Object.entries(command.options);
  const labels = entries.map(([name, o]) => optionLabel(name, o));
  const width = Math.max(0, ...labels.map((l) => l.length));
  const lines = [`usage: ${command.usage}`, '', `${command.summary}.`];
  if (entries.length > 0) {
    lines.push('', 'options:');
    entries.forEach(([, o], i) => lines.push(`  ${labels[i]!.padEnd(width)}  ${o.help}${o.multiple ? ' (repeatable)' : ''}`));
  }
  return lines.join('\n');
}

/** What each exit code means, for the man page (README.md's table says the same at length). */
export const EXIT_CODE_HELP: Readonly<Record<number, string>> = {
  [ExitCode.OK]: 'success',
  [ExitCode.FAILURE]: 'unexpected failure; restore and fetch: some entries could not be written into the target (a local problem), everything else was restored',
  [ExitCode.USAGE]: 'bad command line or configuration (the message names the key and line), unknown snapshot id',
  [ExitCode.WARNINGS]: 'backup completed with warnings (some files skipped or changed while read)',
  [ExitCode.NO_IDENTITY]: 'no identity matches this backup (wrong private key); nothing written',
  [ExitCode.DATA]: 'data error: missing, corrupted or forged objects in the store',
  [ExitCode.STORAGE]: 'store unreachable, access denied, missing bucket or local store directory; objects the store refused to delete',
  [ExitCode.LOCKED]: 'another backup holds the lock on this state cache',
  [ExitCode.SUSPECT]: 'forget refused: suspect snapshots exist and no --suspects choice was given',
  [ExitCode.HOOK]: 'a hook failed: a failing before hook skipped the run (no snapshot); after a failing after hook the snapshot was written',
  [ExitCode.INTERRUPTED]: 'interrupted (SIGINT/SIGTERM); no snapshot written',
};

/** The environment variables vaultik reads, for the man page. */
export const ENVIRONMENT_HELP: ReadonlyArray<[string, string]> = [
  ['VAULTIK_PRIVATE_KEY', 'the age identity for restore, fetch, ls, prune and verify --deep: an identity file\'s path or its text; never needed by backup'],
  ['AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN', 'S3 credentials when a command is given <bucket> <prefix> (a config file names its own)'],
  ['AWS_REGION, AWS_DEFAULT_REGION', 'the S3 region (default us-east-1)'],
  ['AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3', 'an S3-compatible endpoint instead of AWS'],
  ['VAULTIK_RETRY_TIME', 'how long one store operation keeps being retried after transient failures (e.g. 10m; default 2m)'],
  ['VAULTIK_DEBUG', 'print the stack trace of an unexpected error'],
];

/** roff text with its special characters escaped, and anything not ASCII as a \\[uXXXX] escape. */
function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/^([.'])/gm, '\\&$1')
    .replace(/[^ -~\n\t]/gu, (ch) => `\\[u${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}]`);
}

/** The man page (section 1), in the man(7) macros. */
export function manPage(commands: readonly Command[], version: string, date: string): string {
  const out: string[] = [
    `.TH VAULTIK 1 "${date}" "vaultik ${version}" "User Commands"`,
    '.SH NAME',
    'vaultik \\- encrypted, deduplicating backups with no secret on the source',
    '.SH SYNOPSIS',
    '.B vaultik',
    '.I command',
    '[\\fIarguments\\fR]',
    '.SH DESCRIPTION',
    roff(
      'vaultik chunks files with FastCDC, deduplicates, packs chunks into blobs, compresses them with zstd, ' +
        'encrypts them to an age public key and uploads immutable, content-addressed objects to S3-compatible ' +
        'storage or a local directory. Backing up needs only the public key; restore, fetch, ls, prune and ' +
        'verify --deep need the private key (VAULTIK_PRIVATE_KEY).',
    ),
    '.SH COMMANDS',
  ];
  for (const command of commands) {
    out.push('.SS ' + command.name, roff(command.usage), '.PP', roff(`${command.summary}.`));
    for (const [name, o] of Object.entries(command.options)) {
      out.push('.TP', `.B ${roff(optionLabel(name, o))}`, roff(o.help + (o.multiple ? ' (repeatable)' : '')));
    }
  }
  out.push('.SH ENVIRONMENT');
  for (const [name, text] of ENVIRONMENT_HELP) out.push('.TP', `.B ${roff(name)}`, roff(text));
  out.push('.SH EXIT STATUS');
  for (const [code, text] of Object.entries(EXIT_CODE_HELP)) out.push('.TP', `.B ${code}`, roff(text));
  out.push(
    '.SH FILES',
    '.TP',
    '.B /var/lib/vaultik/index.sqlite',
    roff("The state cache of a backup run as root (the config's index_path); a normal user's is $XDG_STATE_HOME/vaultik/index.sqlite, else ~/.local/state/vaultik/index.sqlite. It holds no secret (hashes, sizes and times of the sources); without it the next backup reads and uploads everything again."),
    '.SH SEE ALSO',
    '.BR age (1),',
    '.BR zstd (1),',
    '.BR sqlite3 (1)',
    '.PP',
    roff('README.md, docs/FORMAT.md and docs/SECURITY.md in the package.'),
  );
  return out.join('\n') + '\n';
}
