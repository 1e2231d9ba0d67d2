/**
 * Typed errors and the process exit codes they map to. Every command throws a VaultikError (or a
 * subclass) for failures the user can act on; the CLI maps `exitCode` to the process exit status
 * in one place (src/cli/main.ts). The table is documented in README.md ("Exit codes").
 */

export const ExitCode = {
  /** Everything worked. */
  OK: 0,
  /** Unexpected failure (a bug, or an error with no better class). */
  FAILURE: 1,
  /** Bad command line or configuration: nothing was done. */
  USAGE: 2,
  /** Backup finished and wrote a snapshot, but some files were skipped or changed while read. */
  WARNINGS: 3,
  /** No configured identity can decrypt this store's data (wrong private key). Nothing written. */
  NO_IDENTITY: 4,
  /** Data problem in the store: missing or corrupted objects; some files could not be restored. */
  DATA: 5,
  /** The store could not be reached or refused access (network, credentials, missing bucket or local store directory). */
  STORAGE: 6,
  /** Another backup holds the lock on this state cache. */
  LOCKED: 7,
  /** forget refused: suspect snapshots exist (forged, or a clock far off) and no --suspects choice. Nothing removed. */
  SUSPECT: 8,
  /** A `hooks:` command failed: `before` skips the run (no snapshot); after `after`, the snapshot was written. */
  HOOK: 9,
  /** Interrupted by SIGINT/SIGTERM before completion: no snapshot was written. */
  INTERRUPTED: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export class VaultikError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue = ExitCode.FAILURE,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'VaultikError';
  }
}

/** A usage or configuration error: exit code 2. */
export class UsageError extends VaultikError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, ExitCode.USAGE, options);
    this.name = 'UsageError';
  }
}

/** Human-readable message of any thrown value. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
