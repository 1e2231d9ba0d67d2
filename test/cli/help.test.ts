/**
 * `--help`, the man page and the completion scripts are built from each command's option specs;
 * these tests hold the specs to the parser and the usage line, and the man page to groff.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { commands } from '../../src/cli/commands/index.js';
import { ENVIRONMENT_HELP, EXIT_CODE_HELP, manPage } from '../../src/cli/help.js';
import { main, version } from '../../src/cli/main.js';
import { ExitCode } from '../../src/errors.js';
import { REPO, ensureBuilt } from '../backup/cli.js';
import { captureIO } from '../helpers/io.js';
import { requireTool } from '../helpers/tools.js';

const dir = mkdtempSync(join(tmpdir(), 'vaultik-help-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The `--flag` and `-f` words of a usage line. */
function usageFlags(usage: string): Set<string> {
  return new Set([...usage.matchAll(/(?<![\w-])(--?[a-z][a-z-]*)/g)].map((m) => m[1]!));
}

describe('option specs', () => {
  it.each(commands.map((c) => [c.name, c] as const))('%s: the usage line names exactly the options the parser takes, each with help', (_name, command) => {
    // Each option appears in one of its forms; the usage names nothing the parser refuses.
    const flags = usageFlags(command.usage);
    const forms = Object.entries(command.options).map(([name, o]) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]);
    for (const f of forms) expect(f.some((form) => flags.has(form)), `${f.join('/')} in the usage`).toBe(true);
    for (const flag of flags) expect(forms.flat(), `${flag} is an option`).toContain(flag);
    for (const [name, o] of Object.entries(command.options)) {
      expect(o.help.length, `--${name} has help`).toBeGreaterThan(10);
      if (o.type === 'string') expect(o.arg, `--${name} names its value`).toBeTruthy();
    }
  });

  it('the parser refuses an option no spec declares (exit 2)', async () => {
    for (const command of commands) {
      const c = captureIO();
      expect(await main([command.name, '--no-such-option'], c.io), command.name).toBe(ExitCode.USAGE);
      expect(c.err()).toContain("Unknown option '--no-such-option'");
    }
  });

  it('`vaultik <command> --help` prints the summary and every option with its help', async () => {
    for (const command of commands) {
      const c = captureIO();
      expect(await main([command.name, '--help'], c.io)).toBe(0);
      expect(c.out()).toContain(`usage: ${command.usage}`);
      for (const [name, o] of Object.entries(command.options)) {
        expect(c.out()).toMatch(new RegExp(`--${name}${o.type === 'string' ? ` ${o.arg!.replace(/[|]/g, '\\|')}` : ''} +${o.help.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      }
    }
    const viaHelp = captureIO();
    expect(await main(['help', 'forget'], viaHelp.io)).toBe(0);
    expect(viaHelp.out()).toContain('--keep-daily N');
  });
});

describe('man page', () => {
  const page = manPage(commands, version(), '2026-12-06');
  const file = join(dir, 'vaultik.1');
  writeFileSync(file, page);

  it('groff formats it without a warning', () => {
    requireTool('groff');
    const r = spawnSync('groff', ['-man', '-ww', '-z', file], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
  });

  it('the formatted page lists every command, option, variable and exit code', () => {
    requireTool('groff');
    const text = execFileSync('groff', ['-man', '-Tutf8', '-P-cbou', file], { encoding: 'utf8' }).replace(/‐\n\s*/g, '').replace(/[‐−]/g, '-');
    for (const command of commands) {
      expect(text).toMatch(new RegExp(`^ {3}${command.name}$`, 'm'));
      for (const name of Object.keys(command.options)) expect(text).toContain(`--${name}`);
    }
    for (const [name] of ENVIRONMENT_HELP) expect(text).toContain(name.split(',')[0]);
    for (const code of Object.values(ExitCode)) expect(text).toMatch(new RegExp(`^ {7}${code}\\b`, 'm'));
  });

  it('README.md and the man page know the same exit codes', () => {
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('## Exit codes'));
    const codes = [...table.slice(0, table.indexOf('\n## ', 5)).matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1]));
    expect(codes.sort((a, b) => a - b)).toEqual(Object.keys(EXIT_CODE_HELP).map(Number).sort((a, b) => a - b));
    expect(Object.keys(EXIT_CODE_HELP).map(Number).sort((a, b) => a - b)).toEqual(Object.values(ExitCode).slice().sort((a, b) => a - b));
  });

  it('`npm run build` writes it where package.json points, and the package ships it', () => {
    ensureBuilt();
    execFileSync(process.execPath, [join(REPO, 'scripts', 'build-man.mjs')], { env: { ...process.env, SOURCE_DATE_EPOCH: '1796515200' } });
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { man: string; files: string[]; scripts: { build: string } };
    expect(pkg.scripts.build).toContain('scripts/build-man.mjs');
    expect(pkg.files).toContain('man/');
    expect(readFileSync(join(REPO, pkg.man), 'utf8')).toBe(manPage(commands, version(), '2026-12-06'));
  });
});
