/**
 * The backup engine's main exports (docs/DESIGN.md, "Architecture"): runBackup() and the events
 * it emits. The CLI and the daemon call it; it never imports the CLI.
 */
export { READ_ATTEMPTS, loadBackupSigningKey, runBackup, type BackupDeps, type BackupTuning } from './engine.js';
export { emptyProgress, type BackupEvent, type BackupProgress, type BackupSummary, type BackupWarning } from './events.js';
export { scanSources, selfPaths, excludeFor, withHardLinks, type ScanOptions, type SelfPaths, type SourceEntry } from './sources.js';
