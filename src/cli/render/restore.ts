/**
 * Output of `vaultik restore` and `vaultik fetch` (restore events, src/restore/events.ts): text
 * with a live progress line and a summary, or JSON lines.
 */
import { ExitCode } from '../../errors.js';
import { displayPath, escapeControlText } from '../../fs/paths.js';
import type { RestoreEvent, RestoreSummary } from '../../restore/index.js';
import { formatBytes, formatCount, formatDuration, formatRate, plural } from './format.js';
import { JsonLines, jsonPath } from './json.js';
import { ProgressLine } from './progress.js';

/** Failures and warnings printed one per line before the rest are only counted. */
const MAX_LINES = 100;

/** The end-of-run summary, one fact per line (like backup's). */
export function restoreSummaryLines(s: RestoreSummary): string[] {
  const others = s.specials > 0 ? `, ${plural(s.specials, 'special file')}` : '';
  // Written + linked = files (hard links are other names of a file written once).
  const links = s.hardLinks > 0 ? ` (${formatCount(s.files - s.hardLinks)} written, ${plural(s.hardLinks, 'hard link')})` : '';
  const unchanged = s.unchanged > 0 ? `; ${plural(s.unchanged, 'entry', 'entries')} already up to date` : '';
  return [
    `restored snapshot ${s.snapshotId} into ${escapeControlText(s.target)}`,
    `files:     ${formatCount(s.files)}${links}, ${plural(s.dirs, 'dir')}, ${plural(s.symlinks, 'symlink')}${others}${unchanged}`,
    `data:      ${formatBytes(s.bytes)} (downloaded ${formatBytes(s.downloaded)} in ${plural(s.requests, 'request')})`,
    `duration:  ${formatDuration(s.elapsedMs)} (${formatRate(s.bytes, s.elapsedMs)})`,
    ...withheldLines(s),
    ...(s.warnings > 0 ? [`warnings:  ${formatCount(s.warnings)} (see above)`] : []),
    ...(s.failed > 0 ? [`failed:    ${plural(s.failed, 'entry', 'entries')} not restored (listed above): ${failureCauses(s)}`] : []),
  ];
}

/** Why entries failed: the store's data, the target, or both. */
function failureCauses(s: RestoreSummary): string {
  const store = s.failed - s.failedLocal;
  if (s.failedLocal === 0) return 'missing or corrupted data in the store';
  if (store === 0) return 'the target could not take them (a local problem, not the store)';
  return `${formatCount(store)} missing or corrupted in the store, ${formatCount(s.failedLocal)} not writable in the target`;
}

/** The exit code a restore summary implies: DATA when the store's data failed, FAILURE when only the target did. */
export function restoreExitCode(s: RestoreSummary): number {
  if (s.failed > s.failedLocal) return ExitCode.DATA;
  return s.failedLocal > 0 ? ExitCode.FAILURE : ExitCode.OK;
}

/** What --no-owner, --no-devices, --no-specials and --no-setuid kept out of the target, if anything. */
function withheldLines(s: RestoreSummary): string[] {
  const w = s.withheld;
  const parts = [
    ...(w.devices > 0 ? [plural(w.devices, 'device node')] : []),
    ...(w.specials > 0 ? [plural(w.specials, 'special file')] : []),
    ...(w.setuid > 0 ? [`setuid/setgid bits of ${plural(w.setuid, 'entry', 'entries')}`] : []),
    ...(w.owners > 0 ? [`the owner of ${plural(w.owners, 'entry', 'entries')}`] : []),
  ];
  return parts.length > 0 ? [`withheld:  ${parts.join(', ')} (as asked)`] : [];
}

/**
 * Output of restore and fetch. Text: on a TTY a live progress line on stderr; failures and
 * warnings on stderr as they come (the first MAX_LINES); the summary on stdout. `--json`: JSON
 * lines on stdout — snapshot, totals, failed, warning, progress (at most once a second) and a
 * final summary line.
 */
export class RestoreRenderer {
  private readonly line: ProgressLine;
  private readonly json: JsonLines | undefined;
  private printed = 0;
  private started = Date.now();
  private lastJsonProgress = 0;
  private label = 'restoring';

  constructor(
    private readonly io: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream; isTTY: boolean },
    json: boolean,
  ) {
    this.json = json ? new JsonLines(io.stdout) : undefined;
    this.line = new ProgressLine(io.stderr, { live: !json && io.isTTY, minIntervalMs: 250 });
  }

  private note(text: string): void {
    if (this.printed++ >= MAX_LINES) return;
    this.line.print(text);
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
        this.json?.write({ type: 'failed', ...jsonPath(e.path), message: e.message, ...(e.local ? { local: true } : {}) });
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
        this.line.update(`${this.label}: ${formatCount(p.files)}/${formatCount(t.files)} files · ${formatBytes(p.bytes)}/${formatBytes(t.bytes)} · ${formatRate(p.bytes, elapsed)}${failed}`);
        return;
      }
    }
  };

  /** Prints the summary; returns the exit code it implies (restoreExitCode). */
  finish(s: RestoreSummary): number {
    this.line.clear();
    if (this.printed > MAX_LINES) this.io.stderr.write(`vaultik: … and ${this.printed - MAX_LINES} more messages\n`);
    const code = restoreExitCode(s);
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
        withheld: s.withheld,
        failed: s.failed,
        failedLocal: s.failedLocal,
        failures: s.failures.map((f) => ({ ...jsonPath(f.path), message: f.message, ...(f.local ? { local: true } : {}) })),
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
