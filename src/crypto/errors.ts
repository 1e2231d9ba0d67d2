/**
 * The one error class of the age layer. `kind` says which stage rejected the input, so callers
 * (and the test vectors) can tell a wrong key from corrupted data.
 */
import { VaultikError, ExitCode, type ExitCodeValue } from '../errors.js';

/**
 * - `header`: the age header is malformed (or the payload nonce is missing): corrupt data.
 * - `hmac`: the header parsed and a key unwrapped the file key, but the header MAC is wrong.
 * - `payload`: a STREAM segment failed authentication, is truncated, or is misplaced.
 * - `no-match`: none of the identities can unwrap the file key (wrong private key).
 * - `key`: a key string or key file given by the user is malformed (a usage error).
 */
export type AgeErrorKind = 'header' | 'hmac' | 'payload' | 'no-match' | 'key';

function exitCodeFor(kind: AgeErrorKind): ExitCodeValue {
  switch (kind) {
    case 'no-match':
      return ExitCode.NO_IDENTITY;
    case 'key':
      return ExitCode.USAGE;
    default:
      return ExitCode.DATA;
  }
}

export class AgeError extends VaultikError {
  constructor(
    readonly kind: AgeErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, exitCodeFor(kind), options);
    this.name = 'AgeError';
  }
}
