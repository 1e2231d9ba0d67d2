/**
 * Object keys and prefixes: validation and joining, shared by every backend so that a key that
 * works on one store works on all of them.
 */
import { StorageError } from './types.js';

/**
 * Normalizes a store prefix: '' stays '', anything else ends in exactly one '/' and has no leading
 * '/' ("host1" → "host1/", "/a/b/" → "a/b/").
 * @throws StorageError 'permanent' for a prefix with empty, '.' or '..' segments.
 */
export function normalizePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  if (trimmed === '') return '';
  for (const segment of trimmed.split('/')) checkSegment(segment, prefix, 'prefix');
  return trimmed + '/';
}

/**
 * Checks a key relative to the store prefix: non-empty '/'-separated segments, none '.' or '..',
 * no NUL, at most 900 UTF-8 bytes (S3 allows 1024 including the prefix).
 * @throws StorageError 'permanent' for an invalid key: a caller bug, never retried.
 */
export function checkKey(key: string): void {
  if (key === '' || Buffer.byteLength(key) > 900) {
    throw new StorageError(`invalid object key '${key}': empty or longer than 900 bytes`, 'permanent', key);
  }
  for (const segment of key.split('/')) checkSegment(segment, key, 'key');
}

function checkSegment(segment: string, whole: string, what: string): void {
  if (segment === '' || segment === '.' || segment === '..' || segment.includes('\0')) {
    throw new StorageError(
      `invalid object ${what} '${whole}': empty, '.' or '..' path segments and NUL are not allowed`,
      'permanent',
      whole,
    );
  }
}

/** Compares keys the way S3 lists them: by their UTF-8 bytes (not UTF-16 code units). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}
