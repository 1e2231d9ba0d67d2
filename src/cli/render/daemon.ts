/** The daemon's text log (`vaultik backup --daemon` without --json): one line per event. */
import type { DaemonEvent } from '../../daemon/index.js';
import { escapeControlText } from '../../fs/paths.js';
import { formatBytes, formatCount, formatDuration, plural } from './format.js';

/** One line of the daemon's text log (undefined: not logged in text, only in --json). */
export function daemonLogLine(e: DaemonEvent): string | undefined {
  // One event, one line: a multi-line message (a config error lists its problems) is joined.
  const msg = (text: string): string => escapeControlText(text.replace(/\s*\n\s*/g, '; '));
  const t = e.time;
  switch (e.type) {
    case 'started':
      return (
        `${t} vaultik daemon started (pid ${e.pid}): ${plural(e.sourceDirs.length, 'source dir')} to ${e.store}; ` +
        `a run every ${formatDuration(e.backupIntervalMs)}, a full scan every ${formatDuration(e.fullScanIntervalMs)}, ` +
        `runs at least ${formatDuration(e.minTimeBetweenRunMs)} apart`
      );
    case 'watching':
      return `${t} watching ${plural(e.directories, 'directory', 'directories')} for changes (ready in ${formatDuration(e.ms)})`;
    case 'watch-failed':
      return `${t} warning: cannot watch for changes: ${msg(e.message)}; falling back to a full scan at every run (every ${formatDuration(e.fullScanEveryMs)})`;
    case 'run-start':
      return undefined;
    case 'run': {
      const how = e.scan === 'full' ? 'full walk' : e.fullScan ? `full scan found ${plural(e.dirtyPaths, 'changed path')}` : `${plural(e.dirtyPaths, 'dirty path')} re-checked`;
      const leftOut = e.warnings - e.filesChangedWhileRead;
      const changed = e.filesChangedWhileRead > 0 ? `; ${plural(e.filesChangedWhileRead, 'file')} changed while read, stored as last read` : '';
      const warned = e.warnings > 0 ? `${changed}${leftOut > 0 ? `; ${plural(leftOut, 'path')} left out` : ''} (see the warnings above)` : '';
      return `${t} snapshot ${e.snapshotId}: ${plural(e.filesChanged, 'file')} changed (${formatCount(e.filesNew)} new), ${formatBytes(e.bytesAdded)} added, ${formatDuration(e.durationMs)} (${how})${warned}`;
    }
    case 'skipped':
      return `${t} skipped: ${e.reason}`;
    case 'run-failed':
      return `${t} error: backup failed: ${msg(e.message)}; retrying in ${formatDuration(e.retryInMs)} (${plural(e.failures, 'failure')} in a row)`;
    case 'warning':
      return `${t} warning: ${msg(e.message)}`;
    case 'notice':
      return `${t} note: ${msg(e.message)}`;
    case 'reloaded': {
      const what = e.changed.length > 0 ? ` (changed: ${e.changed.join(', ')})` : ' (no change)';
      return `${t} config reloaded from ${e.config}${what}; ${e.deferred ? 'applies once the run in progress ends' : 'applies from the next run'}`;
    }
    case 'reload-failed':
      return `${t} error: config reload failed, the running config stays: ${msg(e.message)}`;
    case 'stopping':
      return `${t} stopping (${msg(e.reason)})${e.runInProgress ? ': cancelling the run in progress; no snapshot is written' : ''}`;
    case 'stopped':
      return `${t} stopped`;
  }
}
