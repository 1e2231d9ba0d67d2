/**
 * What the restore engine tells its caller while it runs, and what it returns. Renderers (text
 * progress, JSON) subscribe to these events; the engine never prints.
 */
import type { Withheld } from './safety.js';

/** Totals of what the selection holds, known after the first pass over the entries. */
export interface RestoreTotals {
  /** Regular files selected (every hard-link name counted). */
  files: number;
  /** Content bytes to restore (a hard-link group counted once). */
  bytes: number;
  dirs: number;
  symlinks: number;
  /** FIFOs, sockets, devices. */
  specials: number;
}

/** Counters that grow while restoring. */
export interface RestoreProgress {
  /** Regular files completed (written, linked, or found up to date). */
  files: number;
  /** Content bytes completed (written, or found up to date). */
  bytes: number;
  /** Bytes downloaded from the store (blob ranges and headers; not the metadata). */
  downloaded: number;
  /** Files that could not be restored so far. */
  failed: number;
}

export interface FailedPath {
  /** Snapshot path (relative, bytes) of the entry. */
  path: Buffer;
  message: string;
  /** The target failed (permissions, a name in the way, ...), not the store's data. */
  local?: boolean;
}

export type RestoreEvent =
  /** The snapshot is resolved and its metadata decrypted and validated. */
  | { type: 'snapshot'; id: string; host: string; time: Date; files: number; bytes: number }
  /** The first pass is done: directories, links and empty files exist; totals are known. */
  | { type: 'totals'; totals: RestoreTotals }
  /** Emitted after each fetched range and each batch of entries; renderers throttle. */
  | { type: 'progress'; progress: RestoreProgress; totals: RestoreTotals }
  /** An entry could not be restored (missing or corrupt data, unsafe path, I/O error). */
  | { type: 'failed'; path: Buffer; message: string; local?: boolean }
  /** Something was skipped that is not an error (a socket, a device when not root). */
  | { type: 'warning'; path: Buffer; message: string };

/** What runRestore returns. */
export interface RestoreSummary {
  snapshotId: string;
  /** The directory written into (its real path). */
  target: string;
  files: number;
  dirs: number;
  symlinks: number;
  specials: number;
  /** Hard links created (also counted in `files`). */
  hardLinks: number;
  /** Content bytes of the restored files. */
  bytes: number;
  /** Entries found up to date (overwrite mode) and left alone. */
  unchanged: number;
  /** Entries that could not be restored; the first MAX_REPORTED are listed in `failures`. */
  failed: number;
  /**
   * Of `failed`, those the target could not take (a RestoreError: permissions, a symlink in the
   * way without --overwrite, ...): the CLI exits 1 for these, 5 when the store's data failed.
   */
  failedLocal: number;
  failures: FailedPath[];
  warnings: number;
  /** What the safety options (--no-owner, --no-devices, ...) withheld; not errors. */
  withheld: Withheld;
  /** Bytes downloaded from blobs, and the number of GET requests for them. */
  downloaded: number;
  requests: number;
  elapsedMs: number;
}

/** How many failures a summary lists by path (every one is also emitted as an event). */
export const MAX_REPORTED = 1000;
