/**
 * Renderers of backup events (src/backup/events.ts) for the three output modes of
 * `vaultik backup`:
 * - text: on a TTY a live progress line on stderr; warnings on stderr as they come; the summary
 *   on stdout at the end (without a TTY: warnings and the summary only).
 * - json: every event as one JSON line on stdout (progress, warnings, the summary), and an
 *   `{"type":"error"}` line when the run fails.
 * - cron: nothing at all on success; with warnings, the warnings and a one-line verdict on stderr
 *   (the exit code is non-zero then); errors are printed by the CLI's error handler.
 */
import type { BackupEvent, BackupProgress, BackupSummary } from '../../backup/index.js';
import { errorMessage, type VaultikError } from '../../errors.js';
import { formatBytes, formatCount, formatDuration, formatRate, plural } from './format.js';
import { JsonLines } from './json.js';
import { escapeControlText } from '../../fs/paths.js';
import { ProgressLine } from './progress.js';

export interface BackupRenderer {
  onEvent(event: BackupEvent): void;
  /** The run finished and wrote a snapshot. */
  done(summary: BackupSummary): void;
  /** The run failed; the CLI prints the error message itself after this. */
  failed(err: unknown): void;
}

type ProgressEvent = Extract<BackupEvent, { type: 'progress' }>;

/** "10 files (8 new, 0 changed, 0 unchanged, 2 hard links)": the parts add up to the files. */
function fileCounts(p: BackupProgress): string {
  const links = p.hardLinks > 0 ? `, ${plural(p.hardLinks, 'hard link')}` : '';
  return `(${formatCount(p.filesNew)} new, ${formatCount(p.filesChanged)} changed, ${formatCount(p.filesUnchanged)} unchanged${links})`;
}

/** The live progress line: files, bytes scanned/read/new, throughput, ETA once known. */
export function progressText(p: ProgressEvent): string {
  const parts = [
    `${formatCount(p.files)} files ${fileCounts(p)}`,
    `${formatBytes(p.bytesScanned)} scanned`,
    `${formatBytes(p.bytesRead)} read`,
    `${formatBytes(p.bytesPacked)} new`,
    formatRate(p.bytesRead, p.elapsedMs),
  ];
  if (p.walkDone && p.bytesRead > 0 && p.bytesToRead > p.bytesRead) {
    const etaMs = ((p.bytesToRead - p.bytesRead) * p.elapsedMs) / p.bytesRead;
    parts.push(`ETA ${formatDuration(etaMs)}`);
  }
  if (p.warnings > 0) parts.push(plural(p.warnings, 'warning'));
  return parts.join(' · ');
}

/**
 * What became of the paths warned about: "the snapshot was written without those paths", or
 * "N files changed while read; stored as last read" and how many other paths were left out.
 */
export function warningsVerdict(s: Pick<BackupSummary, 'warnings' | 'filesChangedWhileRead'>): string {
  const changed = s.filesChangedWhileRead;
  if (changed === 0) return 'the snapshot was written without those paths';
  const leftOut = s.warnings - changed;
  return `${plural(changed, 'file')} changed while read; stored as last read${leftOut > 0 ? `; ${plural(leftOut, 'other path')} left out` : ''}`;
}

/** The end-of-run summary, one fact per line. */
export function summaryLines(s: BackupSummary): string[] {
  const other = s.others > 0 ? `, ${plural(s.others, 'other entry', 'other entries')}` : '';
  return [
    `snapshot ${s.snapshotId} saved to ${s.store}`,
    `files:     ${formatCount(s.files)} ${fileCounts(s)}, ${plural(s.dirs, 'dir')}, ${plural(s.symlinks, 'symlink')}${other}`,
    `read:      ${formatBytes(s.bytesRead)} of ${formatBytes(s.bytesScanned)} (${plural(s.filesRead, 'file')} opened${s.filesReread > 0 ? `, ${formatCount(s.filesReread)} read again after changing while read` : ''})`,
    `added:     ${formatBytes(s.bytesUploaded + s.metadataBytes)} (${formatBytes(s.bytesNew)} new data → ${formatBytes(s.bytesPacked)} compressed, in ${plural(s.blobsUploaded, 'blob')}; ${formatBytes(s.metadataBytes)} metadata)`,
    `snapshot:  ${formatCount(s.entries)} entries, ${plural(s.snapshotBlobs, 'blob')}, ${formatBytes(s.snapshotBlobBytes)} stored`,
    `duration:  ${formatDuration(s.durationMs)} (${formatRate(s.bytesRead, s.durationMs)} read)`,
    ...(s.warnings > 0 ? [`warnings:  ${formatCount(s.warnings)} (see above); ${warningsVerdict(s)}`] : []),
  ];
}

/** Text output; `tty` enables the live progress line on `stderr`. */
export class TextRenderer implements BackupRenderer {
  private readonly line: ProgressLine;

  constructor(
    private readonly stdout: NodeJS.WritableStream,
    stderr: NodeJS.WritableStream,
    tty: boolean,
  ) {
    this.line = new ProgressLine(stderr, { live: tty });
  }

  onEvent(e: BackupEvent): void {
    switch (e.type) {
      case 'progress':
        this.line.update(progressText(e), e.walkDone && e.bytesToRead === e.bytesRead);
        break;
      case 'warning':
        this.line.print(`warning: ${e.message}`);
        break;
      case 'notice':
        this.line.print(`note: ${e.message}`);
        break;
      case 'phase':
        if (e.phase === 'metadata') this.line.update('writing snapshot metadata…', true);
        break;
      default:
        break;
    }
  }

  done(summary: BackupSummary): void {
    this.line.clear();
    this.stdout.write(summaryLines(summary).join('\n') + '\n');
  }

  failed(): void {
    this.line.clear();
  }
}

/** `--json`: every event as a JSON line on stdout. */
export class JsonRenderer implements BackupRenderer {
  private readonly out: JsonLines;

  constructor(stdout: NodeJS.WritableStream) {
    this.out = new JsonLines(stdout);
  }

  onEvent(e: BackupEvent): void {
    this.out.write(e);
  }

  done(): void {
    // The summary event was written by onEvent.
  }

  failed(err: unknown): void {
    const exitCode = (err as Partial<VaultikError>).exitCode;
    this.out.write({ type: 'error', message: errorMessage(err), ...(typeof exitCode === 'number' ? { exitCode } : {}) });
  }
}

/** `--cron`: silent on success; warnings are kept and printed only if the run ends with them. */
export class CronRenderer implements BackupRenderer {
  private readonly warnings: string[] = [];
  private dropped = 0;

  constructor(private readonly stderr: NodeJS.WritableStream) {}

  onEvent(e: BackupEvent): void {
    if (e.type !== 'warning') return;
    // Keep memory bounded on a run with a huge number of warnings.
    if (this.warnings.length < 1000) this.warnings.push(e.message);
    else this.dropped++;
  }

  done(summary: BackupSummary): void {
    if (summary.warnings === 0) return;
    const lines = this.warnings.map((w) => `warning: ${escapeControlText(w)}`);
    if (this.dropped > 0) lines.push(`… and ${formatCount(this.dropped)} more warnings`);
    const what = summary.filesChangedWhileRead === 0 ? ' without those paths' : `; ${warningsVerdict(summary)}`;
    lines.push(`vaultik backup: completed with ${plural(summary.warnings, 'warning')}; snapshot ${summary.snapshotId} was written${what}`);
    this.stderr.write(lines.join('\n') + '\n');
  }

  failed(): void {
    // The CLI prints the error.
  }
}
