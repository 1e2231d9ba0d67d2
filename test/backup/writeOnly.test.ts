/**
 * README promise 1 ("never reads, lists or deletes remote data") as types: every part of the
 * backup path takes the store as a StoreWriter, which has no verb but put. These are checked by
 * `tsc` (npm test's typecheck): widening any of them to Storage fails it. The S3 requests
 * themselves are checked against a write-only credential in cli.test.ts.
 */
import { describe, expectTypeOf, it } from 'vitest';
import type { BackupDeps } from '../../src/backup/index.js';
import type { PackerOptions } from '../../src/backup/packer.js';
import { killableStorage } from '../../src/backup/testHooks.js';
import type { DaemonOptions } from '../../src/daemon/index.js';
import { publishSnapshot } from '../../src/snapshot/index.js';
import type { Storage, StoreWriter } from '../../src/storage/index.js';

describe('the backup path', () => {
  it('gets the store as a StoreWriter, which can only put', () => {
    expectTypeOf<keyof StoreWriter>().toEqualTypeOf<'description' | 'put'>();
    expectTypeOf<Storage>().toExtend<StoreWriter>();
    expectTypeOf<BackupDeps['storage']>().toEqualTypeOf<StoreWriter>();
    expectTypeOf<PackerOptions['storage']>().toEqualTypeOf<StoreWriter>();
    expectTypeOf(publishSnapshot).parameter(0).toEqualTypeOf<StoreWriter>();
    expectTypeOf(killableStorage).parameter(0).toEqualTypeOf<StoreWriter>();
    // The daemon also closes the store it opened for a run, and does nothing else with it.
    expectTypeOf<ReturnType<DaemonOptions['openStorage']>>().toEqualTypeOf<StoreWriter & { close(): Promise<void> }>();
  });
});
