/**
 * `vaultik restore <bucket> <prefix> <snapshot_id|latest> <target_dir>`: a whole snapshot (or
 * the part --include/--exclude select) into a directory, with nothing but the store and
 * VAULTIK_PRIVATE_KEY. Also home of the restore renderer that `fetch` shares: live progress on
 * stderr when it is a terminal, failures as they happen, a summary at the end; with --json one
 * JSON object on stdout instead of the summary.
 */
import { ExitCode } from '../../errors.js';
import { displayPath } from '../../fs/paths.js';
import { runRestore, type RestoreEvent, type RestoreSummary } from '../../restore/index.js';
import { parseCommandArgs, type Command, type CommandIO } from '../command.js';
import { STORE_OPTIONS, STORE_USAGE, identitiesFromEnv, openStore, parseStoreArgs } from '../storageArgs.js';

const USAGE = `vaultik restore <bucket> <prefix> <snapshot_id|latest> <target_dir> [--overwrite] [--include PATTERN]... [--exclude PATTERN]... [--host H] [--json] ${STORE_USAGE}`;

/** Options shared by restore and fetch. */
export const RESTORE_OPTIONS = {
  ...STORE_OPTIONS,
  overwrite: { type: 'boolean' },
  include: { type: 'string', multiple: true },
  exclude: { type: 'string', multiple: true },
  host: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** Decimal units, like the throughput figures users compare with other tools. */
export function humanBytes(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]!}`;
}

/** A path for JSON: the text when it is valid UTF-8, plus its hex when it is not. */
export function jsonPath(path: Buffer): { path: string; pathHex?: string } {
  const text = path.toString('utf8');
  return Buffer.from(text, 'utf8').equals(path) ? { path: text } : { path: text, pathHex: path.toString('hex') };
}

/** Failures and warnings printed one per line before the rest are only counted. */
const MAX_LINES = 100;

/** Renders restore events on stderr (progress, failures) and the summary on stderr or stdout. */
export class RestoreRenderer {
  private lastDraw = 0;
  private lineShown = false;
  private printed = 0;
  private started = Date.now();
  private label = 'restoring';

  constructor(
    private readonly io: CommandIO,
    private readonly json: boolean,
  ) {}

  private clearLine(): void {
    if (this.lineShown) {
      this.io.stderr.write('\r\x1b[K');
      this.lineShown = false;
    }
  }

  private line(text: string): void {
    if (this.printed++ >= MAX_LINES) return;
    this.clearLine();
    this.io.stderr.write(`${text}\n`);
  }

  readonly onEvent = (e: RestoreEvent): void => {
    switch (e.type) {
      case 'snapshot':
        this.label = `restoring ${e.id}`;
        this.started = Date.now();
        return;
      case 'failed':
        this.line(`vaultik: cannot restore ${displayPath(e.path)}: ${e.message}`);
        return;
      case 'warning':
        this.line(`vaultik: warning: ${e.message}`);
        return;
      case 'totals':
        return;
      case 'progress': {
        if (!this.io.isTTY || this.json) return;
        const now = Date.now();
        if (now - this.lastDraw < 250) return;
        this.lastDraw = now;
        const { progress: p, totals: t } = e;
        const secs = Math.max((now - this.started) / 1000, 0.001);
        const text = `${this.label}: ${p.files}/${t.files} files, ${humanBytes(p.bytes)}/${humanBytes(t.bytes)}, ${humanBytes(p.bytes / secs)}/s${p.failed > 0 ? `, ${p.failed} failed` : ''}`;
        this.io.stderr.write(`\r\x1b[K${text}`);
        this.lineShown = true;
        return;
      }
    }
  };

  /** Prints the summary; returns the exit code it implies. */
  finish(s: RestoreSummary): number {
    this.clearLine();
    if (this.printed > MAX_LINES) this.io.stderr.write(`vaultik: … and ${this.printed - MAX_LINES} more messages\n`);
    const code = s.failed > 0 ? ExitCode.DATA : ExitCode.OK;
    if (this.json) {
      const out = {
        snapshot: s.snapshotId,
        target: s.target,
        files: s.files,
        dirs: s.dirs,
        symlinks: s.symlinks,
        specials: s.specials,
        hardLinks: s.hardLinks,
        bytes: s.bytes,
        unchanged: s.unchanged,
        warnings: s.warnings,
        failed: s.failed,
        failures: s.failures.map((f) => ({ ...jsonPath(f.path), message: f.message })),
        downloaded: s.downloaded,
        requests: s.requests,
        seconds: s.elapsedMs / 1000,
        exitCode: code,
      };
      this.io.stdout.write(`${JSON.stringify(out)}\n`);
      return code;
    }
    const secs = Math.max(s.elapsedMs / 1000, 0.001);
    const parts = [`${s.files} files`, `${s.dirs} dirs`];
    if (s.symlinks > 0) parts.push(`${s.symlinks} symlinks`);
    if (s.specials > 0) parts.push(`${s.specials} special files`);
    const unchanged = s.unchanged > 0 ? `, ${s.unchanged} entries already up to date` : '';
    this.io.stderr.write(
      `restored ${parts.join(', ')} (${humanBytes(s.bytes)}${unchanged}) from ${s.snapshotId} into ${s.target} ` +
        `in ${secs.toFixed(1)} s (${humanBytes(s.bytes / secs)}/s); downloaded ${humanBytes(s.downloaded)} in ${s.requests} requests\n`,
    );
    if (s.failed > 0) {
      this.io.stderr.write(`vaultik: ${s.failed} entr${s.failed === 1 ? 'y' : 'ies'} could not be restored (listed above): missing or corrupted data in the store\n`);
    }
    return code;
  }
}

export const restoreCommand: Command = {
  name: 'restore',
  summary: 'restore a snapshot into a directory (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, RESTORE_OPTIONS, USAGE);
    const { spec, indexPrefix, rest } = parseStoreArgs(values, positionals, io.env, 2, 2, USAGE);
    const [snapshotId, target] = rest as [string, string];
    const identities = await identitiesFromEnv(io.env);
    const storage = openStore(spec);
    const renderer = new RestoreRenderer(io, values.json === true);
    try {
      const summary = await runRestore({
        storage,
        identities,
        snapshotId,
        indexPrefix,
        host: values.host,
        target,
        select: { include: values.include, exclude: values.exclude },
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
