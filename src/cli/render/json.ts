/**
 * Machine-readable output: one JSON object per line (JSON Lines), for `--json`. Generic: any
 * command's events go through it. bigints become decimal strings and Buffers hex strings, so
 * every line parses with a plain JSON parser.
 */

function replacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value && typeof value === 'object' && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return Buffer.from((value as { data: number[] }).data).toString('hex');
  }
  return value;
}

export class JsonLines {
  private closed = false;

  /**
   * A reader that goes away (`vaultik backup --json | head -1`) must not crash the command half
   * way: after a write error (EPIPE) further lines are dropped and the work goes on.
   */
  constructor(private readonly stream: NodeJS.WritableStream) {
    stream.on('error', () => {
      this.closed = true;
    });
  }

  /** Writes one object as one line. */
  write(obj: object): void {
    if (this.closed) return;
    this.stream.write(JSON.stringify(obj, replacer) + '\n');
  }
}

export { jsonPath } from '../../fs/paths.js';
