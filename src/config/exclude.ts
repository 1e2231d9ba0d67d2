/**
 * gitignore-like exclude patterns (the config's `exclude:` list).
 *
 * Rules (docs/CONFIG.md has examples):
 * - A pattern without '/' (other than a trailing one) matches a name at any depth: `*.log`.
 * - A leading '/' or a '/' in the middle anchors the pattern to the source dir's root:
 *   `/cache` and `var/tmp` match only at that place.
 * - A trailing '/' matches directories only: `node_modules/`.
 * - `*` matches any run of characters except '/', `?` one character except '/', `[abc]`,
 *   `[a-z]`, `[!abc]`/`[^abc]` and `[[:digit:]]`-style classes one character except '/'.
 * - `**` as a whole segment: leading `**\/x` matches x in every directory, trailing `x/**`
 *   everything inside x (but not x itself), `a/**\/b` zero or more directories between a and b.
 *   Elsewhere `**` is the same as `*`.
 * - `\` quotes the next character (`\*`, `\!`, `\[`).
 * - `!pattern` re-includes what an earlier pattern excluded; the last matching pattern wins.
 *   As in git, a re-include cannot reach inside an excluded directory: the walker never
 *   descends into it, so `build/` + `!build/keep.txt` still skips all of build/.
 * - Matching is case-sensitive and does no Unicode normalization.
 *
 * File names are bytes and need not be UTF-8. Patterns are UTF-8 text, and a path given as bytes
 * is matched on its UTF-8 decoding with each invalid sequence replaced by U+FFFD, so `*` and `?`
 * still match names that are not valid UTF-8, and a pattern can only name such a file by
 * wildcards (or by a literal U+FFFD, which matches any invalid sequence).
 */

/** Decides, for one source dir, whether a walked entry is excluded. */
export interface ExcludeMatcher {
  /**
   * Whether the entry at `relPath` is excluded, judging the entry alone. `relPath` is relative to
   * the source dir, '/'-separated, without leading or trailing '/' (bytes are decoded as UTF-8
   * with replacement). The source dir itself ('') is never excluded.
   *
   * Contract with the walker: it calls this for every entry it meets and never descends into a
   * directory for which this returned true; entries below an excluded directory are therefore
   * never asked about. Use `excludesPath` when the ancestors have not been checked.
   */
  matches(relPath: string | Uint8Array, isDir: boolean): boolean;
  /**
   * Whether `relPath` or any of its ancestor directories is excluded: the answer the walker's
   * pruning gives, for callers that check one path out of context.
   */
  excludesPath(relPath: string | Uint8Array, isDir: boolean): boolean;
  /** The patterns this matcher was compiled from, in order. */
  readonly patterns: readonly string[];
}

/** A pattern that cannot be compiled; `message` explains why, the caller adds where it came from. */
export class ExcludePatternError extends Error {
  constructor(
    readonly pattern: string,
    reason: string,
  ) {
    super(`bad exclude pattern ${JSON.stringify(pattern)}: ${reason}`);
    this.name = 'ExcludePatternError';
  }
}

interface CompiledPattern {
  regex: RegExp;
  negated: boolean;
  dirOnly: boolean;
}

const POSIX_CLASSES: ReadonlyMap<string, string> = new Map([
  ['alnum', 'a-zA-Z0-9'],
  ['alpha', 'a-zA-Z'],
  ['blank', ' \\t'],
  ['cntrl', '\\x00-\\x1f\\x7f'],
  ['digit', '0-9'],
  ['graph', '\\x21-\\x7e'],
  ['lower', 'a-z'],
  ['print', '\\x20-\\x7e'],
  ['punct', '!-\\/:-@\\[-`{-~'],
  ['space', ' \\t\\n\\r\\f\\v'],
  ['upper', 'A-Z'],
  ['xdigit', '0-9a-fA-F'],
]);

/** A literal code point as a regex atom that is safe inside and outside a class (with the u flag). */
function literal(ch: string): string {
  return `\\u{${ch.codePointAt(0)!.toString(16)}}`;
}

/**
 * Translates one '/'-free glob segment to a regex fragment.
 * @throws ExcludePatternError on an unterminated class, a trailing '\' or an unknown [:class:].
 */
function segmentToRegex(segment: string, pattern: string): string {
  const chars = Array.from(segment);
  let out = '';
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i]!;
    if (c === '\\') {
      const next = chars[++i];
      if (next === undefined) throw new ExcludePatternError(pattern, 'ends with a lone "\\"');
      out += literal(next);
    } else if (c === '*') {
      while (chars[i + 1] === '*') i++;
      out += '[^/]*';
    } else if (c === '?') {
      out += '[^/]';
    } else if (c === '[') {
      const { regex, end } = classToRegex(chars, i, pattern);
      out += regex;
      i = end;
    } else {
      out += literal(c);
    }
  }
  return out;
}

/** Parses the class starting at chars[start] === '['; returns its regex and the index of its ']'. */
function classToRegex(chars: string[], start: number, pattern: string): { regex: string; end: number } {
  let i = start + 1;
  let negated = false;
  if (chars[i] === '!' || chars[i] === '^') {
    negated = true;
    i++;
  }
  let body = '';
  let first = true;
  for (; i < chars.length; i++) {
    const c = chars[i]!;
    // A ']' right after '[' or '[!' is a literal, as in fnmatch.
    if (c === ']' && !first) {
      if (body === '') throw new ExcludePatternError(pattern, 'empty character class');
      // A class never matches '/': names are matched segment by segment.
      return { regex: negated ? `[^/${body}]` : `(?:(?!/)[${body}])`, end: i };
    }
    first = false;
    if (c === '[' && chars[i + 1] === ':') {
      const close = chars.indexOf(':', i + 2);
      if (close > 0 && chars[close + 1] === ']') {
        const name = chars.slice(i + 2, close).join('');
        const range = POSIX_CLASSES.get(name);
        if (range === undefined) throw new ExcludePatternError(pattern, `unknown character class [:${name}:]`);
        body += range;
        i = close + 1;
        continue;
      }
    }
    let from = c;
    if (c === '\\') {
      const next = chars[++i];
      if (next === undefined) break;
      from = next;
    }
    if (chars[i + 1] === '-' && chars[i + 2] !== undefined && chars[i + 2] !== ']') {
      let to = chars[i + 2]!;
      i += 2;
      if (to === '\\') {
        const next = chars[++i];
        if (next === undefined) break;
        to = next;
      }
      if (from.codePointAt(0)! > to.codePointAt(0)!) {
        throw new ExcludePatternError(pattern, `range ${from}-${to} is out of order`);
      }
      body += `${literal(from)}-${literal(to)}`;
    } else {
      body += literal(from);
    }
  }
  throw new ExcludePatternError(pattern, 'unterminated character class "[" (write \\[ for a literal bracket)');
}

/**
 * Compiles one pattern.
 * @throws ExcludePatternError
 */
function compilePattern(pattern: string): CompiledPattern {
  let p = pattern;
  let negated = false;
  if (p.startsWith('!')) {
    negated = true;
    p = p.slice(1);
  }
  let dirOnly = false;
  // Strip trailing slashes, but not an escaped one (a name cannot contain '/' anyway).
  while (p.endsWith('/') && !p.endsWith('\\/')) {
    dirOnly = true;
    p = p.slice(0, -1);
  }
  if (p === '' || /^\/+$/.test(p)) {
    throw new ExcludePatternError(pattern, negated ? 'nothing after "!"' : 'matches nothing (empty pattern)');
  }
  const anchored = p.includes('/');
  if (p.startsWith('/')) p = p.slice(1);
  const segments = p.split('/');
  if (segments.some((s) => s === '')) throw new ExcludePatternError(pattern, 'contains an empty path segment ("//")');
  if (segments.some((s) => s === '.' || s === '..')) {
    throw new ExcludePatternError(pattern, '"." and ".." segments never match (paths are relative to the source dir)');
  }
  if (!anchored) {
    // A lone "**" is not a whole-path segment here: it is a name pattern, the same as "*".
    if (segments[0] === '**') segments[0] = '*';
    // An unanchored pattern is the same as one under a leading "**/".
    segments.unshift('**');
  }

  let re = '';
  let needSep = false; // whether the next segment must be preceded by '/'
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (seg === '**') {
      if (i === 0 && last) {
        re += '.+';
      } else if (i === 0) {
        re += '(?:[^/]+/)*'; // zero or more leading directories
      } else if (last) {
        re += needSep ? '/.+' : '.+'; // everything inside, not the directory itself
      } else if (needSep) {
        re += '(?:/[^/]+)*'; // zero or more directories in between
      }
      // else: "**/**" — the previous "**" already matches any number of directories.
      continue;
    }
    if (needSep) re += '/';
    re += segmentToRegex(seg, pattern);
    needSep = true;
  }
  return { regex: new RegExp(`^${re}$`, 'u'), negated, dirOnly };
}

function decodePath(relPath: string | Uint8Array): string {
  // Buffer's UTF-8 decoder replaces each invalid sequence with U+FFFD, never throws.
  return typeof relPath === 'string' ? relPath : Buffer.from(relPath.buffer, relPath.byteOffset, relPath.byteLength).toString('utf8');
}

/**
 * Compiles exclude patterns (rules at the top of this file) into a matcher. Patterns are applied
 * in order; the last one that matches an entry decides (a '!' pattern re-includes).
 *
 * @throws ExcludePatternError for an empty pattern, a lone '!', an unterminated '[' class, a
 *   trailing lone '\', an empty "//" segment or a '.'/'..' segment.
 */
export function compileExcludes(patterns: readonly string[]): ExcludeMatcher {
  const compiled = patterns.map(compilePattern);
  const matchOne = (path: string, isDir: boolean): boolean => {
    if (path === '') return false;
    for (let i = compiled.length - 1; i >= 0; i--) {
      const c = compiled[i]!;
      if (c.dirOnly && !isDir) continue;
      if (c.regex.test(path)) return !c.negated;
    }
    return false;
  };
  return {
    patterns: [...patterns],
    matches: (relPath, isDir) => matchOne(decodePath(relPath), isDir),
    excludesPath: (relPath, isDir) => {
      const path = decodePath(relPath);
      for (let slash = path.indexOf('/'); slash >= 0; slash = path.indexOf('/', slash + 1)) {
        if (matchOne(path.slice(0, slash), true)) return true;
      }
      return matchOne(path, isDir);
    },
  };
}

/**
 * The patterns that apply to one source dir, with absolute patterns resolved.
 *
 * A pattern (after an optional '!') that starts with the absolute path of one of `sourceDirs`
 * followed by '/' is an absolute pattern: it applies only to that source dir, anchored at its
 * root (`/home/u/data/cache` → `/cache` for source dir /home/u/data, and nothing for /etc).
 * Every other pattern applies to every source dir unchanged. Source dirs must be normalized
 * absolute paths without a trailing '/' (except '/' itself), as `Config.sourceDirs` are; when
 * '/' is a source dir, absolute and anchored patterns coincide.
 */
export function excludesForSource(patterns: readonly string[], sourceDir: string, sourceDirs: readonly string[]): string[] {
  const out: string[] = [];
  for (const pattern of patterns) {
    const bang = pattern.startsWith('!') ? '!' : '';
    const body = pattern.slice(bang.length);
    const owner = sourceDirOf(body, sourceDirs);
    if (owner === undefined) out.push(pattern);
    else if (owner === sourceDir) out.push(bang + (owner === '/' ? body : body.slice(owner.length)));
  }
  return out;
}

/** The source dir an absolute pattern names (longest match), or undefined for a relative one. */
export function sourceDirOf(patternBody: string, sourceDirs: readonly string[]): string | undefined {
  let best: string | undefined;
  for (const dir of sourceDirs) {
    if (dir === '/') continue; // with '/' as a source dir, every anchored pattern is already absolute
    if (patternBody.startsWith(dir + '/') && patternBody.length > dir.length + 1) {
      if (best === undefined || dir.length > best.length) best = dir;
    }
  }
  return best;
}
