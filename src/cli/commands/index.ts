/** Every CLI command, in the order `vaultik --help` lists them. */
import type { Command } from '../command.js';
import { notImplemented } from './notImplemented.js';
import { keygenCommand } from './keygen.js';

export const commands: Command[] = [
  notImplemented('backup', 'back up the source dirs of a config file', 'vaultik backup <config.yaml> [--cron | --daemon] [--json]'),
  notImplemented('restore', 'restore a whole snapshot into a directory', 'vaultik restore <bucket> <prefix> <snapshot_id|latest> <target_dir>'),
  notImplemented('fetch', 'restore one file or subtree of a snapshot', 'vaultik fetch <bucket> <prefix> <snapshot_id|latest> <filepath> <target_file_or_dir>'),
  notImplemented('snapshots', 'list snapshots (no key needed)', 'vaultik snapshots <bucket> <prefix>'),
  notImplemented('ls', 'list the entries of a snapshot', 'vaultik ls <bucket> <prefix> <snapshot_id|latest> [path]'),
  notImplemented('prune', 'delete blobs that no snapshot references', 'vaultik prune <bucket> <prefix> [--dry-run] [--grace 24h]'),
  notImplemented('forget', 'remove snapshots by a retention policy', 'vaultik forget <bucket> <prefix> [--keep-last N] ...'),
  notImplemented('verify', 'check blob integrity (no key needed; --deep with the key)', 'vaultik verify <bucket> <prefix> [--deep] [--sample 10%]'),
  keygenCommand,
];
