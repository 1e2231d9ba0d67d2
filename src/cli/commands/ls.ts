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
import { listSnapshots, openSnapshot, resolveSignedSnapshot, resolveSnapshotId, type Entry } from '../../snapshot/index.js';
import { parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { jsonPath } from '../render/json.js';
import { STORE_OPTIONS, STORE_USAGE, identitiesFromEnv, openStore, parseStoreArgs, signersFromArgs } from '../storageArgs.js';

const USAGE = `vaultik ls <bucket> <prefix> <snapshot_id|latest> [path] [-l] [--json] [--host H] ${STORE_USAGE}`;

const OPTIONS = {
  ...STORE_OPTIONS,
  long: { type: 'boolean', short: 'l', help: 'also print type and mode, owner, size and mtime' },
  json: { type: 'boolean', help: 'print JSON Lines, one entry per line, with the exact names' },
  host: { type: 'string', arg: 'H', help: "with 'latest': the latest snapshot of host H" },
} as const satisfies CommandOptions;

const TYPE_CHAR: Record<Entry['type'], string> = {
  file: '-',
  dir: 'd',
  symlink: 'l',
  fifo: 'p',
  socket: 's',
  chardev: 'c',
  blockdev: 'b',
  other: '?',
};

/** `drwxr-xr-x`-style type and mode, with setuid/setgid/sticky letters. */
export function modeString(type: Entry['type'], mode: number): string {
  const rwx = (bits: number, special: boolean, ch: string): string =>
    `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-'}`;
  return (
    TYPE_CHAR[type] +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, 's') +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, 's') +
    rwx(mode & 7, (mode & 0o1000) !== 0, 't')
  );
}

/** mtime (ns) as ISO 8601 UTC with nanoseconds. */
function isoNs(ns: bigint): string {
  const ms = ns / 1_000_000n - (ns < 0n && ns % 1_000_000n !== 0n ? 1n : 0n);
  const sub = ns - ms * 1_000_000n;
  const base = new Date(Number(ms)).toISOString().slice(0, -1); // ...mmm
  return `${base}${sub.toString().padStart(6, '0')}Z`;
}

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
            const row = {
              type: 'entry',
              ...jsonPath(Buffer.concat([slash, e.path])),
              kind: e.type,
              mode: e.mode,
              uid: e.uid,
              gid: e.gid,
              size: e.size,
              mtime: isoNs(e.mtimeNs),
              ...(e.target ? { target: e.target.toString('utf8') } : {}),
              ...(e.linkGroup !== undefined ? { linkGroup: e.linkGroup } : {}),
            };
            batch.push(Buffer.from(`${JSON.stringify(row)}\n`));
          } else if (values.long) {
            const head = `${modeString(e.type, e.mode)} ${String(e.uid).padStart(5)} ${String(e.gid).padStart(5)} ${String(e.size).padStart(12)} ${isoNs(e.mtimeNs).slice(0, 19).replace('T', ' ')} `;
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
