/**
 * The one error class of the signing layer. `kind` says what was rejected, so a caller can tell
 * a bad key file (the operator's to fix) from a bad signature (data).
 */
import type { Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { ExitCode, VaultikError } from '../errors.js';

/**
 * - `key`: an SSH key file or key line is malformed, encrypted, or of an unsupported type.
 * - `allowed-signers`: an allowed_signers file does not parse (the message names file and line).
 * - `signature`: an armored SSH signature is malformed, truncated, or of an unsupported kind.
 * - `statement`: the fields of a snapshot statement are not what the format allows.
 */
export type SignErrorKind = 'key' | 'allowed-signers' | 'signature' | 'statement';

export class SignError extends VaultikError {
  constructor(
    readonly kind: SignErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, kind === 'signature' ? ExitCode.DATA : kind === 'statement' ? ExitCode.FAILURE : ExitCode.USAGE, options);
    this.name = 'SignError';
  }
}

/**
 * Reads a text file the operator named (a key, an allowed_signers file).
 * @param refuse looks at the open file's stat (the file read, not one swapped in after a
 *   check) and returns a reason to refuse it, or undefined.
 * @throws SignError of `kind`: `cannot read <what> <path>: <errno code>`, or `<what> <path>:
 *   <reason>`.
 */
export async function readNamedFile(
  path: string,
  kind: SignErrorKind,
  what: string,
  refuse?: (st: Stats) => string | undefined,
): Promise<string> {
  let handle: FileHandle | undefined;
  let reason: string | undefined;
  try {
    handle = await open(path, 'r');
    reason = refuse?.(await handle.stat());
    if (reason === undefined) return await handle.readFile('utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SignError(kind, `cannot read ${what} ${path}: ${code ?? (err as Error).message}`, { cause: err });
  } finally {
    await handle?.close();
  }
  throw new SignError(kind, `${what} ${path}: ${reason}`);
}
