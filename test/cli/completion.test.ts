/**
 * The completion scripts, run by the real shells: bash (its completion function called as
 * readline would), fish (`complete -C`) and zsh (a real interactive zsh on a pseudo-terminal,
 * through zsh/zpty, asked to complete a command line). CI installs zsh and fish (.ci/run).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { commands } from '../../src/cli/commands/index.js';
import { main } from '../../src/cli/main.js';
import { captureIO } from '../helpers/io.js';
import { requireTool } from '../helpers/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'vaultik-completion-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'vaultik.yaml'), 'x');

async function script(shell: string): Promise<string> {
  const c = captureIO();
  expect(await main(['completion', shell], c.io)).toBe(0);
  const file = join(dir, `vaultik.${shell}`);
  writeFileSync(file, c.out());
  return file;
}

/** What bash's completion offers for `line` (the cursor at its end). */
function bashComplete(file: string, line: string): string[] {
  const words = line.split(' ');
  const program = `source "$1"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _vaultik; printf '%s\\n' "\${COMPREPLY[@]}"`;
  return execFileSync('bash', ['-c', program, 'bash', file], { cwd: dir, encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** What fish offers for `line`. */
function fishComplete(file: string, line: string): string[] {
  return execFileSync('fish', ['--no-config', '-c', `source $argv[1]; complete -C '${line}'`, file], { cwd: dir, encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t')[0]!);
}

/**
 * What zsh offers for `line`: an interactive `zsh -f` on a pty with compinit and the script,
 * compadd wrapped to print each candidate, and a Tab typed after the line.
 */
function zshComplete(file: string, line: string): string[] {
  const driver = `
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PROMPT=; autoload -Uz compinit; compinit -u -D; source ${file}'
zpty -w z 'compadd() { builtin compadd -O __hits "$@"; print -r -l -- "<<"\${^__hits}">>" >> ${dir}/zsh.out; builtin compadd "$@" }'
zpty -w z 'zstyle ":completion:*" list-prompt ""; zstyle ":completion:*" menu no'
zpty -n -w z '${line.replace(/'/g, `'\\''`)}'$'\\t'
# Wait for the first candidates (the shell may be slow to start on a loaded machine), then a bit more.
for i in {1..200}; do [[ -s ${dir}/zsh.out ]] && break; sleep 0.05; done
sleep 0.3
zpty -d z
`;
  rmSync(join(dir, 'zsh.out'), { force: true });
  execFileSync('zsh', ['-f', '-c', driver], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
  const out = existsSync(join(dir, 'zsh.out')) ? readFileSync(join(dir, 'zsh.out'), 'utf8') : '';
  return [...out.matchAll(/<<(.*?)>>/g)].map((m) => m[1]!).filter(Boolean);
}

describe('shell completion', () => {
  it('an unknown shell is a usage error (exit 2)', async () => {
    const c = captureIO();
    expect(await main(['completion', 'tcsh'], c.io)).toBe(2);
    expect(c.err()).toContain("unknown shell 'tcsh'");
  });

  it('bash: commands, options per command, option values and the shells', async () => {
    requireTool('bash');
    const file = await script('bash');
    expect(bashComplete(file, 'vaultik ')).toEqual(expect.arrayContaining(commands.map((c) => c.name)));
    expect(bashComplete(file, 'vaultik re')).toEqual(['restore']);
    expect(bashComplete(file, 'vaultik forget --keep-')).toEqual(['--keep-last', '--keep-hourly', '--keep-daily', '--keep-weekly', '--keep-monthly', '--keep-yearly', '--keep-within']);
    expect(bashComplete(file, 'vaultik forget --suspects ')).toEqual(['keep', 'forget']);
    expect(bashComplete(file, 'vaultik ls -')).toEqual(expect.arrayContaining(['-l', '--long', '--json', '--config']));
    expect(bashComplete(file, 'vaultik ls -')).not.toContain('--deep');
    expect(bashComplete(file, 'vaultik completion ')).toEqual(['bash', 'zsh', 'fish']);
  });

  it('fish: commands with their summaries, options, option values, files', async () => {
    requireTool('fish');
    const file = await script('fish');
    expect(fishComplete(file, 'vaultik ')).toEqual(expect.arrayContaining(commands.map((c) => c.name)));
    expect(fishComplete(file, 'vaultik forget --suspects ')).toEqual(['forget', 'keep']);
    expect(fishComplete(file, 'vaultik verify --')).toEqual(expect.arrayContaining(['--deep', '--sample', '--json', '--config']));
    expect(fishComplete(file, 'vaultik verify --')).not.toContain('--keep-last');
    expect(fishComplete(file, 'vaultik backup vaultik.y')).toEqual(['vaultik.yaml']);
    expect(fishComplete(file, 'vaultik completion ')).toEqual(['bash', 'fish', 'zsh']);
  });

  it('zsh: commands, options per command and option values, in a real interactive zsh', async () => {
    requireTool('zsh');
    const file = await script('zsh');
    execFileSync('zsh', ['-n', file]);
    expect(zshComplete(file, 'vaultik ')).toEqual(expect.arrayContaining(commands.map((c) => c.name)));
    expect(zshComplete(file, 'vaultik forget --suspects ')).toEqual(expect.arrayContaining(['keep', 'forget']));
    const verify = zshComplete(file, 'vaultik verify --');
    expect(verify).toEqual(expect.arrayContaining(['--deep', '--sample', '--json']));
    expect(verify).not.toContain('--keep-last');
  });
});
