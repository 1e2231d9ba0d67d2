/**
 * `vaultik prune <bucket> <prefix>`: deletes blobs no snapshot references (needs
 * VAULTIK_PRIVATE_KEY to read the snapshots). Prints the plan, then executes it unless
 * --dry-run. `--keep-latest` first forgets every snapshot but each host's latest (the original
 * one-line specification of prune), after the key has been checked against the snapshots that
 * stay. Exit codes: 0; DATA (5) when snapshots are damaged or cannot be trusted; NO_IDENTITY (4)
 * for the wrong key (nothing deleted); STORAGE (6). `--signers FILE` notes each snapshot without
 * a valid signature (its blobs are kept all the same: forging can only add).
 */
import { parseDuration } from '../../config/index.js';
import { ExitCode, UsageError } from '../../errors.js';
import {
  DEFAULT_GRACE_MS,
  S3MultipartJanitor,
  asMultipartJanitor,
  executeForget,
  executePrune,
  planForget,
  planPrune,
  type ForgetPlan,
  type MultipartJanitor,
  type PruneEvent,
  type PrunePlan,
  type PruneResult,
} from '../../prune/index.js';
import { LocalStorage } from '../../storage/local.js';
import type { StorageSpec } from '../../storage/types.js';
import { parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { formatBytes } from '../render/format.js';
import { ProgressLine } from '../render/progress.js';
import { STORE_OPTIONS, STORE_USAGE, identitiesFromEnv, openStore, parseStoreArgs, signersFromArgs } from '../storageArgs.js';

const OPTIONS = {
  ...STORE_OPTIONS,
  'dry-run': { type: 'boolean', help: 'print the plan, delete nothing' },
  grace: { type: 'string', arg: '24h', help: 'leave unreferenced objects younger than this (a backup may still be writing them)' },
  'keep-latest': { type: 'boolean', help: "first forget every snapshot but each host's latest" },
  json: { type: 'boolean', help: 'print JSON Lines instead of text' },
} as const satisfies CommandOptions;

const USAGE = `vaultik prune <bucket> <prefix> [--dry-run] [--grace 24h] [--keep-latest] [--json] ${STORE_USAGE}`;

/** Parses --grace: vaultik's duration grammar ("24h", "2d", "90m", "0"). */
export function parseGrace(value: string | undefined): number {
  if (value === undefined) return DEFAULT_GRACE_MS;
  try {
    return parseDuration(value);
  } catch (err) {
    throw new UsageError(`--grace: ${(err as Error).message}`);
  }
}

/**
 * The janitor of what killed uploads leave behind: S3's incomplete multipart uploads, a local
 * directory's `.vaultik-tmp-*` files.
 */
async function janitorFor(spec: StorageSpec): Promise<{ janitor: MultipartJanitor | undefined; close: () => Promise<void> }> {
  if (spec.type === 'local') return { janitor: asMultipartJanitor(new LocalStorage(spec)), close: async () => undefined };
  // Its own raw backend: the retry and limit wrappers of openStorage expose only Storage. Loaded
  // here, so that prune of a local store never loads the AWS SDK.
  const { S3Storage } = await import('../../storage/s3.js');
  const raw = new S3Storage(spec);
  return { janitor: asMultipartJanitor(raw) ?? new S3MultipartJanitor(raw), close: () => raw.close() };
}

function planLines(plan: PrunePlan, forget: ForgetPlan | undefined): string[] {
  const hours = plan.graceMs / 3600_000;
  const grace = Number.isInteger(hours) ? `${hours}h` : `${Math.round(plan.graceMs / 1000)}s`;
  const lines: string[] = [];
  if (forget) lines.push(`forget:    ${forget.remove.length} snapshot(s), keeping the latest of each host (${forget.keep.length})`);
  lines.push(
    `snapshots: ${plan.snapshots.length} read, manifests cross-checked`,
    `blobs:     ${plan.referenced.count} referenced; ${plan.keep.count} kept (${formatBytes(plan.keep.bytes)}), ` +
      `${plan.keepYoung.count} unreferenced but younger than the grace of ${grace} kept (${formatBytes(plan.keepYoung.bytes)})`,
    `to delete: ${plan.deleteBlobs.length} blob(s), ${formatBytes(plan.deleteBlobBytes)}; ${plan.deleteManifests.length} orphan manifest(s)` +
      `${plan.keepYoungManifests > 0 ? ` (${plan.keepYoungManifests} younger kept)` : ''}; ${plan.abortUploads.length} incomplete upload(s)`,
  );
  return lines;
}

function planJson(plan: PrunePlan): Record<string, unknown> {
  return {
    graceSeconds: plan.graceMs / 1000,
    cutoff: plan.cutoff.toISOString(),
    snapshots: plan.snapshots.length,
    referenced: plan.referenced,
    kept: plan.keep,
    keptYoung: plan.keepYoung,
    delete: { blobs: plan.deleteBlobs.length, bytes: plan.deleteBlobBytes, manifests: plan.deleteManifests.length, uploads: plan.abortUploads.length },
    damaged: plan.damaged,
    sizeMismatches: plan.sizeMismatches,
    withoutManifest: plan.withoutManifest,
    unknownKeys: plan.unknownKeys,
  };
}

function progressText(e: PruneEvent, state: { phase: string }): string | undefined {
  switch (e.type) {
    case 'phase':
      state.phase = e.phase;
      return `prune: ${e.phase}…`;
    case 'snapshot-read':
      return `prune: reading snapshots ${e.done}/${e.total}`;
    case 'blobs-listed':
      return `prune: listing blobs: ${e.count}`;
    case 'deleted':
      return `prune: deleting ${e.what} ${e.done}/${e.total}`;
    case 'warning':
      return undefined;
  }
}

export const pruneCommand: Command = {
  name: 'prune',
  summary: 'delete blobs that no snapshot references (needs VAULTIK_PRIVATE_KEY)',
  usage: USAGE,
  options: OPTIONS,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
    const storeArgs = parseStoreArgs(values, positionals, io.env, 0, 0, USAGE);
    const { spec, indexPrefix } = storeArgs;
    const graceMs = parseGrace(values.grace);
    const signers = await signersFromArgs(storeArgs);
    const dryRun = values['dry-run'] === true;
    const json = values.json === true;
    const identities = await identitiesFromEnv(io.env);
    const started = Date.now();
    const storage = openStore(spec);
    const { janitor, close } = await janitorFor(spec);
    const status = new ProgressLine(io.stderr, { live: io.isTTY && !json, minIntervalMs: 200 });
    const state = { phase: '' };
    const options = {
      indexPrefix,
      identities,
      graceMs,
      janitor,
      ...(signers ? { signers } : {}),
      signal: io.signal,
      onEvent: (e: PruneEvent): void => {
        const text = progressText(e, state);
        if (text !== undefined) status.update(text);
      },
    };
    try {
      let forget: ForgetPlan | undefined;
      if (values['keep-latest']) forget = await planForget(storage, { indexPrefix, policy: { last: 1 }, ...(signers ? { signers } : {}) });
      // Plans as if the forget had happened: this reads every snapshot that stays, so a wrong key
      // stops here, before anything (even a snapshot) is deleted.
      const plan = await planPrune(storage, { ...options, assumeForgotten: new Set(forget?.remove.map((d) => d.snapshot.id)) });
      status.clear();
      if (!json) {
        for (const line of planLines(plan, forget)) io.stdout.write(`${line}\n`);
        for (const w of plan.warnings) io.stderr.write(`vaultik prune: WARNING: ${w}\n`);
        for (const note of plan.notes) io.stderr.write(`vaultik prune: note: ${note}\n`);
      }
      let result: PruneResult | undefined;
      let forgotten: string[] = [];
      if (!dryRun) {
        if (forget && forget.remove.length > 0) forgotten = (await executeForget(storage, forget, { signal: io.signal })).forgotten;
        result = await executePrune(storage, plan, { ...options, assumeForgotten: new Set(forgotten) });
        status.clear();
      }
      const warnings = [...plan.warnings, ...(result?.warnings ?? [])];
      const code = warnings.length > 0 ? ExitCode.DATA : ExitCode.OK;
      if (json) {
        io.stdout.write(
          `${JSON.stringify({
            type: 'summary',
            dryRun,
            ...planJson(plan),
            ...(forget ? { forget: forget.remove.map((d) => d.snapshot.id), forgotten } : {}),
            ...(result
              ? {
                  deleted: { blobs: result.deletedBlobs, bytes: result.freedBytes, manifests: result.deletedManifests, uploads: result.abortedUploads },
                  spared: result.sparedBlobs,
                  newSnapshots: result.newSnapshots,
                }
              : {}),
            seconds: (Date.now() - started) / 1000,
            warnings,
            notes: plan.notes,
            exitCode: code,
          })}\n`,
        );
        return code;
      }
      if (!result) {
        io.stdout.write('dry run: nothing was deleted\n');
      } else {
        if (forgotten.length > 0) io.stdout.write(`forgot ${forgotten.length} snapshot(s)\n`);
        if (result.sparedBlobs > 0) io.stdout.write(`spared ${result.sparedBlobs} blob(s) used by ${result.newSnapshots.length} snapshot(s) that appeared meanwhile\n`);
        io.stdout.write(
          `deleted ${result.deletedBlobs} blob(s), freed ${formatBytes(result.freedBytes)}, ${result.deletedManifests} orphan manifest(s), ` +
            `${result.abortedUploads} incomplete upload(s); kept ${plan.keep.count + plan.keepYoung.count + result.sparedBlobs} blob(s) ` +
            `in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
        );
        for (const w of result.warnings) io.stderr.write(`vaultik prune: WARNING: ${w}\n`);
      }
      return code;
    } finally {
      status.clear();
      await close();
      await storage.close();
    }
  },
};
