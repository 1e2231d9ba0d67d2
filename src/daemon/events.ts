/**
 * What the daemon reports. The daemon only emits these; the CLI turns them into log lines (text
 * with a timestamp, or one JSON object per line). Every event is plain JSON (no Buffers, no
 * bigints) and carries the ISO time it happened.
 */

/** How a run chose its entries: a walk of everything, or the previous scan plus dirty paths. */
export type ScanKind = 'full' | 'dirty';

export type DaemonEventBody =
  /** The daemon is up (before the watcher and the start-up run). */
  | {
      type: 'started';
      config: string;
      pid: number;
      sourceDirs: string[];
      store: string;
      backupIntervalMs: number;
      fullScanIntervalMs: number;
      minTimeBetweenRunMs: number;
    }
  /** Every directory of the sources is watched. */
  | { type: 'watching'; directories: number; ms: number }
  /** The watcher failed: from now on every run does a full stat scan (the daemon keeps going). */
  | { type: 'watch-failed'; message: string; fullScanEveryMs: number }
  /** A backup run begins. `fullScan`: this run's changes come from a full stat scan. */
  | { type: 'run-start'; scan: ScanKind; fullScan: boolean; dirtyPaths: number }
  /** A run wrote a snapshot. */
  | {
      type: 'run';
      snapshotId: string;
      scan: ScanKind;
      fullScan: boolean;
      dirtyPaths: number;
      /** Files read because they were new or changed. */
      filesChanged: number;
      filesNew: number;
      /** Files in the snapshot. */
      files: number;
      /** Bytes written to the store: new blobs and the snapshot's metadata. */
      bytesAdded: number;
      bytesRead: number;
      durationMs: number;
      /** Paths warned about (see the warnings before it): left out, or stored as last read. */
      warnings: number;
      /** Of the warnings: files that changed during every read, stored as last read. */
      filesChangedWhileRead: number;
    }
  /** Nothing changed since the last snapshot: no run. */
  | { type: 'skipped'; fullScan: boolean; reason: string }
  /** A run failed; the daemon retries at `retryInMs` (backing off while failures repeat). */
  | { type: 'run-failed'; message: string; exitCode: number; failures: number; retryInMs: number }
  /** A path left out of a run, or a directory the full scan could not read. */
  | { type: 'warning'; message: string; path?: string }
  | { type: 'notice'; message: string }
  /** SIGHUP: the config file was read again. `deferred`: it applies once the run in progress ends. */
  | { type: 'reloaded'; config: string; changed: string[]; deferred: boolean }
  /** SIGHUP with a config that does not load: the running config stays. */
  | { type: 'reload-failed'; config: string; message: string }
  /** SIGTERM/SIGINT: a run in progress is cancelled (no snapshot is written). */
  | { type: 'stopping'; reason: string; runInProgress: boolean }
  | { type: 'stopped'; interruptedRun: boolean };

export type DaemonEvent = { time: string } & DaemonEventBody;
