/**
 * `vaultik dump <bucket> <prefix> <snapshot_id|latest> <filepath>`: one regular file's bytes to
 * stdout (restic's name). The same command as `vaultik fetch … <filepath> -`: messages and the
 * summary go to stderr (`--json`: a JSON Lines summary there), a directory is a usage error
 * (exit 2), and so is a path the snapshot does not hold.
 */
import type { Command, CommandIO } from '../command.js';
import { RESTORE_OPTIONS, RESTORE_USAGE, runFetchCommand } from '../restoreCommand.js';
import { STORE_USAGE } from '../storageArgs.js';

const USAGE = `vaultik dump <bucket> <prefix> <snapshot_id|latest> <filepath> ${RESTORE_USAGE} ${STORE_USAGE}`;

export const dumpCommand: Command = {
  name: 'dump',
  summary: 'write one file of a snapshot to stdout, as `fetch … -` (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
  options: RESTORE_OPTIONS,
  run: (argv: string[], io: CommandIO): Promise<number> => runFetchCommand(argv, io, USAGE, false),
};
