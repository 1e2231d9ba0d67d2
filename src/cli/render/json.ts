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
  constructor(private readonly stream: NodeJS.WritableStream) {}

  /** Writes one object as one line. */
  write(obj: object): void {
    this.stream.write(JSON.stringify(obj, replacer) + '\n');
  }
}
