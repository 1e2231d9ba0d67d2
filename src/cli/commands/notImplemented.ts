import { VaultikError, ExitCode } from '../../errors.js';
import type { Command } from '../command.js';

/** Placeholder for a command that a later issue implements. */
export function notImplemented(name: string, summary: string, usage: string): Command {
  return {
    name,
    summary: `${summary} (not implemented yet)`,
    usage,
    run(): Promise<number> {
      return Promise.reject(new VaultikError(`not implemented yet (see the open issues)`, ExitCode.FAILURE));
    },
  };
}
