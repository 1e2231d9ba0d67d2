#!/usr/bin/env node
/**
 * TEST-ONLY entry point: the built CLI (dist/cli/bin.js) with the test hooks of
 * src/backup/testHooks.ts installed from the environment. The shipped binary never reads these
 * variables; only this file does, so the crash suite can SIGKILL a real backup at a named point.
 *
 *   VAULTIK_TEST_KILL_AT=<point>[:<n>]   SIGKILL at the n-th hit of a crash point
 *   VAULTIK_TEST_SHARD_ENTRIES=<n>       shards of at most n entries
 *
 * Usage: node test/helpers/crash-entry.mjs <vaultik arguments…> (after `npm run build`).
 */
import { fileURLToPath } from 'node:url';

const dist = new URL('../../dist/', import.meta.url);
const { installTestHooks } = await import(new URL('backup/testHooks.js', dist).href);
const entries = Number(process.env.VAULTIK_TEST_SHARD_ENTRIES);
installTestHooks({
  killAt: process.env.VAULTIK_TEST_KILL_AT || undefined,
  shardEntries: Number.isSafeInteger(entries) && entries >= 1 ? entries : undefined,
});
// The shipped entry point, as `vaultik` runs it; it imports the same testHooks module instance.
process.argv[1] = fileURLToPath(new URL('cli/bin.js', dist));
await import(new URL('cli/bin.js', dist).href);
