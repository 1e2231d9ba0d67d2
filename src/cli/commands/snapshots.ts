/**
 * `vaultik snapshots <bucket> <prefix>`: the snapshots in a store, oldest first, without the key.
 * Ids, hosts and times come from object names; the number and stored size of the blobs each
 * snapshot references from its keyless manifest (blobs shared between snapshots count in each).
 * Suspect snapshots (id time far from the store's time, several roots: src/snapshot/list.ts) are
 * marked SUSPECT, with the reasons on stderr.
 *
 * Signatures (docs/FORMAT.md "Signatures"): without `--signers` a signed snapshot shows
 * `signed (unchecked)`; with `--signers FILE` every signature is checked, and a snapshot without
 * a valid one is suspect (`unsigned`, `invalid`, `not allowed`, the reason on stderr).
 */
import { ExitCode } from '../../errors.js';
import { describeSnapshots } from '../../restore/index.js';
import { judgeSignatures, signatureOf } from '../../snapshot/index.js';
import { parseCommandArgs, type Command, type CommandIO, type CommandOptions } from '../command.js';
import { STORE_OPTIONS, STORE_USAGE, openStore, parseStoreArgs, signersFromArgs } from '../storageArgs.js';
import { formatBytes } from '../render/format.js';
import { JsonLines } from '../render/json.js';

const OPTIONS = {
  ...STORE_OPTIONS,
  json: { type: 'boolean', help: 'print JSON Lines instead of text' },
  host: { type: 'string', arg: 'H', help: "only host H's snapshots" },
} as const satisfies CommandOptions;

const USAGE = `vaultik snapshots <bucket> <prefix> [--json] [--host H] ${STORE_USAGE}`;

export const snapshotsCommand: Command = {
  name: 'snapshots',
  summary: 'list the snapshots in a store (no key needed)',
  usage: USAGE,
  options: OPTIONS,
  async run(argv: string[], io: CommandIO): Promise<number> {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, USAGE);
    const storeArgs = parseStoreArgs(values, positionals, io.env, 0, 0, USAGE);
    const { spec, indexPrefix } = storeArgs;
    const signers = await signersFromArgs(storeArgs);
    const storage = openStore(spec);
    try {
      let list = await describeSnapshots(storage, indexPrefix);
      if (values.host !== undefined) list = list.filter((s) => s.host === values.host);
      const statuses = signers ? await judgeSignatures(storage, list, signers, { signal: io.signal }) : undefined;
      const signature = (s: (typeof list)[number]): string => {
        const st = statuses?.get(s.id);
        if (st) return st.state === 'not-allowed' ? 'not allowed' : st.state;
        return signatureOf(s) ? 'signed (unchecked)' : 'unsigned';
      };
      // Without --signers the column appears only once some snapshot is signed.
      const showSignature = statuses !== undefined || list.some((s) => signatureOf(s) !== undefined);
      if (values.json) {
        const rows = list.map((s) => {
          const st = statuses?.get(s.id);
          return {
            type: 'snapshot',
            id: s.id,
            host: s.host,
            time: s.time.toISOString(),
            completed: s.metadataModified.toISOString(),
            storeTime: s.storeTime.toISOString(),
            suspect: s.suspect,
            signature: signature(s),
            ...(st?.state === 'valid' ? { signer: st.fingerprint } : {}),
            metadataSize: s.metadataSize,
            blobs: s.blobCount ?? null,
            blobBytes: s.blobBytes ?? null,
            ...(s.manifestError !== undefined ? { manifestError: s.manifestError } : {}),
          };
        });
        const out = new JsonLines(io.stdout);
        for (const row of rows) out.write(row);
        return ExitCode.OK;
      }
      if (list.length === 0) {
        io.stderr.write(`no snapshots in ${storage.description}${indexPrefix}\n`);
        return ExitCode.OK;
      }
      const table = [['ID', 'HOST', 'TIME (UTC)', 'BLOBS', 'STORED', ...(showSignature ? ['SIGNATURE'] : [])], ...list.map((s) => [
        s.id,
        s.host,
        s.time.toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, ''),
        s.blobCount === undefined ? '?' : String(s.blobCount),
        s.blobBytes === undefined ? '?' : formatBytes(s.blobBytes),
        ...(showSignature ? [signature(s)] : []),
      ])];
      const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
      table.forEach((row, i) => {
        const mark = i > 0 && list[i - 1]!.suspect.length > 0 ? '  SUSPECT' : '';
        io.stdout.write(`${row.map((c, j) => (j === 3 || j === 4 ? c.padStart(widths[j]!) : c.padEnd(widths[j]!))).join('  ').trimEnd()}${mark}\n`);
      });
      for (const s of list.filter((x) => x.suspect.length > 0)) io.stderr.write(`vaultik: ${s.id} is suspect: ${s.suspect.join('; ')}\n`);
      const bad = list.filter((s) => s.manifestError !== undefined);
      if (bad.length > 0) io.stderr.write(`vaultik: ${bad.length} snapshot(s) without a readable manifest (shown as '?'): ${bad[0]!.manifestError}\n`);
      return ExitCode.OK;
    } finally {
      await storage.close();
    }
  },
};
