import { describe, expect, it } from 'vitest';
import { ExcludePatternError, compileExcludes, excludesForSource } from '../../src/config/exclude.js';

type Row = [pattern: string | string[], path: string, isDir: boolean, excluded: boolean];

// One row per rule; the path is relative to the source dir, as the walker passes it.
const table: Row[] = [
  // No slash: a name at any depth.
  ['*.log', 'a.log', false, true],
  ['*.log', 'var/log/syslog.log', false, true],
  ['*.log', 'a.log.1', false, false],
  ['*.log', 'logs', true, false],
  ['*.log', '.hidden.log', false, true], // '*' matches a leading dot, as in git
  ['*.log', 'dir.log', true, true], // no trailing '/': directories too
  ['cache', 'cache', true, true],
  ['cache', 'a/b/cache', true, true],
  ['cache', 'a/cache/b', false, false], // the entry itself is judged; its parent was pruned
  ['cache', 'mycache', true, false],
  // Trailing '/': directories only.
  ['node_modules/', 'node_modules', true, true],
  ['node_modules/', 'x/node_modules', true, true],
  ['node_modules/', 'node_modules', false, false],
  ['build/', 'build', false, false],
  // Leading '/': anchored to the source dir's root.
  ['/cache', 'cache', true, true],
  ['/cache', 'a/cache', true, false],
  ['/*.tmp', 'x.tmp', false, true],
  ['/*.tmp', 'd/x.tmp', false, false],
  // A slash in the middle anchors too.
  ['var/tmp', 'var/tmp', true, true],
  ['var/tmp', 'x/var/tmp', true, false],
  ['doc/*.txt', 'doc/a.txt', false, true],
  ['doc/*.txt', 'doc/sub/a.txt', false, false], // '*' does not cross '/'
  ['var/tmp/', 'var/tmp', false, false],
  // '**'
  ['**/foo', 'foo', true, true],
  ['**/foo', 'a/b/foo', false, true],
  ['**/foo/bar', 'foo/bar', false, true],
  ['**/foo/bar', 'x/foo/bar', false, true],
  ['**/foo/bar', 'x/foo/y/bar', false, false],
  ['abc/**', 'abc/x', false, true],
  ['abc/**', 'abc/x/y/z', false, true],
  ['abc/**', 'abc', true, false], // everything inside, not the directory itself
  ['a/**/b', 'a/b', false, true],
  ['a/**/b', 'a/x/b', false, true],
  ['a/**/b', 'a/x/y/b', false, true],
  ['a/**/b', 'a/xb', false, false],
  ['a/**/b', 'c/a/x/b', false, false],
  ['**', 'anything', false, true],
  ['**', 'deep/er', true, true],
  ['/**', 'x/y', false, true],
  ['**/**', 'x', false, true],
  ['a**b', 'axyzb', false, true], // not a whole segment: same as '*'
  ['a**b', 'ax/yb', false, false],
  ['**/*.o', 'src/x.o', false, true],
  // '?'
  ['?.c', 'a.c', false, true],
  ['?.c', 'ab.c', false, false],
  ['a?b', 'a/b', false, false], // '?' never matches '/'
  // Character classes.
  ['[abc].txt', 'b.txt', false, true],
  ['[abc].txt', 'd.txt', false, false],
  ['[a-c]x', 'bx', false, true],
  ['[!a-c]x', 'bx', false, false],
  ['[!a-c]x', 'dx', false, true],
  ['[^a-c]x', 'dx', false, true],
  ['[]]x', ']x', false, true], // ']' first is literal
  ['[!]]x', 'ax', false, true],
  ['[a-]x', '-x', false, true],
  ['[[:digit:]]*', '7up', false, true],
  ['[[:digit:]]*', 'up7', false, false],
  ['[[:upper:][:digit:]]', 'Q', false, true],
  ['x[!y]z', 'x/z', false, false],
  // Escapes.
  ['\\*.txt', '*.txt', false, true],
  ['\\*.txt', 'a.txt', false, false],
  ['\\!important', '!important', false, true],
  ['\\[x]', '[x]', false, true],
  ['a\\?', 'a?', false, true],
  ['a\\?', 'ab', false, false],
  // Regex metacharacters are literal.
  ['a.b', 'axb', false, false],
  ['(x)+$', '(x)+$', false, true],
  ['{a,b}', 'a', false, false], // no brace expansion (git has none)
  ['{a,b}', '{a,b}', false, true],
  // Case-sensitive.
  ['*.LOG', 'a.log', false, false],
  // Unicode names.
  ['café', 'café', false, true],
  ['caf?', 'café', false, true], // '?' is one character, not one byte
  ['日本*', 'x/日本語.txt', false, true],
  ['?', '😀', false, true],
  // Negation: the last matching pattern wins.
  [['*.log', '!keep.log'], 'keep.log', false, false],
  [['*.log', '!keep.log'], 'other.log', false, true],
  [['!keep.log', '*.log'], 'keep.log', false, true],
  [['/tmp/', '!/tmp/'], 'tmp', true, false],
  [['*', '!*.c'], 'x.c', false, false],
  [['*', '!*/'], 'dir', true, false],
  [['*', '!*/'], 'file', false, true],
  // The source dir itself is never excluded.
  ['**', '', true, false],
];

describe('compileExcludes', () => {
  it.each(table)('%j on %j (dir %s) → %s', (patterns, path, isDir, excluded) => {
    const m = compileExcludes(typeof patterns === 'string' ? [patterns] : patterns);
    expect(m.matches(path, isDir)).toBe(excluded);
  });

  it('no patterns exclude nothing', () => {
    expect(compileExcludes([]).matches('a/b', false)).toBe(false);
  });

  it('keeps the patterns it was compiled from', () => {
    expect(compileExcludes(['*.log', '!a.log']).patterns).toEqual(['*.log', '!a.log']);
  });

  it('a re-include inside an excluded directory does not apply (the walker never descends)', () => {
    const m = compileExcludes(['build/', '!build/keep.txt']);
    expect(m.matches('build', true)).toBe(true);
    // Asked out of context, the file alone is re-included ...
    expect(m.matches('build/keep.txt', false)).toBe(false);
    // ... but its directory is excluded, which is what the walk does.
    expect(m.excludesPath('build/keep.txt', false)).toBe(true);
  });

  it('"dir/*" + "!dir/file" keeps the directory and re-includes the file (docs/CONFIG.md)', () => {
    const m = compileExcludes(['build/*', '!build/keep.txt']);
    expect(m.matches('build', true)).toBe(false);
    expect(m.matches('build/out.o', false)).toBe(true);
    expect(m.excludesPath('build/keep.txt', false)).toBe(false);
  });

  it('excludesPath checks every ancestor as a directory', () => {
    const m = compileExcludes(['cache/', '/var/tmp']);
    expect(m.excludesPath('a/cache/x/y.txt', false)).toBe(true);
    expect(m.excludesPath('var/tmp/a', false)).toBe(true);
    expect(m.excludesPath('x/var/tmp/a', false)).toBe(false);
    expect(m.excludesPath('a/cachex/y', false)).toBe(false);
    expect(m.excludesPath('cache', false)).toBe(false); // a file named cache
  });

  it('matches byte paths on their UTF-8 decoding, invalid bytes as U+FFFD', () => {
    const m = compileExcludes(['*.log', 'bad?name', 'x\uFFFDy']);
    const latin1 = Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9]), Buffer.from('.log')]);
    expect(m.matches(latin1, false)).toBe(true);
    expect(m.matches(Buffer.from([0x62, 0x61, 0x64, 0xff, 0x6e, 0x61, 0x6d, 0x65]), false)).toBe(true);
    expect(m.matches(Buffer.from([0x78, 0xc3, 0x79]), false)).toBe(true); // truncated sequence
    expect(m.matches(new Uint8Array(Buffer.from('dir/caf\u00e9.log')), false)).toBe(true);
    // A view into a larger buffer decodes only its own bytes.
    const big = Buffer.from('zzzz.log|x.txt');
    expect(m.matches(big.subarray(9), false)).toBe(false);
    expect(m.matches(big.subarray(0, 8), false)).toBe(true);
  });

  it('names that contain newlines and other control characters match like any other', () => {
    const m = compileExcludes(['*.tmp', 'a?b']);
    expect(m.matches('line\nbreak.tmp', false)).toBe(true);
    expect(m.matches('a\nb', false)).toBe(true);
  });

  const bad: [string, RegExp][] = [
    ['', /bad exclude pattern "": matches nothing/],
    ['/', /matches nothing/],
    ['!', /nothing after "!"/],
    ['[abc', /unterminated character class/],
    ['a[', /unterminated character class/],
    ['x\\', /ends with a lone "\\"/],
    ['a//b', /empty path segment/],
    ['../x', /"\." and "\.\." segments never match/],
    ['a/./b', /segments never match/],
    ['[z-a]', /range z-a is out of order/],
    ['[[:foo:]]', /unknown character class \[:foo:\]/],
  ];
  it.each(bad)('rejects %j', (pattern, message) => {
    expect(() => compileExcludes([pattern])).toThrow(ExcludePatternError);
    expect(() => compileExcludes([pattern])).toThrow(message);
  });
});

describe('excludesForSource', () => {
  const dirs = ['/etc', '/home/u/data', '/home/u/data2'];
  it.each([
    ['/etc/ssl/private', '/etc', ['/ssl/private']],
    ['/etc/ssl/private', '/home/u/data', []],
    ['!/etc/ssl/keep', '/etc', ['!/ssl/keep']],
    ['/home/u/data/cache/', '/home/u/data', ['/cache/']],
    ['/home/u/data/cache/', '/home/u/data2', []],
    ['/home/u/data2/x', '/home/u/data2', ['/x']],
    ['/home/u/data2/x', '/home/u/data', []],
    ['/cache', '/etc', ['/cache']], // anchored relative: not a source dir path
    ['/cache', '/home/u/data', ['/cache']],
    ['*.log', '/etc', ['*.log']],
    ['/etc', '/etc', ['/etc']], // the bare dir is no absolute pattern (the loader rejects it)
    ['/etcetera/x', '/etc', ['/etcetera/x']], // component-wise prefix only
  ] as [string, string, string[]][])('%j for %s → %j', (pattern, dir, expected) => {
    expect(excludesForSource([pattern], dir, dirs)).toEqual(expected);
  });

  it('with "/" as the source dir, absolute and anchored patterns coincide', () => {
    expect(excludesForSource(['/proc/', '/var/cache', '*.tmp'], '/', ['/'])).toEqual(['/proc/', '/var/cache', '*.tmp']);
    const m = compileExcludes(excludesForSource(['/proc/'], '/', ['/']));
    expect(m.matches('proc', true)).toBe(true);
    expect(m.matches('x/proc', true)).toBe(false);
  });

  it('an absolute pattern then matches at the source dir root', () => {
    const m = compileExcludes(excludesForSource(['/home/u/data/tmp/*.bak'], '/home/u/data', dirs));
    expect(m.matches('tmp/a.bak', false)).toBe(true);
    expect(m.matches('x/tmp/a.bak', false)).toBe(false);
  });
});
