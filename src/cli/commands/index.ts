/** Every CLI command, in the order `vaultik --help` lists them. */
import type { Command } from '../command.js';
import { notImplemented } from './notImplemented.js';
import { keygenCommand } from './keygen.js';
import { backupCommand } from './backup.js';
import { restoreCommand } from './restore.js';
import { fetchCommand } from './fetch.js';
import { snapshotsCommand } from './snapshots.js';
import { lsCommand } from './ls.js';

export const commands: Command[] = [
  backupCommand,
  restoreCommand,
  fetchCommand,
  snapshotsCommand,
  lsCommand,
  notImplemented('prune', 'delete blobs that no snapshot references', 'vaultik prune <bucket> <prefix> [--dry-run] [--grace 24h]'),
  notImplemented('forget', 'remove snapshots by a retention policy', 'vaultik forget <bucket> <prefix> [--keep-last N] ...'),
  notImplemented('verify', 'check blob integrity (no key needed; --deep with the key)', 'vaultik verify <bucket> <prefix> [--deep] [--sample 10%]'),
  keygenCommand,
];
