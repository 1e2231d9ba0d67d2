/** Every CLI command, in the order `vaultik --help` lists them. */
import type { CompletionCommand } from '../completion.js';
import { keygenCommand } from './keygen.js';
import { backupCommand } from './backup.js';
import { restoreCommand } from './restore.js';
import { fetchCommand } from './fetch.js';
import { snapshotsCommand } from './snapshots.js';
import { lsCommand } from './ls.js';
import { pruneCommand } from './prune.js';
import { forgetCommand } from './forget.js';
import { verifyCommand } from './verify.js';
import { completionCommand } from './completion.js';
import { diffCommand } from './diff.js';
import { dumpCommand } from './dump.js';
import { findCommand } from './find.js';
import { statsCommand } from './stats.js';
import { statusCommand } from './status.js';

export const commands: CompletionCommand[] = [
  backupCommand,
  statusCommand,
  restoreCommand,
  fetchCommand,
  dumpCommand,
  snapshotsCommand,
  lsCommand,
  diffCommand,
  findCommand,
  statsCommand,
  pruneCommand,
  forgetCommand,
  verifyCommand,
  keygenCommand,
  completionCommand,
];
