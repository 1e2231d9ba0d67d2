/**
 * `vaultik verify <bucket> <prefix> [--deep] [--sample 10%]`: checks the store's integrity.
 * Without --deep no key is read (blob hashes and manifests only); --deep needs
 * VAULTIK_PRIVATE_KEY and checks every referenced chunk. Exit code DATA (5) on any problem,
 * NO_IDENTITY (4) when --deep's key opens no snapshot. `--signers FILE` also checks every
 * snapshot's signature (keyless); each one missing or invalid is a problem.
 */
import { ExitCode, UsageError } from '../../errors.js';
import { describeProblem, verifyStore, type VerifyEvent, type VerifyReport } from '../../verify/index.js';
import { parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { formatBytes } from '../render/format.js';
import { ProgressLine } from '../render/progress.js';
import { STORE_OPTIONS, STORE_USAGE, identitiesFromEnv, openStore, parseStoreArgs, signersFromArgs } from '../storageArgs.js';

const OPTIONS = {
  ...STORE_OPTIONS,
  deep: { type: 'boolean', help: 'decrypt every referenced chunk and check its id (needs VAULTIK_PRIVATE_KEY)' },
  sample: { type: 'string', arg: '10%', help: 'read the content of only this share of the blobs, picked at random (all are still listed)' },
  json: { type: 'boolean', help: 'print JSON Lines instead of text' },
} as const satisfies CommandOptions;

const USAGE = `vaultik verify <bucket> <prefix> [--deep] [--sample 10%] [--json] ${STORE_USAGE}`;
/** Problems printed one by one; the rest are counted. */
const MAX_PRINTED = 50;

/** "10%" → 0.1; a percentage in (0, 100]. */
export function parseSample(value: string | undefined): number {
  if (value === undefined) return 1;
  const m = /^(\d+(?:\.\d+)?)%$/.exec(value.trim());
  const pct = m ? Number(m[1]) : NaN;
  if (!(pct > 0 && pct <= 100)) throw new UsageError(`--sample: expected a percentage in (0%, 100%], e.g. 10%, got '${value}'`);
  return pct / 100;
}

function reportJson(r: VerifyReport): Record<string, unknown> {
  return {
    deep: r.deep,
    sample: r.sample,
    snapshots: r.snapshots,
    blobs: r.blobs,
    hashed: r.hashed,
    referenced: r.referenced,
    unreferenced: r.unreferenced,
    chunks: r.chunks,
    orphanManifests: r.orphanManifests,
    ...(r.validSignatures !== undefined ? { validSignatures: r.validSignatures } : {}),
    unknownKeys: r.unknownKeys,
    problems: r.problems,
    seconds: r.durationMs / 1000,
    exitCode: r.problems.length > 0 ? ExitCode.DATA : ExitCode.OK,
  };
}

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'check blob integrity (no key needed; --deep with VAULTIK_PRIVATE_KEY checks every chunk)',
  usage: USAGE,
  options: OPTIONS,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
    const storeArgs = parseStoreArgs(values, positionals, io.env, 0, 0, USAGE);
    const { spec, indexPrefix } = storeArgs;
    const sample = parseSample(values.sample);
    const signers = await signersFromArgs(storeArgs);
    const json = values.json === true;
    const deep = values.deep ? { identities: await identitiesFromEnv(io.env) } : undefined;
    const storage = openStore(spec);
    const status = new ProgressLine(io.stderr, { live: io.isTTY && !json, minIntervalMs: 200 });
    let printed = 0;
    const onEvent = (e: VerifyEvent): void => {
      if (e.type === 'progress') status.update(`verify: ${e.phase}: ${e.done} checked, ${formatBytes(e.bytes)}`);
      else if (e.type === 'phase') status.update(`verify: ${e.phase}…`);
      else if (!json && printed++ < MAX_PRINTED) status.print(`vaultik verify: ${describeProblem(e.problem)}`);
    };
    try {
      const report = await verifyStore(storage, { indexPrefix, sample, deep, ...(signers ? { signers } : {}), signal: io.signal, onEvent });
      status.clear();
      const code = report.problems.length > 0 ? ExitCode.DATA : ExitCode.OK;
      if (json) {
        io.stdout.write(`${JSON.stringify({ type: 'summary', ...reportJson(report) })}\n`);
        return code;
      }
      const sampled = report.sample < 1 ? ` (sample of ${Math.round(report.sample * 1000) / 10}%)` : '';
      io.stdout.write(
        `${report.snapshots} snapshot(s), ${report.blobs.count} blob(s) (${formatBytes(report.blobs.bytes)}); ` +
          `hashed ${report.hashed.count} blob(s), ${formatBytes(report.hashed.bytes)}${sampled}\n`,
      );
      if (report.validSignatures !== undefined) io.stdout.write(`signatures: ${report.validSignatures} of ${report.snapshots} snapshot(s) validly signed\n`);
      if (report.deep) io.stdout.write(`deep: ${report.chunks.count} chunk(s), ${formatBytes(report.chunks.bytes)} decrypted and checked\n`);
      if (report.unreferenced.count > 0) {
        io.stdout.write(`${report.unreferenced.count} unreferenced blob(s), ${formatBytes(report.unreferenced.bytes)}: prune removes them once older than its grace period\n`);
      }
      if (report.orphanManifests.length > 0) io.stdout.write(`${report.orphanManifests.length} manifest(s) without metadata (an interrupted backup or forget)\n`);
      if (report.unknownKeys.count > 0) io.stdout.write(`${report.unknownKeys.count} object(s) not written by vaultik, e.g. ${report.unknownKeys.first[0]}\n`);
      if (printed > MAX_PRINTED) io.stderr.write(`vaultik verify: … and ${printed - MAX_PRINTED} more problems\n`);
      io.stdout.write(
        report.problems.length === 0
          ? `no problems found in ${(report.durationMs / 1000).toFixed(1)} s\n`
          : `${report.problems.length} problem(s) found\n`,
      );
      return code;
    } finally {
      status.clear();
      await storage.close();
    }
  },
};
