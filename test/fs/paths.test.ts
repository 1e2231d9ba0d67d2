import { describe, expect, it } from 'vitest';
import { UnsafePathError, displayPath, joinAbsPath, joinEntryPath, splitEntryPath } from '../../src/fs/paths.js';
import { ExitCode } from '../../src/errors.js';

describe('entry paths', () => {
  it('splits safe byte paths into components, bytes untouched', () => {
    const odd = Buffer.from([0x61, 0xff, 0x2f, 0x2e, 0x2e, 0x2e, 0x2f, 0x2e, 0x68]); // "a\xff/.../.h"
    expect(splitEntryPath(odd).map((c) => c.toString('hex'))).toEqual(['61ff', '2e2e2e', '2e68']);
    expect(splitEntryPath(Buffer.from('home/u/data')).map(String)).toEqual(['home', 'u', 'data']);
  });

  it.each([
    ['', 'empty path'],
    ['/etc/passwd', 'absolute path'],
    ['a/../../x', "'..' path component"],
    ['..', "'..' path component"],
    ['./a', "'.' path component"],
    ['a//b', 'empty path component'],
    ['a/', 'empty path component'],
    ['a\0b', 'NUL byte in path'],
  ])('rejects %j (%s) with a DATA error', (path, reason) => {
    let err: unknown;
    try {
      splitEntryPath(Buffer.from(path));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnsafePathError);
    expect((err as UnsafePathError).reason).toBe(reason);
    expect((err as UnsafePathError).exitCode).toBe(ExitCode.DATA);
  });

  it('joins without doubling the root slash', () => {
    expect(joinEntryPath(Buffer.alloc(0), Buffer.from('a')).toString()).toBe('a');
    expect(joinEntryPath(Buffer.from('a'), Buffer.from('b')).toString()).toBe('a/b');
    expect(joinAbsPath(Buffer.from('/'), Buffer.from('etc')).toString()).toBe('/etc');
    expect(joinAbsPath(Buffer.from('/etc'), Buffer.from('x')).toString()).toBe('/etc/x');
  });

  it('displays names unambiguously: no raw newlines, invalid bytes as \\x escapes', () => {
    expect(displayPath(Buffer.from('dir/日本語'))).toBe("'dir/日本語'");
    expect(displayPath(Buffer.from('new\nline'))).toBe("'new\\x0aline'");
    expect(displayPath(Buffer.from([0x66, 0xff, 0x27]))).toBe("'f\\xff\\x27'");
  });
});
