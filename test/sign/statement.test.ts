/** The snapshot statement: its exact text, and refusal of fields that could forge a line. */
import { describe, expect, it } from 'vitest';
import { snapshotStatement, SNAPSHOT_NAMESPACE } from '../../src/sign/index.js';
import { fixture } from './kit.js';

const root = '4813494d137e1631bba301d5acab6e7bb7aa74ce1185d456565ef51d737677b2';
const manifest = '05b3abf2579a5eb66403cd78be557fd860633a1fe2103c7642030defe32c657f';

describe('snapshotStatement', () => {
  it('is exactly the documented text (the fixture statement signed by ssh-keygen)', () => {
    const s = snapshotStatement({ snapshot: 'host1-20261206T204500.000Z', root, manifest });
    expect(s).toBe(
      'vaultik snapshot signature v1\nsnapshot host1-20261206T204500.000Z\n' + `root ${root}\nmanifest ${manifest}\n`,
    );
    expect(s).toBe(fixture('statement.txt'));
    expect(SNAPSHOT_NAMESPACE).toBe('vaultik-snapshot');
  });

  it('refuses an id with a space or line break, and hashes that are not 64 lower-case hex digits', () => {
    const ok = { snapshot: 'db-eu-1-20261127T031500.123Z', root, manifest };
    expect(() => snapshotStatement(ok)).not.toThrow();
    expect(() => snapshotStatement({ ...ok, snapshot: 'h-1\nroot x' })).toThrow(/invalid snapshot id/);
    expect(() => snapshotStatement({ ...ok, snapshot: '' })).toThrow(/invalid snapshot id/);
    expect(() => snapshotStatement({ ...ok, root: root.toUpperCase() })).toThrow(/root hash .* is not 64 lower-case hex/);
    expect(() => snapshotStatement({ ...ok, manifest: manifest.slice(1) })).toThrow(/manifest hash .* is not 64 lower-case hex/);
  });
});
