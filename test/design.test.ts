/**
 * docs/DESIGN.md's architecture table says what each folder of src/ imports from the others.
 * This reads the import statements of src/ and fails when the table and the code disagree, so
 * the document stays true when an import is added or removed.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('..', import.meta.url));
const SRC = join(REPO, 'src');

/** The folder a file of src/ belongs to: its top folder, or cli's subfolders on their own. */
function folderOf(file: string): string | undefined {
  const parts = relative(SRC, file).split(sep);
  if (parts.length === 1) return undefined; // src/errors.ts
  if (parts[0] === 'cli' && parts.length > 2) return `cli/${parts[1]}`;
  return parts[0];
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** folder → imported folder → whether every import of it is type-only. */
function importGraph(): Map<string, Map<string, boolean>> {
  const graph = new Map<string, Map<string, boolean>>();
  const statement = /^(?:import|export)\s+(type\s+)?([^;]*?)\s+from\s+'(\.[^']+)'|import\('(\.[^']+)'\)/gms;
  for (const file of sourceFiles(SRC)) {
    const from = folderOf(file);
    if (from === undefined) continue;
    for (const m of readFileSync(file, 'utf8').matchAll(statement)) {
      const to = folderOf(normalize(join(dirname(file), m[3] ?? m[4]!)));
      if (to === undefined || to === from) continue;
      const names = /^\{([^}]*)\}$/.exec(m[2]?.trim() ?? '')?.[1];
      const typeOnly =
        m[1] !== undefined ||
        (names !== undefined &&
          names
            .split(',')
            .map((n) => n.trim())
            .filter(Boolean)
            .every((n) => n.startsWith('type ')));
      const edges = graph.get(from) ?? new Map<string, boolean>();
      edges.set(to, (edges.get(to) ?? true) && typeOnly);
      graph.set(from, edges);
    }
  }
  return graph;
}

/** The table's rows: folder → imported folder → marked "(types)". */
function documentedGraph(): Map<string, Map<string, boolean>> {
  const doc = readFileSync(join(REPO, 'docs', 'DESIGN.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Architecture'));
  const graph = new Map<string, Map<string, boolean>>();
  for (const row of section.matchAll(/^\| `([a-z/]+)\/`[^|]*\|[^|]*\| ([^|]*) \|$/gm)) {
    const edges = new Map<string, boolean>();
    for (const item of row[2]!.split(',').map((s) => s.trim())) {
      if (item === '—') continue;
      edges.set(item.replace(/ \(types\)$/, ''), item.endsWith(' (types)'));
    }
    graph.set(row[1]!, edges);
  }
  return graph;
}

const sorted = (g: Map<string, Map<string, boolean>>): Record<string, string[]> =>
  Object.fromEntries(
    [...g.keys()].sort().map((k) => [k, [...g.get(k)!].map(([to, typeOnly]) => (typeOnly ? `${to} (types)` : to)).sort()]),
  );

describe('docs/DESIGN.md architecture', () => {
  it('lists every folder of src/ with exactly the folders it imports', () => {
    const documented = documentedGraph();
    expect(documented.size).toBeGreaterThan(10);
    const actual = importGraph();
    // Folders that import no other folder have no edges but still have a row, and a row names
    // a folder that exists.
    for (const file of sourceFiles(SRC)) {
      const folder = folderOf(file);
      if (folder !== undefined && !actual.has(folder)) actual.set(folder, new Map());
    }
    expect(sorted(documented), 'received: the table; expected: the imports in src/').toEqual(sorted(actual));
  });
});
