/**
 * Test hooks stay out of the product (issue 16 item 16): the shipped `vaultik` never reads
 * VAULTIK_TEST_KILL_AT or VAULTIK_TEST_SHARD_ENTRIES, so a user who sets one by accident gets a
 * normal backup, not a SIGKILLed one. Only the test entry (test/helpers/crash-entry.mjs)
 * installs the hooks.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseIdentity } from '../../src/crypto/index.js';
import { listSnapshots, readRoot } from '../../src/snapshot/index.js';
import { openStorage } from '../../src/storage/index.js';
import { REPO, cleanEnv, ensureBuilt, runCli, startNode } from '../backup/cli.js';
import { makeWorkspace } from '../backup/helpers.js';

const CRASH_ENTRY = fileURLToPath(new URL('../helpers/crash-entry.mjs', import.meta.url));
const HOOK_ENV = { VAULTIK_TEST_KILL_AT: 'scan', VAULTIK_TEST_SHARD_ENTRIES: '1' };

beforeAll(() => ensureBuilt(), 120_000);

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((d) => d.isFile() && d.name.endsWith('.js'))
    .map((d) => join(d.parentPath, d.name));
}

describe('test hooks', () => {
  it('the shipped binary ignores VAULTIK_TEST_KILL_AT and VAULTIK_TEST_SHARD_ENTRIES: the backup completes, one shard', async () => {
    const ws = makeWorkspace();
    try {
      for (let i = 0; i < 5; i++) writeFileSync(join(ws.src, `f${i}`), `file ${i}\n`);
      const r = await runCli(['backup', ws.configPath, '--cron'], cleanEnv(HOOK_ENV));
      expect(r.signal, r.stderr).toBeNull();
      expect(r.code, r.stderr).toBe(0);
      const storage = openStorage({ type: 'local', path: ws.store, prefix: '' });
      try {
        const [snap, ...more] = await listSnapshots(storage, 'index/');
        expect(more).toEqual([]);
        // Shards of one entry would give six (the root directory and five files).
        const root = await readRoot(storage, snap!, [parseIdentity(ws.identity)], ws.root);
        expect(root.shards).toHaveLength(1);
      } finally {
        await storage.close();
      }
    } finally {
      ws.cleanup();
    }
  }, 60_000);

  it('the test entry installs them: the same backup is SIGKILLed at the crash point', async () => {
    const ws = makeWorkspace();
    try {
      writeFileSync(join(ws.src, 'f'), 'x');
      const r = await startNode([CRASH_ENTRY, 'backup', ws.configPath, '--cron'], cleanEnv(HOOK_ENV)).done;
      expect(r.signal, r.stderr).toBe('SIGKILL');
    } finally {
      ws.cleanup();
    }
  }, 60_000);

  it('no built module of the product names a test variable', () => {
    const named = filesUnder(join(REPO, 'dist')).filter((f) => readFileSync(f, 'utf8').includes('VAULTIK_TEST_'));
    expect(named).toEqual([]);
  });
});
