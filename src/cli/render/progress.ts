/**
 * A live status line on an interactive terminal (stderr), redrawn in place. Generic: commands
 * decide what the line says; this only draws it, keeps it within the terminal width, and lets
 * other lines (warnings) be printed above it without garbling.
 *
 * Only use it when the stream is a TTY: it writes carriage returns and ANSI "erase line".
 */

const CLEAR = '\r\x1b[2K';

export class ProgressLine {
  private current = '';
  private lastDraw = 0;

  /**
   * @param stream the terminal (usually stderr).
   * @param minIntervalMs redraws closer together than this are skipped (default 100).
   */
  constructor(
    private readonly stream: NodeJS.WritableStream,
    private readonly minIntervalMs = 100,
  ) {}

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
    const now = Date.now();
    this.current = this.fit(text.replace(/[\r\n]/g, ' '));
    if (!force && now - this.lastDraw < this.minIntervalMs) return;
    this.lastDraw = now;
    this.stream.write(CLEAR + this.current);
  }

  /** Prints a full line above the status line, then redraws the status line. */
  print(line: string): void {
    this.stream.write(CLEAR + line + '\n' + this.current);
  }

  /** Erases the status line (before the final output). */
  clear(): void {
    if (this.current !== '') this.stream.write(CLEAR);
    this.current = '';
  }
}
