/**
 * `vaultik find <bucket> <prefix> <pattern>...`: the entries matching a pattern in every snapshot
 * (or those named with `--snapshot`, or of `--host`), oldest snapshot first, each snapshot's
 * matches in path order. Needs the key. Patterns are restore's `--include` patterns
 * (src/inspect/find.ts): `*.jpg` matches a name at any depth, `/home/u/*.txt` is anchored at the
 * snapshot root. Suspect snapshots are searched too and marked. `--json` prints JSON Lines: one
 * `{"type":"match",…}` object per match, a `{"type":"error",…}` one per snapshot that could not be
 * read, then `{"type":"summary",…}`.
 */
import { tmpdir } from 'node:os';
import { escapeControls } from '../../fs/paths.js';
import { MetadataSource, compileFindPatterns, findInSnapshots, type FindSnapshotResult } from '../../inspect/index.js';
import { judgeSignatures, listSnapshots, resolveSnapshotId, type SnapshotListing } from '../../snapshot/index.js';
import { parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { entryJson, modeString, shortTime } from '../render/entry.js';
import { formatCount, plural } from '../render/format.js';
import { JsonLines } from '../render/json.js';
import { STORE_OPTIONS, STORE_USAGE, identitiesFromEnv, openStore, parseStoreArgs, signersFromArgs } from '../storageArgs.js';

const OPTIONS = {
  ...STORE_OPTIONS,
  json: { type: 'boolean', help: 'print JSON Lines: one match per line, then a summary' },
  host: { type: 'string', arg: 'H', help: "search only host H's snapshots" },
  snapshot: { type: 'string', multiple: true, arg: 'ID', help: "search only this snapshot (an id or 'latest')" },
} as const satisfies CommandOptions;

const USAGE = `vaultik find <bucket> <prefix> <pattern>... [--snapshot ID|latest]... [--host H] [--json] ${STORE_USAGE}`;

const snapshotTime = (s: SnapshotListing): string => s.time.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC');

export const findCommand: Command = {
  name: 'find',
  summary: 'which snapshots hold entries matching a pattern (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
  options: OPTIONS,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
    const storeArgs = parseStoreArgs(values, positionals, io.env, 1, Infinity, USAGE);
    const pattern = compileFindPatterns(storeArgs.rest);
    const signers = await signersFromArgs(storeArgs);
    const identities = await identitiesFromEnv(io.env);
    const storage = openStore(storeArgs.spec);
    try {
      const all = await listSnapshots(storage, storeArgs.indexPrefix);
      let chosen = values.host === undefined ? all : all.filter((s) => s.host === values.host);
      if (values.snapshot) {
        const named = new Set(values.snapshot.map((id) => resolveSnapshotId(all, id, values.host)));
        chosen = chosen.filter((s) => named.has(s));
      }
      // With --signers a snapshot without a valid signature is searched, and marked suspect.
      if (signers) await judgeSignatures(storage, chosen, signers, { signal: io.signal });
      const json = values.json ? new JsonLines(io.stdout) : undefined;
      const source = new MetadataSource({ storage, identities, tmpDir: tmpdir(), signal: io.signal });
      const onSnapshot = (r: FindSnapshotResult): void => {
        const s = r.snapshot;
        if (r.error !== undefined) {
          if (json) json.write({ type: 'error', snapshot: s.id, message: r.error });
          io.stderr.write(`vaultik find: snapshot ${s.id}: ${r.error}\n`);
        }
        if (!json && r.matches > 0) {
          const mark = s.suspect.length > 0 ? `  SUSPECT (${s.suspect.join('; ')})` : '';
          io.stdout.write(`snapshot ${s.id} (host ${s.host}, ${snapshotTime(s)}): ${plural(r.matches, 'match', 'matches')}${mark}\n`);
        }
      };
      const summary = await findInSnapshots(source, chosen, pattern, {
        onSnapshot,
        onMatch: ({ snapshot: s, entry: e }) => {
          if (json) {
            json.write({ type: 'match', snapshot: s.id, host: s.host, time: s.time.toISOString(), ...(s.suspect.length > 0 ? { suspect: s.suspect } : {}), ...entryJson(e) });
            return;
          }
          const head = `  ${modeString(e.type, e.mode)} ${String(e.uid).padStart(5)} ${String(e.gid).padStart(5)} ${String(e.size).padStart(12)} ${shortTime(e.mtimeNs)} /`;
          const parts = [Buffer.from(head), escapeControls(e.path)];
          if (e.target) parts.push(Buffer.from(' -> '), escapeControls(e.target));
          parts.push(Buffer.from('\n'));
          io.stdout.write(Buffer.concat(parts));
        },
      });
      const holding = summary.snapshots.filter((r) => r.matches > 0).length;
      if (json) {
        json.write({ type: 'summary', matches: summary.matches, snapshots: chosen.length, snapshotsWithMatches: holding, shardsRead: summary.shardsRead, shardsListed: summary.shardsListed });
      } else {
        io.stderr.write(
          `${plural(summary.matches, 'match', 'matches')} in ${formatCount(holding)} of ${plural(chosen.length, 'snapshot')} (read ${plural(summary.shardsRead, 'shard')})\n`,
        );
      }
      return summary.exitCode;
    } finally {
      await storage.close();
    }
  },
};
