/**
 * `vaultik ls <bucket> <prefix> <snapshot_id|latest> [path]`: the entries of a snapshot (or of
 * the subtree at `path`), recursively, in path order, as absolute source paths. Needs the key:
 * names live only in the encrypted metadata. Paths are printed as their bytes (like ls to a pipe)
 * but for control characters, written `\xNN`, and a backslash, doubled (escapeControls): a
 * hostile name cannot drive the terminal or fake a line. `-l` adds type and mode, owner, size and
 * mtime; `--json` prints one JSON line per entry (`"type":"entry"`) with the exact names.
 */
import { tmpdir } from 'node:os';
import { ExitCode, UsageError } from '../../errors.js';
import { displayPath, escapeControls } from '../../fs/paths.js';
import { snapshotPathArg } from '../../restore/index.js';
import { listSnapshots, openSnapshot, resolveSignedSnapshot, resolveSnapshotId } from '../../snapshot/index.js';
import { parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { entryJson, modeString, shortTime } from '../render/entry.js';
import { STORE_OPTIONS, STORE_USAGE, identitiesFromEnv, openStore, parseStoreArgs, signersFromArgs } from '../storageArgs.js';

const USAGE = `vaultik ls <bucket> <prefix> <snapshot_id|latest> [path] [-l] [--json] [--host H] ${STORE_USAGE}`;

const OPTIONS = {
  ...STORE_OPTIONS,
  long: { type: 'boolean', short: 'l', help: 'also print type and mode, owner, size and mtime' },
  json: { type: 'boolean', help: 'print JSON Lines, one entry per line, with the exact names' },
  host: { type: 'string', arg: 'H', help: "with 'latest': the latest snapshot of host H" },
} as const satisfies CommandOptions;

export { modeString } from '../render/entry.js';

export const lsCommand: Command = {
  name: 'ls',
  summary: 'list the entries of a snapshot (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
  options: OPTIONS,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
    const storeArgs = parseStoreArgs(values, positionals, io.env, 1, 2, USAGE);
    const { spec, indexPrefix, rest } = storeArgs;
    const [snapshotId, pathArg] = rest as [string, string | undefined];
    const under = pathArg === undefined || pathArg.split('/').every((s) => s === '') ? undefined : snapshotPathArg(pathArg);
    const signers = await signersFromArgs(storeArgs);
    const identities = await identitiesFromEnv(io.env);
    const storage = openStore(spec);
    try {
      const snapshots = await listSnapshots(storage, indexPrefix);
      const listing = signers
        ? await resolveSignedSnapshot(storage, snapshots, snapshotId, values.host, signers, io.signal)
        : resolveSnapshotId(snapshots, snapshotId, values.host);
      // A path: only the shards that cover it are read.
      const reader = await openSnapshot(storage, listing, identities, tmpdir(), under ? { signal: io.signal, under } : { signal: io.signal });
      try {
        if (under && !reader.entry(under)) throw new UsageError(`${displayPath(under)} is not in snapshot ${listing.id}`);
        const slash = Buffer.from('/');
        const nl = Buffer.from('\n');
        let batch: Buffer[] = [];
        const flush = (): void => {
          if (batch.length > 0) io.stdout.write(Buffer.concat(batch));
          batch = [];
        };
        for (const e of reader.entries(under ? { under } : {})) {
          if (values.json) {
            batch.push(Buffer.from(`${JSON.stringify({ type: 'entry', ...entryJson(e) })}\n`));
          } else if (values.long) {
            const head = `${modeString(e.type, e.mode)} ${String(e.uid).padStart(5)} ${String(e.gid).padStart(5)} ${String(e.size).padStart(12)} ${shortTime(e.mtimeNs)} `;
            batch.push(Buffer.from(head), slash, escapeControls(e.path));
            if (e.target) batch.push(Buffer.from(' -> '), escapeControls(e.target));
            batch.push(nl);
          } else {
            batch.push(slash, escapeControls(e.path), nl);
          }
          if (batch.length >= 512) flush();
        }
        flush();
      } finally {
        reader.close();
      }
      return ExitCode.OK;
    } finally {
      await storage.close();
    }
  },
};
