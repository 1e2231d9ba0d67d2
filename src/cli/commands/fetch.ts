/**
 * `vaultik fetch <bucket> <prefix> <snapshot_id|latest> <filepath> <target_file_or_dir>`: one
 * file, or one directory's subtree, out of a snapshot. `filepath` is the path on the source
 * machine (`/home/u/data/a.txt`) or the same without the leading '/'. Where it lands follows cp:
 * into an existing directory (or a target ending in '/') under its own name, else at the
 * target path itself. An existing destination is replaced only with --overwrite. A target of
 * `-` writes a regular file's bytes to stdout instead (a directory is a usage error); `dump` is
 * the same without the target.
 */
import type { Command, CommandIO } from '../command.js';
import { RESTORE_OPTIONS, RESTORE_USAGE, runFetchCommand } from '../restoreCommand.js';
import { STORE_USAGE } from '../storageArgs.js';

const USAGE = `vaultik fetch <bucket> <prefix> <snapshot_id|latest> <filepath> <target_file_or_dir|-> ${RESTORE_USAGE} ${STORE_USAGE}`;

export const fetchCommand: Command = {
  name: 'fetch',
  summary: 'restore one file or directory of a snapshot (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
  options: RESTORE_OPTIONS,
  run: (argv: string[], io: CommandIO): Promise<number> => runFetchCommand(argv, io, USAGE, true),
};
