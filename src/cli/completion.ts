/**
 * Shell completion scripts for bash, zsh and fish, generated from the commands' option specs
 * (src/cli/command.ts), the same data `--help` and the man page are built from. Each script
 * completes command names, each command's options, the fixed values of an option that has
 * `choices`, and files elsewhere (config files, target directories).
 */
import type { Command, OptionSpec } from './command.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

/** Single-quoted for any POSIX-like shell: `'it'\''s'`. */
function quote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** The positional values a command completes (the first positional only), else files. */
export interface CompletionCommand extends Command {
  /** Fixed values of the first positional (`completion bash|zsh|fish`). */
  positionalChoices?: readonly string[];
}

/** True when the option's value is a path: completed as files, others as nothing or choices. */
function takesPath(o: OptionSpec): boolean {
  return o.arg === 'FILE' || o.arg === 'DIR';
}

function optionWords(command: Command): string[] {
  return Object.entries(command.options).flatMap(([name, o]) => (o.short ? [`-${o.short}`, `--${name}`] : [`--${name}`]));
}

function bash(commands: readonly CompletionCommand[]): string {
  const cases = commands.map((c) => {
    const valued = Object.entries(c.options).filter(([, o]) => o.type === 'string');
    const valueCases = valued.map(([name, o]) => {
      const flags = o.short ? `-${o.short}|--${name}` : `--${name}`;
      // Choices complete as words; anything else falls back to bash's default (files).
      return o.choices ? `        ${flags}) COMPREPLY=($(compgen -W ${quote(o.choices.join(' '))} -- "$cur")); return ;;` : `        ${flags}) return ;;`;
    });
    const positional = c.positionalChoices ? `[ "$COMP_CWORD" -eq 2 ] && COMPREPLY=($(compgen -W ${quote(c.positionalChoices.join(' '))} -- "$cur")) && return` : ':';
    return [
      `    ${c.name})`,
      `      case "$prev" in`,
      ...valueCases,
      `      esac`,
      `      [[ "$cur" == -* ]] && COMPREPLY=($(compgen -W ${quote([...optionWords(c), '--help'].join(' '))} -- "$cur")) && return`,
      `      ${positional}`,
      `      ;;`,
    ].join('\n');
  });
  return [
    '# bash completion for vaultik: `source <(vaultik completion bash)`, or save it as',
    '# /usr/share/bash-completion/completions/vaultik',
    '_vaultik() {',
    '  local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"',
    '  COMPREPLY=()',
    '  if [ "$COMP_CWORD" -eq 1 ]; then',
    `    COMPREPLY=($(compgen -W ${quote([...commands.map((c) => c.name), 'help', '--help', '--version'].join(' '))} -- "$cur"))`,
    '    return',
    '  fi',
    '  case "${COMP_WORDS[1]}" in',
    ...cases,
    '  esac',
    '}',
    'complete -o default -F _vaultik vaultik',
    '',
  ].join('\n');
}

/** Text inside a zsh _arguments/_describe spec: `[`, `]`, `:` and `\` escaped. */
function zshText(text: string): string {
  return text.replace(/([\\[\]:])/g, '\\$1');
}

/** The _arguments specs of one option (a short form gets its own spec; both exclude each other). */
function zshSpecs(name: string, o: OptionSpec): string[] {
  const action = o.choices ? `(${o.choices.join(' ')})` : takesPath(o) ? '_files' : ' ';
  const value = o.type === 'string' ? `:${zshText(o.arg ?? 'value')}:${action}` : '';
  const tail = `[${zshText(o.help)}]${value}`;
  if (o.multiple) return [`*--${name}${tail}`, ...(o.short ? [`*-${o.short}${tail}`] : [])];
  if (!o.short) return [`--${name}${tail}`];
  return [`(-${o.short} --${name})--${name}${tail}`, `(-${o.short} --${name})-${o.short}${tail}`];
}

function zsh(commands: readonly CompletionCommand[]): string {
  const described = commands.map((c) => quote(`${c.name}:${zshText(c.summary)}`)).join(' ');
  const cases = commands.map((c) => {
    const specs = Object.entries(c.options).flatMap(([name, o]) => zshSpecs(name, o).map(quote));
    const rest = quote(c.positionalChoices ? `1:${c.name}:(${c.positionalChoices.join(' ')})` : '*:file:_files');
    return `    ${c.name}) _arguments -s ${[...specs, quote('--help[show the usage]'), rest].join(' ')} ;;`;
  });
  return [
    '#compdef vaultik',
    '# zsh completion for vaultik: save it as _vaultik in a directory on $fpath (before',
    '# compinit runs), or `source <(vaultik completion zsh)` after compinit.',
    '_vaultik() {',
    `  local -a commands; commands=(${described})`,
    '  if (( CURRENT == 2 )); then',
    "    _describe -t commands 'vaultik command' commands",
    '    return',
    '  fi',
    '  local cmd=$words[2]',
    '  shift words; (( CURRENT-- ))',
    '  case $cmd in',
    ...cases,
    '  esac',
    '}',
    'if [[ $funcstack[1] == _vaultik ]]; then _vaultik "$@"; else compdef _vaultik vaultik; fi',
    '',
  ].join('\n');
}

function fish(commands: readonly CompletionCommand[]): string {
  const lines = [
    '# fish completion for vaultik: `vaultik completion fish | source`, or save it as',
    '# ~/.config/fish/completions/vaultik.fish',
    'complete -c vaultik -f',
  ];
  for (const c of commands) lines.push(`complete -c vaultik -n __fish_use_subcommand -a ${c.name} -d ${quote(c.summary)}`);
  for (const c of commands) {
    const when = `-n ${quote(`__fish_seen_subcommand_from ${c.name}`)}`;
    lines.push(c.positionalChoices ? `complete -c vaultik ${when} -a ${quote(c.positionalChoices.join(' '))}` : `complete -c vaultik ${when} -F`);
    for (const [name, o] of Object.entries(c.options)) {
      const flags = `${o.short ? `-s ${o.short} ` : ''}-l ${name}`;
      const value = o.type === 'boolean' ? '' : o.choices ? ` -x -a ${quote(o.choices.join(' '))}` : takesPath(o) ? ' -r -F' : ' -x';
      lines.push(`complete -c vaultik ${when} ${flags}${value} -d ${quote(o.help)}`);
    }
  }
  return lines.join('\n') + '\n';
}

/** The completion script for `shell`. */
export function completionScript(shell: Shell, commands: readonly CompletionCommand[]): string {
  switch (shell) {
    case 'bash':
      return bash(commands);
    case 'zsh':
      return zsh(commands);
    case 'fish':
      return fish(commands);
  }
}
