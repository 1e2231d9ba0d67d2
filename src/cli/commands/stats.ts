/**
 * `vaultik stats <bucket> <prefix>`: what the store holds and what deduplication saves
 * (src/inspect/stats.ts). Without VAULTIK_PRIVATE_KEY (or with `--keyless`) only what needs no
 * key: objects and stored bytes, the blobs each snapshot references and the stored bytes it added
 * (the blobs it was the first to reference, in time order), unreferenced and missing blobs. With
 * the key also each snapshot's logical size, the distinct chunks of all snapshots, the
 * deduplication ratio and the plaintext each snapshot added: that reads every root and every
 * distinct shard once. `--json` prints JSON Lines: one `{"type":"snapshot",…}` object per
 * snapshot, then `{"type":"summary",…}`.
 */
import { tmpdir } from 'node:os';
import { ExitCode } from '../../errors.js';
import { MetadataSource, addKeyedStats, storeStats, type SnapshotStats, type Tally } from '../../inspect/index.js';
import { parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { formatBytes, formatCount } from '../render/format.js';
import { JsonLines } from '../render/json.js';
import { STORE_OPTIONS, identitiesFromEnv, openStore, parseStoreArgs } from '../storageArgs.js';

const OPTIONS = {
  config: STORE_OPTIONS.config,
  'index-prefix': STORE_OPTIONS['index-prefix'],
  json: { type: 'boolean', help: 'print JSON Lines instead of text' },
  keyless: { type: 'boolean', help: 'only what needs no key, even when VAULTIK_PRIVATE_KEY is set' },
} as const satisfies CommandOptions;

const USAGE = `vaultik stats <bucket> <prefix> [--keyless] [--json] [--config FILE] [--index-prefix P]`;

const tallyText = (t: Tally | undefined, what: string): string => (t ? `${formatCount(t.count)} ${what}, ${formatBytes(t.bytes)}` : '?');

function snapshotJson(s: SnapshotStats): object {
  const { snapshot: l, info } = s;
  return {
    type: 'snapshot',
    id: l.id,
    host: l.host,
    time: l.time.toISOString(),
    suspect: l.suspect,
    referenced: s.referenced ?? null,
    added: s.added ?? null,
    ...(s.manifestError !== undefined ? { manifestError: s.manifestError } : {}),
    ...(info
      ? { files: info.fileCount, dirs: info.dirCount, symlinks: info.symlinkCount, others: info.otherCount, size: info.totalSize, newChunks: s.newChunks ?? null }
      : {}),
  };
}

export const statsCommand: Command = {
  name: 'stats',
  summary: 'stored bytes, per-snapshot added bytes; with VAULTIK_PRIVATE_KEY also sizes and the dedup ratio',
  usage: USAGE,
  options: OPTIONS,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
    const storeArgs = parseStoreArgs(values, positionals, io.env, 0, 0, USAGE);
    const keyed = values.keyless !== true && (io.env.VAULTIK_PRIVATE_KEY ?? '').trim() !== '';
    const identities = keyed ? await identitiesFromEnv(io.env) : undefined;
    const storage = openStore(storeArgs.spec);
    try {
      const stats = await storeStats(storage, storeArgs.indexPrefix, io.signal);
      if (identities) await addKeyedStats(stats, new MetadataSource({ storage, identities, tmpDir: tmpdir(), signal: io.signal }), tmpdir());
      if (values.json) {
        const json = new JsonLines(io.stdout);
        for (const s of stats.snapshots) json.write(snapshotJson(s));
        const { snapshots, ...totals } = stats;
        json.write({ type: 'summary', snapshots: snapshots.length, ...totals });
        return ExitCode.OK;
      }
      const out: string[] = [];
      out.push(`snapshots:      ${formatCount(stats.snapshots.length)}`);
      out.push(`blob objects:   ${tallyText(stats.blobObjects, 'objects')} (data blobs and shards)`);
      out.push(`index objects:  ${tallyText(stats.indexObjects, 'objects')} (roots, manifests, signatures)`);
      out.push(`referenced:     ${tallyText(stats.referenced, 'blobs')}`);
      out.push(`unreferenced:   ${tallyText(stats.unreferenced, 'blobs')} (prune deletes them once older than its grace)`);
      if (stats.missing.count > 0) out.push(`MISSING:        ${tallyText(stats.missing, 'blobs')} referenced by a manifest but not in the store (run vaultik verify)`);
      const k = stats.keyed;
      if (k) {
        out.push(`logical size:   ${formatBytes(k.logicalBytes)} (the snapshots' files, summed)`);
        out.push(`unique data:    ${tallyText(k.uniqueChunks, 'chunks')} (plaintext), in ${tallyText(k.dataBlobs, 'data blobs')}`);
        out.push(`dedup ratio:    ${k.dedupRatio.toFixed(2)} (logical size ÷ unique data)`);
        out.push(`compression:    ${k.compressionRatio.toFixed(2)} (unique data ÷ its data blobs' stored bytes)`);
      } else {
        out.push('(set VAULTIK_PRIVATE_KEY for logical sizes, unique data and the dedup ratio)');
      }
      out.push('');
      const rows = [
        ['ID', 'TIME (UTC)', 'REFERENCED', 'ADDED', ...(k ? ['FILES', 'SIZE', 'NEW DATA'] : [])],
        ...stats.snapshots.map((s) => [
          s.snapshot.id,
          s.snapshot.time.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ''),
          s.referenced ? formatBytes(s.referenced.bytes) : '?',
          s.added ? formatBytes(s.added.bytes) : '?',
          ...(k && s.info ? [formatCount(s.info.fileCount), formatBytes(s.info.totalSize), formatBytes(s.newChunks?.bytes ?? 0)] : []),
        ]),
      ];
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
      rows.forEach((r, i) => {
        const mark = i > 0 && stats.snapshots[i - 1]!.snapshot.suspect.length > 0 ? '  SUSPECT' : '';
        out.push(r.map((c, j) => (j < 2 ? c.padEnd(widths[j]!) : c.padStart(widths[j]!))).join('  ').trimEnd() + mark);
      });
      io.stdout.write(`${out.join('\n')}\n`);
      for (const s of stats.snapshots) if (s.manifestError !== undefined) io.stderr.write(`vaultik stats: ${s.snapshot.id}: ${s.manifestError} (shown as '?')\n`);
      return ExitCode.OK;
    } finally {
      await storage.close();
    }
  },
};
