/**
 * ssh-keygen's allowed_signers file (man ssh-keygen, "ALLOWED SIGNERS"), and verifying a
 * signature against it as `ssh-keygen -Y verify -f FILE -I PRINCIPAL -n NAMESPACE` does.
 *
 * A line: `principals [options] keytype base64 [comment]`; `#` comments and blank lines are
 * skipped. Principals and `namespaces=` are pattern lists (`*`, `?`, `!` negation, as in
 * ssh_config's PATTERNS), matched case-sensitively. Options: `namespaces="…"`,
 * `valid-after="…"`, `valid-before="…"` (YYYYMMDD[HHMM[SS]], local time unless followed by `Z`
 * or `UTC`), and `cert-authority`, which parses but never verifies: vaultik checks plain keys,
 * not certificates. The parser is strict on every line (ssh-keygen only reads the lines whose
 * principals match), so a mistake shows when the file is loaded, not when a signature fails.
 */
import { readNamedFile, SignError } from './errors.js';
import { parsePublicKey, type SshPublicKey } from './keys.js';
import { checkSignature, parseSignature, type SshSignature } from './sshsig.js';

/** One line of an allowed_signers file. */
export interface AllowedSigner {
  /** The principals pattern list as written. */
  principals: string;
  publicKey: SshPublicKey;
  /** The `namespaces=` pattern list; undefined allows every namespace. */
  namespaces?: string;
  /** `valid-after` / `valid-before`, in seconds since the epoch. */
  validAfter?: number;
  validBefore?: number;
  certAuthority: boolean;
  /** Where it was read: for messages. */
  file: string;
  line: number;
}

/** Matches `s` against one pattern: `*` any run of characters, `?` any one. */
function matchPattern(s: string, pattern: string): boolean {
  // Iterative glob with backtracking to the last `*`: linear in practice, no regex to escape.
  let si = 0;
  let pi = 0;
  let star = -1;
  let mark = 0;
  while (si < s.length) {
    if (pi < pattern.length && (pattern[pi] === '?' || pattern[pi] === s[si])) {
      si++;
      pi++;
    } else if (pi < pattern.length && pattern[pi] === '*') {
      star = pi++;
      mark = si;
    } else if (star !== -1) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pattern[pi] === '*') pi++;
  return pi === pattern.length;
}

/**
 * OpenSSH's match_pattern_list: true when `s` matches a pattern of the comma-separated list and
 * no negated (`!`) one.
 */
export function matchPatternList(s: string, list: string): boolean {
  let matched = false;
  for (const p of list.split(',')) {
    if (p.startsWith('!')) {
      if (matchPattern(s, p.slice(1))) return false;
    } else if (matchPattern(s, p)) {
      matched = true;
    }
  }
  return matched;
}

/**
 * ssh-keygen's timestamps: YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, in local time unless
 * followed by `Z` or `UTC`. @returns seconds since the epoch, or undefined when invalid.
 */
function parseTimestamp(s: string): number | undefined {
  const utc = /^(\d+)(?:z|utc)$/i.exec(s);
  const digits = utc ? utc[1]! : s;
  if (!/^\d+$/.test(digits) || ![8, 12, 14].includes(digits.length)) return undefined;
  const [y, mo, d, h, mi, se] = [0, 4, 6, 8, 10, 12].map((i) => Number(digits.slice(i, i + (i === 0 ? 4 : 2)) || '0')) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const date = utc ? new Date(Date.UTC(y, mo - 1, d, h, mi, se)) : new Date(y, mo - 1, d, h, mi, se);
  const back = utc
    ? [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()]
    : [date.getFullYear(), date.getMonth() + 1, date.getDate(), date.getHours(), date.getMinutes(), date.getSeconds()];
  // Date rolls over month 13 or Feb 30; strptime refuses them, so must we.
  if (back.join() !== [y, mo, d, h, mi, se].join()) return undefined;
  const t = Math.floor(date.getTime() / 1000);
  return t > 0 ? t : undefined;
}

const KEY_TYPES = /^(ssh-ed25519|ssh-rsa|ssh-dss|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com)(-cert-v01@openssh\.com)?$/;

/** Splits off the next field: a quoted run (quotes kept) or a run without white space. */
function nextField(rest: string, quotesAnywhere: boolean): { field: string; rest: string } | undefined {
  let i = 0;
  let quoted = false;
  for (; i < rest.length; i++) {
    const c = rest[i]!;
    if (c === '\\' && rest[i + 1] === '"' && quotesAnywhere) i++;
    else if (c === '"' && (quotesAnywhere || i === 0 || quoted)) {
      quoted = !quoted;
      if (!quoted && !quotesAnywhere) {
        i++;
        break;
      }
    } else if (!quoted && (c === ' ' || c === '\t')) break;
  }
  if (quoted) return undefined;
  return { field: rest.slice(0, i), rest: rest.slice(i).trimStart() };
}

interface Options {
  namespaces?: string;
  validAfter?: number;
  validBefore?: number;
  certAuthority: boolean;
}

/** sshsigopt_parse: comma-separated, keywords case-insensitive, values in double quotes. */
function parseOptions(text: string): Options {
  const out: Options = { certAuthority: false };
  let rest = text;
  while (rest !== '') {
    const m = /^([A-Za-z-]+)(?:="((?:[^"\\]|\\.)*)")?(?:,(?!$)|$)/.exec(rest);
    if (!m) throw new Error(`unknown or malformed option at "${rest.slice(0, 40)}" (values go in double quotes)`);
    rest = rest.slice(m[0].length);
    const name = m[1]!.toLowerCase();
    const value = m[2];
    if (name === 'cert-authority' && value === undefined) {
      out.certAuthority = true;
      continue;
    }
    if (value === undefined) throw new Error(`option ${name} needs a value in double quotes`);
    if (name === 'namespaces') {
      if (out.namespaces !== undefined) throw new Error('multiple "namespaces" options');
      out.namespaces = value;
    } else if (name === 'valid-after' || name === 'valid-before') {
      const t = parseTimestamp(value);
      if (t === undefined) throw new Error(`invalid ${name} time "${value}" (YYYYMMDD[HHMM[SS]][Z])`);
      const field = name === 'valid-after' ? 'validAfter' : 'validBefore';
      if (out[field] !== undefined) throw new Error(`multiple "${name}" options`);
      out[field] = t;
    } else {
      throw new Error(`unknown option ${name}`);
    }
  }
  if (out.validAfter !== undefined && out.validBefore !== undefined && out.validBefore <= out.validAfter) {
    throw new Error('valid-before is not after valid-after');
  }
  return out;
}

/**
 * Parses an allowed_signers file.
 * @param file names the file in error messages.
 * @throws SignError 'allowed-signers' naming the file and line of the first error.
 */
export function parseAllowedSigners(text: string, file: string): AllowedSigner[] {
  const out: AllowedSigner[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const at = `${file}:${i + 1}`;
    try {
      const p = nextField(line, false);
      if (p === undefined || p.rest === '') throw new Error('expected "principals [options] keytype base64"');
      const principals = p.field.startsWith('"') ? p.field.slice(1, -1) : p.field;
      if (principals === '') throw new Error('empty principals');
      let rest = p.rest;
      let options: Options = { certAuthority: false };
      const first = nextField(rest, true);
      if (first === undefined) throw new Error('unterminated quote in the options');
      if (!KEY_TYPES.test(first.field)) {
        options = parseOptions(first.field);
        rest = first.rest;
        if (rest === '') throw new Error('missing key after the options');
      }
      const publicKey = parsePublicKey(rest);
      out.push({ principals, publicKey, ...options, file, line: i + 1 });
    } catch (err) {
      throw new SignError('allowed-signers', `${at}: ${(err as Error).message}`);
    }
  });
  return out;
}

/**
 * Reads and parses the allowed_signers file at `path`.
 * @throws SignError 'allowed-signers' when it cannot be read or parsed.
 */
export async function loadAllowedSigners(path: string): Promise<AllowedSigner[]> {
  return parseAllowedSigners(await readNamedFile(path, 'allowed-signers', 'allowed signers file'), path);
}

/**
 * Why a signature was refused, most specific last:
 * - `malformed`: the armor or blob does not parse, or holds what vaultik does not verify;
 * - `namespace`: the signature was made for another namespace;
 * - `bad-signature`: the signature does not match the message and its key;
 * - `no-signer`: no line of allowed_signers lists the principal (cert-authority lines aside);
 * - `wrong-key`: lines list the principal, none with the key that signed;
 * - `namespace-not-allowed`, `not-yet-valid`, `expired`: the signer's line restricts it.
 */
export type VerifyFailure =
  | 'malformed'
  | 'namespace'
  | 'bad-signature'
  | 'no-signer'
  | 'wrong-key'
  | 'namespace-not-allowed'
  | 'not-yet-valid'
  | 'expired';

export type VerifyResult =
  | { ok: true; fingerprint: string; publicKey: SshPublicKey; signer: AllowedSigner }
  | { ok: false; reason: VerifyFailure; message: string; fingerprint?: string };

export interface VerifyInput {
  allowedSigners: readonly AllowedSigner[];
  principal: string;
  namespace: string;
  message: Uint8Array;
  /** The armored signature text. */
  signature: string;
  /** When valid-after/valid-before are checked; now by default, like ssh-keygen. */
  at?: Date;
}

/** Whether a line allows this (already verified) signature; a refusal otherwise. */
function lineRefusal(s: AllowedSigner, namespace: string, now: number): { reason: VerifyFailure; message: string } | undefined {
  const where = `${s.file}:${s.line}`;
  if (s.namespaces !== undefined && !matchPatternList(namespace, s.namespaces)) {
    return { reason: 'namespace-not-allowed', message: `${where} does not allow namespace "${namespace}" for this key` };
  }
  if (s.validAfter !== undefined && now < s.validAfter) return { reason: 'not-yet-valid', message: `${where}: the key is not yet valid` };
  if (s.validBefore !== undefined && now > s.validBefore) return { reason: 'expired', message: `${where}: the key has expired` };
  return undefined;
}

/**
 * Verifies an armored SSH signature of `message` as `ssh-keygen -Y verify -f <allowed_signers>
 * -I <principal> -n <namespace>` does: the signature must be valid for `namespace`, and a line
 * whose principals match `principal` must list its key and allow the namespace at `at`.
 * Never throws for a bad signature: the reason is in the result.
 */
export function verifySignature(input: VerifyInput): VerifyResult {
  const { allowedSigners, principal, namespace, message } = input;
  let sig: SshSignature;
  try {
    sig = parseSignature(input.signature);
  } catch (err) {
    return { ok: false, reason: 'malformed', message: (err as Error).message };
  }
  const fingerprint = sig.publicKey.fingerprint;
  if (sig.namespace !== namespace) {
    return { ok: false, reason: 'namespace', message: `the signature is for namespace "${sig.namespace}", not "${namespace}"`, fingerprint };
  }
  if (!checkSignature(sig, namespace, message)) {
    return { ok: false, reason: 'bad-signature', message: `the signature by ${fingerprint} does not match the message`, fingerprint };
  }
  const forPrincipal = allowedSigners.filter((s) => matchPatternList(principal, s.principals));
  const plain = forPrincipal.filter((s) => !s.certAuthority);
  if (plain.length === 0) {
    const ca = forPrincipal.length > 0 ? ' (only cert-authority lines match it; vaultik does not verify certificates)' : '';
    return { ok: false, reason: 'no-signer', message: `no allowed signer for principal "${principal}"${ca}`, fingerprint };
  }
  const withKey = plain.filter((s) => s.publicKey.equals(sig.publicKey));
  if (withKey.length === 0) {
    return { ok: false, reason: 'wrong-key', message: `key ${fingerprint} is not an allowed signer for principal "${principal}"`, fingerprint };
  }
  const now = Math.floor((input.at ?? new Date()).getTime() / 1000);
  let refusal: { reason: VerifyFailure; message: string } | undefined;
  for (const s of withKey) {
    refusal = lineRefusal(s, namespace, now);
    if (refusal === undefined) return { ok: true, fingerprint, publicKey: sig.publicKey, signer: s };
  }
  return { ok: false, ...refusal!, fingerprint };
}
