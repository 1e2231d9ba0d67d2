/**
 * `vaultik fetch <bucket> <prefix> <snapshot_id|latest> <filepath> <target_file_or_dir>`: one
 * file, or one directory's subtree, out of a snapshot. `filepath` is the path on the source
 * machine (`/home/u/data/a.txt`) or the same without the leading '/'. Where it lands follows cp:
 * into an existing directory (or a target ending in '/') under its own name, else at the
 * target path itself. An existing destination is replaced only with --overwrite.
 */
import { runFetch, snapshotPathArg } from '../../restore/index.js';
import { parseCommandArgs, type Command, type CommandIO } from '../command.js';
import { STORE_USAGE, identitiesFromEnv, openStore, parseStoreArgs } from '../storageArgs.js';
import { RESTORE_OPTIONS, RestoreRenderer } from './restore.js';

const USAGE = `vaultik fetch <bucket> <prefix> <snapshot_id|latest> <filepath> <target_file_or_dir> [--overwrite] [--include PATTERN]... [--exclude PATTERN]... [--host H] [--json] ${STORE_USAGE}`;

export const fetchCommand: Command = {
  name: 'fetch',
  summary: 'restore one file or directory of a snapshot (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, RESTORE_OPTIONS, USAGE);
    const { spec, indexPrefix, rest } = parseStoreArgs(values, positionals, io.env, 3, 3, USAGE);
    const [snapshotId, filepath, target] = rest as [string, string, string];
    const path = snapshotPathArg(filepath);
    const identities = await identitiesFromEnv(io.env);
    const storage = openStore(spec);
    const renderer = new RestoreRenderer(io, values.json === true);
    try {
      const summary = await runFetch({
        storage,
        identities,
        snapshotId,
        indexPrefix,
        host: values.host,
        path,
        target,
        include: values.include,
        exclude: values.exclude,
        overwrite: values.overwrite === true,
        signal: io.signal,
        onEvent: renderer.onEvent,
      });
      return renderer.finish(summary);
    } finally {
      await storage.close();
    }
  },
};
