/**
 * One snapshot entry for humans and for JSON: `ls -l`-style type and mode, mtimes with their
 * nanoseconds, and the entry's fields as JSON. Shared by ls, diff and find.
 */
import type { Entry } from '../../snapshot/index.js';
import { jsonPath } from './json.js';

const TYPE_CHAR: Record<Entry['type'], string> = {
  file: '-',
  dir: 'd',
  symlink: 'l',
  fifo: 'p',
  socket: 's',
  chardev: 'c',
  blockdev: 'b',
  other: '?',
};

/** `drwxr-xr-x`-style type and mode, with setuid/setgid/sticky letters. */
export function modeString(type: Entry['type'], mode: number): string {
  const rwx = (bits: number, special: boolean, ch: string): string =>
    `${bits & 4 ? 'r' : '-'}${bits & 2 ? 'w' : '-'}${special ? (bits & 1 ? ch : ch.toUpperCase()) : bits & 1 ? 'x' : '-'}`;
  return (
    TYPE_CHAR[type] +
    rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, 's') +
    rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, 's') +
    rwx(mode & 7, (mode & 0o1000) !== 0, 't')
  );
}

/** mtime (ns) as ISO 8601 UTC with nanoseconds. */
export function isoNs(ns: bigint): string {
  const ms = ns / 1_000_000n - (ns < 0n && ns % 1_000_000n !== 0n ? 1n : 0n);
  const sub = ns - ms * 1_000_000n;
  const base = new Date(Number(ms)).toISOString().slice(0, -1); // ...mmm
  return `${base}${sub.toString().padStart(6, '0')}Z`;
}

/** An mtime to the second, as `ls -l` columns show it: `2026-12-06 23:10:00`. */
export function shortTime(ns: bigint): string {
  return isoNs(ns).slice(0, 19).replace('T', ' ');
}

/**
 * An entry's fields for JSON (its path absolute, as on the source; `pathHex` when it is not
 * UTF-8). The entry's type is `kind`: in JSON Lines output `type` names the line.
 */
export function entryJson(e: Entry): Record<string, unknown> {
  return {
    ...jsonPath(Buffer.concat([Buffer.from('/'), e.path])),
    kind: e.type,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: e.size,
    mtime: isoNs(e.mtimeNs),
    ...(e.target ? { target: e.target.toString('utf8') } : {}),
    ...(e.rdev !== undefined ? { rdev: e.rdev } : {}),
    ...(e.linkGroup !== undefined ? { linkGroup: e.linkGroup } : {}),
  };
}
