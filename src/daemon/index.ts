/**
 * The daemon (`vaultik backup <config> --daemon`): inotify-driven continuous backup. Its main exports
 * (docs/DESIGN.md, "Architecture"); the CLI renders its events as log lines.
 */
export { Daemon, type DaemonOptions } from './daemon.js';
export type { DaemonEvent, DaemonEventBody, ScanKind } from './events.js';
export { inotifyWatcher, WatchError, type Watcher, type WatcherFactory, type WatcherOptions, type WatchRoot } from './watcher.js';
export { retryDelay } from './schedule.js';
export { treePathFor } from './tree.js';
