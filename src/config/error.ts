/**
 * The config's error type. Every problem is reported as `<file>:<line>: <key>: <what is wrong>`
 * (line and key omitted when there is none, e.g. a missing required key has no line), and all
 * problems of a file are reported at once, one per line, so a user fixes them in one go.
 */
import { UsageError } from '../errors.js';

/** One problem in a config file. */
export interface ConfigIssue {
  /** The file as the user named it (or a recipients file it refers to). */
  source: string;
  /** 1-based line, when the problem has a place. */
  line?: number;
  /** Dotted key path: "chunk_size", "s3.object_lock.mode". */
  key?: string;
  message: string;
}

/** Formats one issue as `<source>:<line>: <key>: <message>`. */
export function formatIssue(issue: ConfigIssue): string {
  const where = issue.line !== undefined ? `${issue.source}:${issue.line}` : issue.source;
  return issue.key !== undefined ? `${where}: ${issue.key}: ${issue.message}` : `${where}: ${issue.message}`;
}

/**
 * A config file that cannot be used: exit code 2 (UsageError), nothing was done. `message` has
 * one formatted issue per line; `issues` has them structured, in file order.
 */
export class ConfigError extends UsageError {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[], options?: { cause?: unknown }) {
    super(issues.map(formatIssue).join('\n'), options);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}
