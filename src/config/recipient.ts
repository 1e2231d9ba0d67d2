/**
 * Recipient checks for the config: the `age1…` strings of `age_recipient(s)` and the lines of an
 * `age_recipients_file`. The config only validates and normalizes the strings; turning them into
 * keys is src/crypto's job, and its parseRecipient is the judge of a well-formed `age1…` string.
 */
import { parseRecipient } from '../crypto/index.js';

/** One bad line of a recipients file (1-based `line`). */
export interface RecipientsFileProblem {
  line: number;
  message: string;
}

/**
 * Checks one recipient string and returns it normalized (trimmed, lower case: bech32 is
 * case-insensitive but age writes lower case).
 *
 * @throws Error with a message saying what is wrong: an age private key where the public key
 *   belongs (docs/DESIGN.md promise 1: the source holds no secret), an SSH or plugin recipient
 *   vaultik does not encrypt to, or a malformed `age1…` string (as judged by src/crypto's
 *   parseRecipient).
 */
export function checkRecipient(text: string): string {
  const s = text.trim();
  if (/^AGE-SECRET-KEY-1/i.test(s)) {
    throw new Error('this is an age PRIVATE key; the config takes the public key (age1…), and the private key must never be on the machine being backed up');
  }
  if (/^ssh-(?:ed25519|rsa) /.test(s)) {
    throw new Error('SSH recipients are not supported; vaultik encrypts to age X25519 recipients (age1…)');
  }
  // The bech32 separator is the last '1' and the data alphabet has no '1', so a '1' after
  // "age1" means a longer human-readable part: a plugin recipient ("age1yubikey1…").
  if (/^age1/i.test(s) && s.lastIndexOf('1') > 3) {
    throw new Error(`${JSON.stringify(shorten(s))} is an age plugin recipient; vaultik encrypts only to age X25519 recipients (age1…)`);
  }
  if (s !== s.toLowerCase() && s !== s.toUpperCase()) {
    throw new Error(`malformed age recipient ${JSON.stringify(shorten(s))}: mixed case`);
  }
  const normalized = s.toLowerCase();
  if (!normalized.startsWith('age1')) {
    throw new Error(`malformed age recipient ${JSON.stringify(shorten(s))}: expected an X25519 public key starting with "age1"`);
  }
  try {
    parseRecipient(normalized);
  } catch (err) {
    // crypto's message already reads 'malformed age recipient "…": <reason>'.
    throw new Error(err instanceof Error ? err.message : String(err), { cause: err });
  }
  return normalized;
}

/**
 * Parses age's recipients-file format: one recipient per line, blank lines and lines starting
 * with '#' ignored, CRLF accepted. Returns the normalized recipients and one problem per bad line
 * (the caller reports them with the file's name), so that every bad line is reported at once.
 * A file with no recipient at all is a problem too (line 0), as it is for `age -R`.
 */
export function checkRecipientsFile(text: string): { recipients: string[]; problems: RecipientsFileProblem[] } {
  const recipients: string[] = [];
  const problems: RecipientsFileProblem[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) return;
    try {
      recipients.push(checkRecipient(line));
    } catch (err) {
      problems.push({ line: i + 1, message: err instanceof Error ? err.message : String(err) });
    }
  });
  if (recipients.length === 0 && problems.length === 0) {
    problems.push({ line: 0, message: 'no recipients in the file' });
  }
  return { recipients, problems };
}

/** Long strings cut for messages: a recipient is 62 characters, garbage may be much longer. */
function shorten(s: string): string {
  return s.length > 70 ? `${s.slice(0, 67)}...` : s;
}
