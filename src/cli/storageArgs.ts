/**
 * The store and key arguments shared by the commands that read a store (restore, fetch, ls,
 * snapshots, forget, prune, verify):
 *
 *     vaultik <cmd> <bucket> <prefix> ARGS...        store from the arguments + AWS_* environment
 *     vaultik <cmd> --config FILE ARGS...            store and index_prefix from a config file
 *
 * `<bucket>` is an S3 bucket name or `file:///abs/dir` (storageSpecFromArgs). `--index-prefix`
 * overrides where snapshot metadata lives (default `index/`, or the config's `index_prefix`).
 * The private key comes from VAULTIK_PRIVATE_KEY: an `AGE-SECRET-KEY-1…` string or the path of
 * an age identity file (several identities allowed).
 *
 * `--signers FILE` (or the config's `allowed_signers`) names an ssh-keygen allowed_signers file:
 * the command then checks snapshot signatures (docs/FORMAT.md "Signatures") and treats a
 * snapshot without a valid one as it says in its own usage.
 */
import { loadConfig } from '../config/index.js';
import { loadIdentities, type Identity } from '../crypto/index.js';
import { loadAllowedSigners, type AllowedSigner } from '../sign/index.js';
import type { CommandOptions } from './command.js';
import { UsageError } from '../errors.js';
import { openStorage, storageSpecFromArgs } from '../storage/index.js';
import type { Storage, StorageSpec } from '../storage/types.js';

/** parseCommandArgs options every store-reading command accepts. */
export const STORE_OPTIONS = {
  config: { type: 'string', arg: 'FILE', help: 'take the store, index prefix and allowed_signers from a backup config file instead of <bucket> <prefix>' },
  'index-prefix': { type: 'string', arg: 'P', help: "the snapshot index's folder under the prefix (default: index/)" },
  signers: { type: 'string', arg: 'FILE', help: 'an allowed_signers file: a snapshot without a valid signature is suspect' },
} as const satisfies CommandOptions;

/** Usage text for the store options. */
export const STORE_USAGE = '[--config FILE] [--index-prefix P] [--signers FILE]';

export interface StoreArgs {
  spec: StorageSpec;
  indexPrefix: string;
  /** The positionals after `<bucket> <prefix>` (all of them with --config). */
  rest: string[];
  /** The allowed_signers file: `--signers`, else the config's `allowed_signers`. */
  signersPath?: string;
}

/** A valid index prefix: non-empty, relative, ending in '/'. */
function checkIndexPrefix(prefix: string): string {
  const p = prefix.endsWith('/') ? prefix : `${prefix}/`;
  if (p === '/' || p.startsWith('/') || p.split('/').slice(0, -1).some((s) => s === '' || s === '.' || s === '..')) {
    throw new UsageError(`invalid --index-prefix '${prefix}' (e.g. index/)`);
  }
  return p;
}

/**
 * Works out the store from the options and positionals; `restMin`/`restMax` count the
 * positionals after the store.
 * @throws UsageError for a wrong number of arguments, a bad bucket or prefix, a bad config.
 */
export function parseStoreArgs(
  values: { config?: string; 'index-prefix'?: string; signers?: string },
  positionals: string[],
  env: NodeJS.ProcessEnv,
  restMin: number,
  restMax: number,
  usage: string,
): StoreArgs {
  const count = (n: number): void => {
    if (n < restMin || n > restMax) {
      const want = restMin === restMax ? `${restMin}` : restMax === Infinity ? `at least ${restMin}` : `${restMin} to ${restMax}`;
      throw new UsageError(`expected ${values.config !== undefined ? '' : '<bucket> <prefix> and '}${want} more argument${restMax === 1 ? '' : 's'}, got ${positionals.length} in all\n\nusage: ${usage}`);
    }
  };
  let spec: StorageSpec;
  let indexPrefix = 'index/';
  let rest: string[];
  let signersPath = values.signers;
  if (values.config !== undefined) {
    if (positionals.length > restMax && positionals.length >= 2 && positionals.length - 2 >= restMin && positionals.length - 2 <= restMax) {
      // `snapshots BUCKET PREFIX --config F`: the config already names the store.
      throw new UsageError(
        `--config ${values.config} names the store: give either <bucket> <prefix> or --config, not both (got '${positionals[0]}' '${positionals[1]}')\n\nusage: ${usage}`,
      );
    }
    count(positionals.length);
    const config = loadConfig(values.config, { env });
    spec = config.storage;
    indexPrefix = config.indexPrefix;
    signersPath ??= config.allowedSigners;
    rest = positionals;
  } else {
    if (positionals.length < 2) throw new UsageError(`missing <bucket> <prefix> (or --config FILE)\n\nusage: ${usage}`);
    count(positionals.length - 2);
    spec = storageSpecFromArgs(positionals[0]!, positionals[1]!, env);
    rest = positionals.slice(2);
  }
  if (values['index-prefix'] !== undefined) indexPrefix = checkIndexPrefix(values['index-prefix']);
  return { spec, indexPrefix, rest, ...(signersPath !== undefined ? { signersPath } : {}) };
}

/**
 * The allowed signers of `--signers` / `allowed_signers`, or undefined when neither is given.
 * @throws SignError 'allowed-signers' (exit 2) when the file cannot be read or parsed;
 *   UsageError when it lists no key (every snapshot would be refused).
 */
export async function signersFromArgs(args: Pick<StoreArgs, 'signersPath'>): Promise<AllowedSigner[] | undefined> {
  if (args.signersPath === undefined) return undefined;
  const signers = await loadAllowedSigners(args.signersPath);
  if (signers.length === 0) throw new UsageError(`allowed signers file ${args.signersPath} lists no key`);
  return signers;
}

/** Opens the store (retry and concurrency wrappers included; no request is made yet). */
export function openStore(spec: StorageSpec): Storage {
  return openStorage(spec);
}

/**
 * The identities in VAULTIK_PRIVATE_KEY.
 * @throws UsageError when it is unset; AgeError 'key' (exit code USAGE) when it is malformed or
 *   the file cannot be read. Messages never contain the key.
 */
export async function identitiesFromEnv(env: NodeJS.ProcessEnv): Promise<Identity[]> {
  const spec = env.VAULTIK_PRIVATE_KEY;
  if (spec === undefined || spec.trim() === '') {
    throw new UsageError('set VAULTIK_PRIVATE_KEY to your AGE-SECRET-KEY-1… key or to the path of an age identity file');
  }
  return loadIdentities(spec);
}
