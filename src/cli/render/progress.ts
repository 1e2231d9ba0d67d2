/**
 * The one status line of every command (backup, restore, fetch, prune, verify): on an
 * interactive terminal (stderr) a line redrawn in place, kept within the terminal width, with
 * messages (warnings, failures) printed above it without garbling. Generic: commands decide what
 * the line says.
 *
 * Not live (no TTY, or --json): updates are dropped and messages are plain lines, so a command
 * uses the same calls whatever its output is; carriage returns and ANSI "erase line" are only
 * written to a terminal.
 */

import { escapeControlText } from '../../fs/paths.js';

const CLEAR = '\r\x1b[2K';

export interface ProgressLineOptions {
  /** Draw the line (default true); false when the stream is not a TTY or output is JSON. */
  live?: boolean;
  /** Redraws closer together than this are skipped (default 100). */
  minIntervalMs?: number;
}

export class ProgressLine {
  private current = '';
  private lastDraw = 0;
  private readonly live: boolean;
  private readonly minIntervalMs: number;

  /** @param stream the terminal (usually stderr). */
  constructor(
    private readonly stream: NodeJS.WritableStream,
    options: ProgressLineOptions = {},
  ) {
    this.live = options.live ?? true;
    this.minIntervalMs = options.minIntervalMs ?? 100;
  }

  private width(): number {
    const cols = (this.stream as { columns?: number }).columns;
    return typeof cols === 'number' && cols > 10 ? cols - 1 : 119;
  }

  private fit(text: string): string {
    const w = this.width();
    return text.length <= w ? text : text.slice(0, w - 1) + '…';
  }

  /** Shows `text` as the status line (throttled unless `force`). */
  update(text: string, force = false): void {
    if (!this.live) return;
    const now = Date.now();
    this.current = this.fit(text.replace(/[\r\n]/g, ' '));
    if (!force && now - this.lastDraw < this.minIntervalMs) return;
    this.lastDraw = now;
    this.stream.write(CLEAR + this.current);
  }

  /**
   * Prints a full line: above the status line (then redraws it), or plainly when not live.
   * Control characters are escaped: messages quote names and OS errors, which may be hostile.
   */
  print(line: string): void {
    const safe = escapeControlText(line);
    if (!this.live) this.stream.write(safe + '\n');
    else this.stream.write(CLEAR + safe + '\n' + this.current);
  }

  /** Erases the status line (before the final output). */
  clear(): void {
    if (this.current !== '') this.stream.write(CLEAR);
    this.current = '';
  }
}
