// Module hooks for running the .ts sources (tests only, see ts-register.mjs): resolve a '.js'
// import to the '.ts' file next to it when only that exists, and transpile .ts on load (no type
// check: the test run type-checks separately). Transpiled output is cached on disk by path and
// mtime, so typescript itself is loaded only when a source changed.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const cacheDir = fileURLToPath(new URL('../../node_modules/.cache/vaultik-cli-ts/', import.meta.url));
let ts;

export async function resolve(specifier, context, next) {
  if (specifier.endsWith('.js') && context.parentURL?.endsWith('.ts') && (specifier.startsWith('.') || specifier.startsWith('/'))) {
    const url = new URL(specifier, context.parentURL);
    const tsUrl = new URL(url.href.slice(0, -3) + '.ts');
    if (!existsSync(fileURLToPath(url)) && existsSync(fileURLToPath(tsUrl))) return { url: tsUrl.href, shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.endsWith('.ts')) return next(url, context);
  const path = fileURLToPath(url);
  const st = statSync(path);
  const cached = cacheDir + createHash('sha256').update(`${path}\0${st.mtimeMs}\0${st.size}`).digest('hex') + '.mjs';
  if (existsSync(cached)) return { format: 'module', source: readFileSync(cached, 'utf8'), shortCircuit: true };
  ts ??= (await import('typescript')).default;
  const out = ts.transpileModule(readFileSync(path, 'utf8'), {
    fileName: path,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
  }).outputText;
  mkdirSync(cacheDir, { recursive: true });
  // Unique per writer: worker threads of one process may transpile the same file at once.
  const tmp = `${cached}.${randomBytes(8).toString('hex')}.tmp`;
  writeFileSync(tmp, out);
  renameSync(tmp, cached);
  return { format: 'module', source: out, shortCircuit: true };
}
