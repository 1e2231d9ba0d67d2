/**
 * `vaultik restore <bucket> <prefix> <snapshot_id|latest> <target_dir>`: a whole snapshot (or
 * the part --include/--exclude select) into a directory, with nothing but the store and
 * VAULTIK_PRIVATE_KEY.
 */
import { runRestore } from '../../restore/index.js';
import type { Command, CommandIO } from '../command.js';
import { RESTORE_OPTIONS, RESTORE_USAGE, runRestoreCommand } from '../restoreCommand.js';
import { STORE_USAGE } from '../storageArgs.js';

const USAGE = `vaultik restore <bucket> <prefix> <snapshot_id|latest> <target_dir> ${RESTORE_USAGE} ${STORE_USAGE}`;

export const restoreCommand: Command = {
  name: 'restore',
  summary: 'restore a snapshot into a directory (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
  options: RESTORE_OPTIONS,
  run: (argv: string[], io: CommandIO): Promise<number> =>
    runRestoreCommand(
      argv,
      io,
      USAGE,
      1,
      ([target]) => target!,
      (shared, target, values) => runRestore({ ...shared, target, select: { include: values.include, exclude: values.exclude } }),
    ),
};
