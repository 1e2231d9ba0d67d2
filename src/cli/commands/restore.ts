/**
 * `vaultik restore <bucket> <prefix> <snapshot_id|latest> <target_dir>`: a whole snapshot (or
 * the part --include/--exclude select) into a directory, with nothing but the store and
 * VAULTIK_PRIVATE_KEY. Also home of the restore renderer that `fetch` shares (RestoreRenderer).
 */
import { ExitCode } from '../../errors.js';
import { displayPath } from '../../fs/paths.js';
import { runRestore, type RestoreEvent, type RestoreOptions, type RestoreSummary } from '../../restore/index.js';
import { parseCommandArgs, type Command, type CommandIO } from '../command.js';
import { formatBytes, formatCount, formatDuration, formatRate, plural } from '../render/format.js';
import { JsonLines } from '../render/json.js';
import { ProgressLine } from '../render/progress.js';
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

/** Decimal units ("1.23 GB"); prune and verify use it. New output uses render/format.ts. */
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

/** The end-of-run summary, one fact per line (like backup's). */
export function restoreSummaryLines(s: RestoreSummary): string[] {
  const others = s.specials > 0 ? `, ${plural(s.specials, 'special file')}` : '';
  const links = s.hardLinks > 0 ? ` (${plural(s.hardLinks, 'hard link')})` : '';
  const unchanged = s.unchanged > 0 ? `; ${plural(s.unchanged, 'entry', 'entries')} already up to date` : '';
  return [
    `restored snapshot ${s.snapshotId} into ${s.target}`,
    `files:     ${formatCount(s.files)}${links}, ${plural(s.dirs, 'dir')}, ${plural(s.symlinks, 'symlink')}${others}${unchanged}`,
    `data:      ${formatBytes(s.bytes)} (downloaded ${formatBytes(s.downloaded)} in ${plural(s.requests, 'request')})`,
    `duration:  ${formatDuration(s.elapsedMs)} (${formatRate(s.bytes, s.elapsedMs)})`,
    ...(s.warnings > 0 ? [`warnings:  ${formatCount(s.warnings)} (see above)`] : []),
    ...(s.failed > 0 ? [`failed:    ${plural(s.failed, 'entry', 'entries')} not restored (listed above): missing or corrupted data in the store`] : []),
  ];
}

/**
 * Output of restore and fetch. Text: on a TTY a live progress line on stderr; failures and
 * warnings on stderr as they come (the first MAX_LINES); the summary on stdout. `--json`: JSON
 * lines on stdout — snapshot, totals, failed, warning, progress (at most once a second) and a
 * final summary line.
 */
export class RestoreRenderer {
  private readonly line: ProgressLine | undefined;
  private readonly json: JsonLines | undefined;
  private printed = 0;
  private started = Date.now();
  private lastJsonProgress = 0;
  private label = 'restoring';

  constructor(
    private readonly io: CommandIO,
    json: boolean,
  ) {
    this.json = json ? new JsonLines(io.stdout) : undefined;
    this.line = !json && io.isTTY ? new ProgressLine(io.stderr, 250) : undefined;
  }

  private note(text: string): void {
    if (this.printed++ >= MAX_LINES) return;
    if (this.line) this.line.print(text);
    else this.io.stderr.write(`${text}\n`);
  }

  readonly onEvent = (e: RestoreEvent): void => {
    switch (e.type) {
      case 'snapshot':
        this.label = `restoring ${e.id}`;
        this.started = Date.now();
        this.json?.write({ type: 'snapshot', id: e.id, host: e.host, time: e.time.toISOString(), files: e.files, bytes: e.bytes });
        return;
      case 'totals':
        this.json?.write({ type: 'totals', ...e.totals });
        return;
      case 'failed':
        this.json?.write({ type: 'failed', ...jsonPath(e.path), message: e.message });
        this.note(`vaultik: cannot restore ${displayPath(e.path)}: ${e.message}`);
        return;
      case 'warning':
        this.json?.write({ type: 'warning', ...jsonPath(e.path), message: e.message });
        this.note(`vaultik: warning: ${e.message}`);
        return;
      case 'progress': {
        const { progress: p, totals: t } = e;
        const elapsed = Date.now() - this.started;
        if (this.json) {
          if (Date.now() - this.lastJsonProgress < 1000) return;
          this.lastJsonProgress = Date.now();
          this.json.write({ type: 'progress', ...p, totalFiles: t.files, totalBytes: t.bytes, elapsedMs: elapsed });
          return;
        }
        const failed = p.failed > 0 ? ` · ${plural(p.failed, 'failure')}` : '';
        this.line?.update(`${this.label}: ${formatCount(p.files)}/${formatCount(t.files)} files · ${formatBytes(p.bytes)}/${formatBytes(t.bytes)} · ${formatRate(p.bytes, elapsed)}${failed}`);
        return;
      }
    }
  };

  /** Prints the summary; returns the exit code it implies (DATA when entries failed). */
  finish(s: RestoreSummary): number {
    this.line?.clear();
    if (this.printed > MAX_LINES) this.io.stderr.write(`vaultik: … and ${this.printed - MAX_LINES} more messages\n`);
    const code = s.failed > 0 ? ExitCode.DATA : ExitCode.OK;
    if (this.json) {
      this.json.write({
        type: 'summary',
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
      });
      return code;
    }
    this.io.stdout.write(restoreSummaryLines(s).join('\n') + '\n');
    return code;
  }
}

type RestoreValues = ReturnType<typeof parseCommandArgs<typeof RESTORE_OPTIONS>>['values'];

/** What restore and fetch hand their engine besides their own arguments. */
export type SharedRestoreOptions = Pick<RestoreOptions, 'storage' | 'identities' | 'snapshotId' | 'indexPrefix' | 'host' | 'overwrite' | 'signal' | 'onEvent'>;

/**
 * The body restore and fetch share. Parses RESTORE_OPTIONS and the store arguments followed by
 * the snapshot id and `ownArgs` more positionals, lets `prepare` check those (before the key is
 * read, so a usage error comes first), then reads the key, opens the store, runs, renders the
 * summary and closes the store.
 */
export async function runRestoreCommand<A>(
  argv: string[],
  io: CommandIO,
  usage: string,
  ownArgs: number,
  prepare: (args: string[]) => A,
  run: (shared: SharedRestoreOptions, args: A, values: RestoreValues) => Promise<RestoreSummary>,
): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, RESTORE_OPTIONS, usage);
  const { spec, indexPrefix, rest } = parseStoreArgs(values, positionals, io.env, ownArgs + 1, ownArgs + 1, usage);
  const [snapshotId, ...own] = rest as [string, ...string[]];
  const args = prepare(own);
  const identities = await identitiesFromEnv(io.env);
  const storage = openStore(spec);
  const renderer = new RestoreRenderer(io, values.json === true);
  try {
    const shared: SharedRestoreOptions = {
      storage,
      identities,
      snapshotId,
      indexPrefix,
      host: values.host,
      overwrite: values.overwrite === true,
      signal: io.signal,
      onEvent: renderer.onEvent,
    };
    return renderer.finish(await run(shared, args, values));
  } finally {
    await storage.close();
  }
}

export const restoreCommand: Command = {
  name: 'restore',
  summary: 'restore a snapshot into a directory (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
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
