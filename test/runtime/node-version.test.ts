/** The executable refuses a Node.js older than 22 with a message, instead of crashing in SQLite. */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MIN_NODE_MAJOR, unsupportedNode } from '../../src/cli/nodeVersion.js';
import { cleanEnv, ensureBuilt, MAIN } from '../backup/cli.js';

describe('supported Node.js versions', () => {
  it('accepts 22 and later, refuses older ones', () => {
    expect(MIN_NODE_MAJOR).toBe(22);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${MIN_NODE_MAJOR}`); // npm ci refuses what the executable refuses
    for (const v of ['v22.0.0', 'v22.23.3', 'v24.21.0', 'v25.2.1', process.version]) expect(unsupportedNode(v)).toBeUndefined();
    for (const v of ['v20.20.2', 'v18.19.0', 'v21.7.3']) expect(unsupportedNode(v)).toMatch(new RegExp(`needs Node.js 22 or newer .*this is Node.js ${v}\\.`));
  });

  // The machine's own Node (Debian's /usr/bin/node) is 20 here; where it is not older than 22
  // there is no old Node to run, and the test says so.
  const oldNode = (() => {
    try {
      const v = execFileSync('/usr/bin/node', ['--version'], { encoding: 'utf8' }).trim();
      return unsupportedNode(v) === undefined ? undefined : v;
    } catch {
      return undefined;
    }
  })();
  it.skipIf(oldNode === undefined)(`the executable says so and exits 1 on an old Node (/usr/bin/node ${oldNode ?? 'absent or current'})`, () => {
    ensureBuilt();
    const r = spawnSync('/usr/bin/node', [MAIN, 'snapshots', 'file:///nonexistent', 'x/'], { env: cleanEnv(), encoding: 'utf8' });
    expect({ status: r.status, signal: r.signal, stdout: r.stdout }).toEqual({ status: 1, signal: null, stdout: '' });
    expect(r.stderr).toContain(`needs Node.js 22 or newer (22 or 24 LTS); this is Node.js ${oldNode}.`);
  });
});
