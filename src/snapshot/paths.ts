/**
 * Byte-path rules for snapshot entries (see types.ts): relative, '/'-separated, no empty, '.' or
 * '..' component, no NUL. The reader enforces them on every entry of an untrusted snapshot, so a
 * restorer joining an entry path to its target can never leave the target.
 */

const SLASH = 0x2f;
const DOT = 0x2e;

/**
 * Why `path` is not a valid entry path, or undefined when it is.
 * Accepts any bytes except the structural ones: non-UTF-8 names are valid.
 */
export function entryPathProblem(path: Uint8Array): string | undefined {
  if (path.length === 0) return 'empty path';
  if (path[0] === SLASH) return 'absolute path';
  if (path.includes(0)) return 'NUL byte in path';
  let start = 0;
  for (let i = 0; i <= path.length; i++) {
    if (i === path.length || path[i] === SLASH) {
      const len = i - start;
      if (len === 0) return 'empty path component';
      if (len === 1 && path[start] === DOT) return "'.' path component";
      if (len === 2 && path[start] === DOT && path[start + 1] === DOT) return "'..' path component";
      start = i + 1;
    }
  }
  return undefined;
}

/**
 * A path for messages: printable ASCII kept, every other byte as \xNN, quoted. Never decodes,
 * so a hostile name cannot inject terminal escapes.
 */
export function describePath(path: Uint8Array): string {
  let s = '';
  for (const b of path) {
    if (b >= 0x20 && b < 0x7f && b !== 0x5c && b !== 0x27) s += String.fromCharCode(b);
    else s += `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return `'${s}'`;
}

/**
 * The key range of the strict descendants of `dir` in byte order: every path that starts with
 * `dir + '/'` is > `dir + '/'` ... and < `dir + '0'` ('0' is the byte after '/').
 */
export function descendantRange(dir: Uint8Array): { low: Buffer; high: Buffer } {
  return { low: Buffer.concat([dir, Buffer.from([SLASH])]), high: Buffer.concat([dir, Buffer.from([SLASH + 1])]) };
}
