/**
 * `vaultik fetch <bucket> <prefix> <snapshot_id|latest> <filepath> <target_file_or_dir>`: one
 * file, or one directory's subtree, out of a snapshot. `filepath` is the path on the source
 * machine (`/home/u/data/a.txt`) or the same without the leading '/'. Where it lands follows cp:
 * into an existing directory (or a target ending in '/') under its own name, else at the
 * target path itself. An existing destination is replaced only with --overwrite.
 */
import { runFetch, snapshotPathArg } from '../../restore/index.js';
import type { Command, CommandIO } from '../command.js';
import { RESTORE_USAGE, runRestoreCommand } from '../restoreCommand.js';
import { STORE_USAGE } from '../storageArgs.js';

const USAGE = `vaultik fetch <bucket> <prefix> <snapshot_id|latest> <filepath> <target_file_or_dir> ${RESTORE_USAGE} ${STORE_USAGE}`;

export const fetchCommand: Command = {
  name: 'fetch',
  summary: 'restore one file or directory of a snapshot (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
  run: (argv: string[], io: CommandIO): Promise<number> =>
    runRestoreCommand(
      argv,
      io,
      USAGE,
      2,
      ([filepath, target]) => ({ path: snapshotPathArg(filepath!), target: target! }),
      (shared, { path, target }, values) => runFetch({ ...shared, path, target, include: values.include, exclude: values.exclude }),
    ),
};
