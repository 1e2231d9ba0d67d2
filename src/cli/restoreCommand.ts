/**
 * The command body that `vaultik restore`, `vaultik fetch` and `vaultik dump` share: options, store arguments,
 * key, store, renderer. Here rather than in either command so that commands never import each
 * other.
 */
import { fetchToStream, runFetch, snapshotPathArg, type RestoreOptions, type RestoreSummary } from '../restore/index.js';
import { parseCommandArgs, type CommandIO, type CommandOptions } from './command.js';
import { RestoreRenderer } from './render/restore.js';
import { STORE_OPTIONS, identitiesFromEnv, openStore, parseStoreArgs, signersFromArgs } from './storageArgs.js';

/** Options shared by restore and fetch. */
export const RESTORE_OPTIONS = {
  ...STORE_OPTIONS,
  overwrite: { type: 'boolean', help: 'replace files already at the target' },
  include: { type: 'string', multiple: true, arg: 'PATTERN', help: 'restore only paths matching PATTERN (glob)' },
  exclude: { type: 'string', multiple: true, arg: 'PATTERN', help: 'leave out paths matching PATTERN' },
  host: { type: 'string', arg: 'H', help: "with 'latest': the latest snapshot of host H" },
  json: { type: 'boolean', help: 'print JSON Lines instead of text' },
  // What not to restore of a snapshot not to be trusted with it (src/restore/safety.ts).
  'no-owner': { type: 'boolean', help: 'do not restore owners (files belong to the user restoring)' },
  'no-devices': { type: 'boolean', help: 'do not create device nodes' },
  'no-specials': { type: 'boolean', help: 'do not create FIFOs and sockets' },
  'no-setuid': { type: 'boolean', help: 'clear setuid and setgid bits' },
} as const satisfies CommandOptions;

/** Usage text of the options every restore and fetch takes. */
export const RESTORE_USAGE = '[--overwrite] [--include PATTERN]... [--exclude PATTERN]... [--host H] [--no-owner] [--no-devices] [--no-specials] [--no-setuid] [--json]';

type RestoreValues = ReturnType<typeof parseCommandArgs<typeof RESTORE_OPTIONS>>['values'];

/** What restore and fetch hand their engine besides their own arguments. */
export type SharedRestoreOptions = Pick<RestoreOptions, 'storage' | 'identities' | 'snapshotId' | 'indexPrefix' | 'host' | 'signers' | 'overwrite' | 'safety' | 'signal' | 'onEvent'>;

/**
 * The body restore and fetch share. Parses RESTORE_OPTIONS and the store arguments followed by
 * the snapshot id and `ownArgs` more positionals, lets `prepare` check those (before the key is
 * read, so a usage error comes first), then reads the key, opens the store, runs, renders the
 * summary and closes the store.
 */
export async function runRestoreCommand<A>(
  argv: string[],
  io: CommandIO,
  usage: string,
  ownArgs: number,
  prepare: (args: string[]) => A,
  run: (shared: SharedRestoreOptions, args: A, values: RestoreValues) => Promise<RestoreSummary>,
  /** True when `run` writes data to stdout: messages and the summary then go to stderr. */
  stdoutIsData: (args: A) => boolean = () => false,
): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, RESTORE_OPTIONS, usage);
  const storeArgs = parseStoreArgs(values, positionals, io.env, ownArgs + 1, ownArgs + 1, usage);
  const { spec, indexPrefix, rest } = storeArgs;
  const [snapshotId, ...own] = rest as [string, ...string[]];
  const args = prepare(own);
  const signers = await signersFromArgs(storeArgs);
  const identities = await identitiesFromEnv(io.env);
  const storage = openStore(spec);
  const renderer = new RestoreRenderer(stdoutIsData(args) ? { ...io, stdout: io.stderr } : io, values.json === true);
  try {
    const shared: SharedRestoreOptions = {
      storage,
      identities,
      snapshotId,
      indexPrefix,
      host: values.host,
      ...(signers ? { signers } : {}),
      overwrite: values.overwrite === true,
      safety: {
        noOwner: values['no-owner'] === true,
        noDevices: values['no-devices'] === true,
        noSpecials: values['no-specials'] === true,
        noSetuid: values['no-setuid'] === true,
      },
      signal: io.signal,
      onEvent: renderer.onEvent,
    };
    return renderer.finish(await run(shared, args, values));
  } finally {
    await storage.close();
  }
}

/**
 * The body of `fetch … <filepath> <target>` and of `dump … <filepath>` (`withTarget` false: the
 * target is `-`). A target of `-` writes one regular file's bytes to stdout, like `restic dump`;
 * messages and the summary then go to stderr.
 */
export function runFetchCommand(argv: string[], io: CommandIO, usage: string, withTarget: boolean): Promise<number> {
  return runRestoreCommand(
    argv,
    io,
    usage,
    withTarget ? 2 : 1,
    ([filepath, target]) => ({ path: snapshotPathArg(filepath!), target: withTarget ? target! : '-' }),
    (shared, { path, target }, values) =>
      target === '-'
        ? fetchToStream({ ...shared, path, include: values.include, exclude: values.exclude }, io.stdout)
        : runFetch({ ...shared, path, target, include: values.include, exclude: values.exclude }),
    ({ target }) => target === '-',
  );
}
