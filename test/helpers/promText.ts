/**
 * A strict parser of the Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/), written for the tests from
 * the format's rules, independent of src/monitor. It throws on anything the format (or
 * Prometheus' own parser, as node_exporter's textfile collector uses it) refuses:
 * - metric and label names outside [a-zA-Z_:][a-zA-Z0-9_:]* / [a-zA-Z_][a-zA-Z0-9_]*,
 *   label names starting with "__";
 * - a TYPE other than counter, gauge, histogram, summary, untyped; two HELP or TYPE lines for
 *   one family; a TYPE after the family's first sample; a family's samples not together;
 * - bad label syntax or escapes (only \\, \" and \n), a label repeated in one sample;
 * - a value that is not a Go float (NaN, +Inf, -Inf allowed); a timestamp that is not an int;
 * - the same series (name + labels) twice; a counter with a negative value;
 * - a last line without "\n", or a "\r".
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
  timestamp?: number;
}

export interface Family {
  name: string;
  help?: string;
  type: string;
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];

function parseValue(text: string, line: number): number {
  if (text === 'NaN') return NaN;
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`line ${line}: bad value ${JSON.stringify(text)}`);
  return Number(text);
}

/** The family a sample name belongs to (histogram/summary suffixes). */
function familyOf(name: string, families: Map<string, Family>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const f = families.get(base);
      if (f && (f.type === 'histogram' || f.type === 'summary')) return base;
    }
  }
  return name;
}

export function parsePromText(text: string): Map<string, Family> {
  if (text.includes('\r')) throw new Error('carriage return in the exposition');
  if (text !== '' && !text.endsWith('\n')) throw new Error('the last line does not end with \\n');
  const families = new Map<string, Family>();
  const seenSeries = new Set<string>();
  const closed = new Set<string>();
  let current: string | undefined;
  const lines = text.split('\n');
  lines.pop();
  lines.forEach((raw, i) => {
    const n = i + 1;
    if (raw.trim() === '') return;
    const get = (name: string): Family => {
      let f = families.get(name);
      if (!f) {
        f = { name, type: 'untyped', samples: [] };
        families.set(name, f);
      }
      return f;
    };
    const begin = (name: string): void => {
      if (current !== name) {
        if (closed.has(name)) throw new Error(`line ${n}: family ${name} continues after another family began`);
        if (current !== undefined) closed.add(current);
        current = name;
      }
    };
    if (raw.startsWith('#')) {
      const m = /^#\s+(HELP|TYPE)\s+(\S+)(?:\s+(.*))?$/.exec(raw);
      if (!m) return; // a comment
      const [, kind, name, rest] = m;
      if (!METRIC_NAME.test(name!)) throw new Error(`line ${n}: bad metric name ${name}`);
      begin(name!);
      const f = get(name!);
      if (kind === 'HELP') {
        if (f.help !== undefined) throw new Error(`line ${n}: second HELP for ${name}`);
        const help = rest ?? '';
        if (/\\[^\\n]/.test(help.replace(/\\\\/g, ''))) throw new Error(`line ${n}: bad escape in HELP`);
        f.help = help.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      } else {
        if ((f as Family & { typed?: boolean }).typed) throw new Error(`line ${n}: second TYPE for ${name}`);
        if (f.samples.length > 0) throw new Error(`line ${n}: TYPE after samples of ${name}`);
        if (!TYPES.includes(rest ?? '')) throw new Error(`line ${n}: bad type ${JSON.stringify(rest)}`);
        f.type = rest!;
        (f as Family & { typed?: boolean }).typed = true;
      }
      return;
    }
    const m = /^([^\s{]+)(\{.*\})?\s+(\S+)(?:\s+(\S+))?\s*$/.exec(raw);
    if (!m) throw new Error(`line ${n}: not a sample: ${JSON.stringify(raw)}`);
    const [, name, labelText, valueText, ts] = m;
    if (!METRIC_NAME.test(name!)) throw new Error(`line ${n}: bad metric name ${name}`);
    const labels: Record<string, string> = {};
    if (labelText !== undefined) {
      let s = labelText.slice(1, -1);
      while (s.length > 0) {
        const lm = /^\s*([^=\s]+)\s*=\s*"/.exec(s);
        if (!lm) throw new Error(`line ${n}: bad label syntax in ${labelText}`);
        const key = lm[1]!;
        if (!LABEL_NAME.test(key) || key.startsWith('__')) throw new Error(`line ${n}: bad label name ${key}`);
        if (key in labels) throw new Error(`line ${n}: label ${key} repeated`);
        s = s.slice(lm[0].length);
        let value = '';
        let j = 0;
        for (;;) {
          if (j >= s.length) throw new Error(`line ${n}: unterminated label value`);
          const c = s[j]!;
          if (c === '"') break;
          if (c === '\\') {
            const e = s[j + 1];
            if (e === '\\') value += '\\';
            else if (e === '"') value += '"';
            else if (e === 'n') value += '\n';
            else throw new Error(`line ${n}: bad escape \\${e ?? ''} in a label value`);
            j += 2;
          } else {
            value += c;
            j++;
          }
        }
        labels[key] = value;
        s = s.slice(j + 1).replace(/^\s*/, '');
        if (s.startsWith(',')) s = s.slice(1);
        else if (s.length > 0) throw new Error(`line ${n}: expected , between labels`);
      }
    }
    const value = parseValue(valueText!, n);
    if (ts !== undefined && !/^-?\d+$/.test(ts)) throw new Error(`line ${n}: bad timestamp ${ts}`);
    const fam = familyOf(name!, families);
    begin(fam);
    const f = get(fam);
    const key = `${name}{${Object.entries(labels).sort().map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(',')}}`;
    if (seenSeries.has(key)) throw new Error(`line ${n}: series ${key} twice`);
    seenSeries.add(key);
    if (f.type === 'counter' && (value < 0 || Number.isNaN(value))) throw new Error(`line ${n}: counter ${name} is ${value}`);
    f.samples.push({ name: name!, labels, value, ...(ts !== undefined ? { timestamp: Number(ts) } : {}) });
  });
  return families;
}

/** The value of the one sample of `name` whose labels include `labels`. Throws if not exactly one. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const all = [...families.values()].flatMap((f) => f.samples).filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (all.length !== 1) throw new Error(`${all.length} samples of ${name} ${JSON.stringify(labels)}`);
  return all[0]!.value;
}
