/**
 * `vaultik diff <bucket> <prefix> <snapshot> <snapshot>`: the entries added (+), removed (-) and
 * changed (M, with what changed) from the first snapshot to the second, in path order, then a
 * summary line. Needs the key. Reads the two roots and only the shards that differ
 * (src/inspect/diff.ts). Names are escaped as `ls` escapes them; `--json` prints JSON Lines: one
 * `{"type":"entry","status":…}` object per entry, then `{"type":"summary",…}`.
 */
import { tmpdir } from 'node:os';
import { ExitCode } from '../../errors.js';
import { escapeControls } from '../../fs/paths.js';
import { MetadataSource, diffSnapshots, type DiffEntry, type DiffSummary } from '../../inspect/index.js';
import { listSnapshots, resolveSignedSnapshot, resolveSnapshotId, type Entry } from '../../snapshot/index.js';
import { parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { entryJson } from '../render/entry.js';
import { formatBytes, formatCount } from '../render/format.js';
import { JsonLines } from '../render/json.js';
import { STORE_OPTIONS, STORE_USAGE, identitiesFromEnv, openStore, parseStoreArgs, signersFromArgs } from '../storageArgs.js';

const OPTIONS = {
  ...STORE_OPTIONS,
  json: { type: 'boolean', help: 'print JSON Lines: one entry per line, then a summary' },
  host: { type: 'string', arg: 'H', help: "with 'latest': the latest snapshot of host H" },
} as const satisfies CommandOptions;

const USAGE = `vaultik diff <bucket> <prefix> <snapshot_id|latest> <snapshot_id|latest> [--json] [--host H] ${STORE_USAGE}`;

const SIGN = { added: '+', removed: '-', changed: 'M' } as const;

const octal = (mode: number): string => mode.toString(8).padStart(4, '0');

/** What differs, for humans: `content`, `size 12 B → 20 B`, `mode 0644 → 0755`, … */
function describeChanges(d: DiffEntry): Buffer[] {
  const a = d.before!;
  const b = d.after!;
  return d.changes.map((c) => {
    switch (c) {
      case 'type':
        return Buffer.from(`type ${a.type} → ${b.type}`);
      case 'size':
        return Buffer.from(`size ${formatBytes(a.size)} → ${formatBytes(b.size)}`);
      case 'mode':
        return Buffer.from(`mode ${octal(a.mode)} → ${octal(b.mode)}`);
      case 'owner':
        return Buffer.from(`owner ${a.uid}:${a.gid} → ${b.uid}:${b.gid}`);
      case 'target':
        return Buffer.concat([Buffer.from('target '), escapeControls(a.target ?? Buffer.alloc(0)), Buffer.from(' → '), escapeControls(b.target ?? Buffer.alloc(0))]);
      default:
        return Buffer.from(c);
    }
  });
}

/** `(file, 12 B)`, `(symlink → target)`, `(dir)`. */
function describeEntry(e: Entry): Buffer {
  if (e.type === 'file') return Buffer.from(`(file, ${formatBytes(e.size)})`);
  if (e.type === 'symlink' && e.target) return Buffer.concat([Buffer.from('(symlink → '), escapeControls(e.target), Buffer.from(')')]);
  return Buffer.from(`(${e.type})`);
}

function humanLine(d: DiffEntry): Buffer {
  const detail = d.status === 'changed' ? Buffer.concat([Buffer.from('('), ...describeChanges(d).flatMap((b, i) => (i === 0 ? [b] : [Buffer.from(', '), b])), Buffer.from(')')]) : describeEntry((d.before ?? d.after)!);
  return Buffer.concat([Buffer.from(`${SIGN[d.status]}  /`), escapeControls(d.path), Buffer.from('  '), detail, Buffer.from('\n')]);
}

const signed = (n: number): string => `${n < 0 ? '-' : '+'}${formatBytes(Math.abs(n))}`;

function summaryLine(s: DiffSummary): string {
  return (
    `added ${formatCount(s.added.entries)} (${formatBytes(s.added.bytes)}), removed ${formatCount(s.removed.entries)} (${formatBytes(s.removed.bytes)}), ` +
    `changed ${formatCount(s.changed.entries)} (${signed(s.changed.bytes - s.changed.bytesBefore)}); ` +
    `size ${formatBytes(s.before.totalSize)} → ${formatBytes(s.after.totalSize)} (${signed(s.after.totalSize - s.before.totalSize)}); ` +
    `read ${formatCount(s.shards.read)} of ${formatCount(s.shards.before + s.shards.after)} shards (${formatCount(s.shards.shared)} shared, skipped)`
  );
}

function jsonEntry(d: DiffEntry): object {
  if (d.status !== 'changed') return { type: 'entry', status: d.status, ...entryJson((d.before ?? d.after)!) };
  const { path, pathHex } = entryJson(d.after!) as { path: string; pathHex?: string };
  const strip = (e: Entry): object => {
    const { path: _p, pathHex: _h, ...rest } = entryJson(e);
    return rest;
  };
  return { type: 'entry', status: 'changed', path, ...(pathHex !== undefined ? { pathHex } : {}), changes: d.changes, before: strip(d.before!), after: strip(d.after!) };
}

export const diffCommand: Command = {
  name: 'diff',
  summary: 'entries added, removed and changed between two snapshots (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
  options: OPTIONS,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
    const storeArgs = parseStoreArgs(values, positionals, io.env, 2, 2, USAGE);
    const [idA, idB] = storeArgs.rest as [string, string];
    const signers = await signersFromArgs(storeArgs);
    const identities = await identitiesFromEnv(io.env);
    const storage = openStore(storeArgs.spec);
    try {
      const list = await listSnapshots(storage, storeArgs.indexPrefix);
      const resolve = (id: string) =>
        signers ? resolveSignedSnapshot(storage, list, id, values.host, signers, io.signal) : Promise.resolve(resolveSnapshotId(list, id, values.host));
      const [a, b] = [await resolve(idA), await resolve(idB)];
      // Each reason once: with --signers both resolutions judge the same listing.
      for (const s of new Set([a, b])) if (s.suspect.length > 0) io.stderr.write(`vaultik diff: warning: ${s.id} is suspect: ${[...new Set(s.suspect)].join('; ')}\n`);
      const source = new MetadataSource({ storage, identities, tmpDir: tmpdir(), signal: io.signal });
      const json = values.json ? new JsonLines(io.stdout) : undefined;
      let batch: Buffer[] = [];
      const flush = (): void => {
        if (batch.length > 0) io.stdout.write(Buffer.concat(batch));
        batch = [];
      };
      const summary = await diffSnapshots(source, a, b, (d) => {
        if (json) json.write(jsonEntry(d));
        else {
          batch.push(humanLine(d));
          if (batch.length >= 512) flush();
        }
      });
      flush();
      if (json) {
        json.write({
          type: 'summary',
          before: a.id,
          after: b.id,
          added: summary.added,
          removed: summary.removed,
          changed: summary.changed,
          totalSizeBefore: summary.before.totalSize,
          totalSizeAfter: summary.after.totalSize,
          shards: summary.shards,
        });
      } else {
        io.stdout.write(`${summaryLine(summary)}\n`);
      }
      return ExitCode.OK;
    } finally {
      await storage.close();
    }
  },
};
