/** Every CLI command, in the order `vaultik --help` lists them. */
import type { Command } from '../command.js';
import { keygenCommand } from './keygen.js';
import { backupCommand } from './backup.js';
import { restoreCommand } from './restore.js';
import { fetchCommand } from './fetch.js';
import { snapshotsCommand } from './snapshots.js';
import { lsCommand } from './ls.js';
import { pruneCommand } from './prune.js';
import { forgetCommand } from './forget.js';
import { verifyCommand } from './verify.js';
import { statusCommand } from './status.js';

export const commands: Command[] = [
  backupCommand,
  statusCommand,
  restoreCommand,
  fetchCommand,
  snapshotsCommand,
  lsCommand,
  pruneCommand,
  forgetCommand,
  verifyCommand,
  keygenCommand,
];
