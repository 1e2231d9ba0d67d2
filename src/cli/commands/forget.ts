/**
 * `vaultik forget <bucket> <prefix> [snapshot_id...] [--keep-* ...] [--host H] [--suspects keep|forget] [--dry-run]`:
 * removes snapshots (root, then manifest and signature) that the retention policy does not keep,
 * or the named ones. Keyless: the policy needs only hosts and the store's times, which the
 * listing carries (see src/prune/forget.ts), so VAULTIK_PRIVATE_KEY is not read. Blobs are left
 * for `prune`. With `--signers FILE`, a snapshot without a valid signature is suspect: it takes
 * no keep slot, and forget refuses while one exists unless `--suspects` says what to do.
 */
import { parseDuration } from '../../config/index.js';
import { ExitCode, UsageError } from '../../errors.js';
import { executeForget, planForget, type ForgetPlan, type RetentionPolicy, type SuspectChoice } from '../../prune/index.js';
import { DEFAULT_CLOCK_RULES, type ClockRules, type SnapshotListing } from '../../snapshot/list.js';
import { parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { STORE_OPTIONS, STORE_USAGE, openStore, parseStoreArgs, signersFromArgs } from '../storageArgs.js';

const USAGE =
  'vaultik forget <bucket> <prefix> [snapshot_id...] [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N] ' +
  `[--keep-monthly N] [--keep-yearly N] [--keep-within 30d] [--host H] [--suspects keep|forget] [--clock-tolerance 15m] [--max-run 7d] ` +
  `[--dry-run] [--json] ${STORE_USAGE}`;

const OPTIONS = {
  ...STORE_OPTIONS,
  'keep-last': { type: 'string', arg: 'N', help: "keep the N newest snapshots (a number or 'unlimited')" },
  'keep-hourly': { type: 'string', arg: 'N', help: 'keep the newest snapshot of each of the last N hours that have one' },
  'keep-daily': { type: 'string', arg: 'N', help: 'keep the newest snapshot of each of the last N days that have one' },
  'keep-weekly': { type: 'string', arg: 'N', help: 'keep the newest snapshot of each of the last N ISO weeks that have one' },
  'keep-monthly': { type: 'string', arg: 'N', help: 'keep the newest snapshot of each of the last N months that have one' },
  'keep-yearly': { type: 'string', arg: 'N', help: 'keep the newest snapshot of each of the last N years that have one' },
  'keep-within': { type: 'string', arg: '30d', help: "keep every snapshot within this long of its host's newest one" },
  host: { type: 'string', arg: 'H', help: "apply the policy to host H's snapshots only" },
  suspects: { type: 'string', arg: 'keep|forget', choices: ['keep', 'forget'], help: 'what to do with suspect snapshots (forget refuses while any exists otherwise)' },
  'clock-tolerance': { type: 'string', arg: '15m', help: 'how far a snapshot id time may be ahead of the store time before it is suspect' },
  'max-run': { type: 'string', arg: '7d', help: 'how long after its id time a snapshot may reach the store before it is suspect' },
  'dry-run': { type: 'boolean', help: 'print what would be removed, remove nothing' },
  json: { type: 'boolean', help: 'print JSON Lines instead of text' },
} as const satisfies CommandOptions;

const COUNTS = ['last', 'hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;

/** A --keep-* count: a whole number ≥ 0, or "unlimited" (-1). */
export function parseKeepCount(option: string, value: string): number {
  if (value === 'unlimited' || value === '-1') return -1;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${option}: expected a whole number or 'unlimited', got '${value}'`);
  return Number(value);
}

/** The policy from the command line options. */
export function policyFromOptions(values: Record<string, string | boolean | undefined>): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const rule of COUNTS) {
    const v = values[`keep-${rule}`];
    if (typeof v === 'string') policy[rule] = parseKeepCount(`keep-${rule}`, v);
  }
  const within = values['keep-within'];
  if (typeof within === 'string') {
    try {
      policy.withinMs = parseDuration(within);
    } catch (err) {
      throw new UsageError(`--keep-within: ${(err as Error).message}`);
    }
  }
  return policy;
}

/** --suspects: what to do with suspect snapshots (undefined: refuse while any exists). */
export function suspectChoice(value: string | undefined): SuspectChoice | undefined {
  if (value === undefined) return undefined;
  if (value === 'keep' || value === 'forget') return value;
  throw new UsageError(`--suspects: expected 'keep' or 'forget', got '${value}'`);
}

/** --clock-tolerance and --max-run: when a snapshot's id time and store time disagree too much. */
export function clockRulesFromOptions(values: Record<string, string | boolean | undefined>): ClockRules {
  const rules = { ...DEFAULT_CLOCK_RULES };
  for (const [option, field] of [['clock-tolerance', 'toleranceMs'], ['max-run', 'maxRunMs']] as const) {
    const v = values[option];
    if (typeof v !== 'string') continue;
    try {
      rules[field] = parseDuration(v);
    } catch (err) {
      throw new UsageError(`--${option}: ${(err as Error).message}`);
    }
  }
  return rules;
}

function printPlan(plan: ForgetPlan, io: CommandIO): void {
  const hosts = [...new Set([...plan.keep, ...plan.remove].map((d) => d.snapshot.host))].sort();
  for (const host of hosts) {
    const keep = plan.keep.filter((d) => d.snapshot.host === host);
    const remove = plan.remove.filter((d) => d.snapshot.host === host);
    io.stdout.write(`host ${host}: keep ${keep.length}, remove ${remove.length}\n`);
    for (const d of keep) io.stdout.write(`  keep    ${d.snapshot.id}  (${d.reasons.join(', ')})\n`);
    for (const d of remove) io.stdout.write(`  remove  ${d.snapshot.id}${d.snapshot.suspect.length > 0 ? `  (${d.reasons.join(', ')})` : ''}\n`);
  }
}

function jsonListing(s: SnapshotListing): { id: string; host: string; time: string; storeTime: string; suspect: string[] } {
  return { id: s.id, host: s.host, time: s.time.toISOString(), storeTime: s.storeTime.toISOString(), suspect: s.suspect };
}

export const forgetCommand: Command = {
  name: 'forget',
  summary: 'remove snapshots by a retention policy (no key needed; run prune afterwards)',
  usage: USAGE,
  options: OPTIONS,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
    const storeArgs = parseStoreArgs(values, positionals, io.env, 0, Number.MAX_SAFE_INTEGER, USAGE);
    const { spec, indexPrefix, rest } = storeArgs;
    const policy = policyFromOptions(values);
    const signers = await signersFromArgs(storeArgs);
    const storage = openStore(spec);
    try {
      const suspects = suspectChoice(values.suspects);
      const plan = await planForget(storage, { indexPrefix, policy, ids: rest, host: values.host, clock: clockRulesFromOptions(values), ...(suspects ? { suspects } : {}), ...(signers ? { signers } : {}) });
      const dryRun = values['dry-run'] === true;
      const result = dryRun ? undefined : await executeForget(storage, plan, { signal: io.signal });
      if (values.json) {
        io.stdout.write(
          `${JSON.stringify({
            type: 'summary',
            dryRun,
            keep: plan.keep.map((d) => ({ ...jsonListing(d.snapshot), reasons: d.reasons })),
            remove: plan.remove.map((d) => jsonListing(d.snapshot)),
            untouched: plan.untouched,
            forgotten: result?.forgotten ?? [],
          })}\n`,
        );
        return ExitCode.OK;
      }
      printPlan(plan, io);
      if (result) {
        io.stdout.write(`removed ${result.forgotten.length} snapshot(s); run \`vaultik prune\` to delete the blobs only they used\n`);
      } else {
        io.stdout.write('dry run: nothing was removed\n');
      }
      return ExitCode.OK;
    } finally {
      await storage.close();
    }
  },
};
