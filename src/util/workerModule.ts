/**
 * The module a worker thread runs: `name` next to the module that starts it (`base`, that
 * module's import.meta.url), in the same form. The compiled dist/ has `<name>.js`. When the
 * TypeScript sources run directly (the tests), `base` ends in `.ts` and so does the worker's
 * module; such a process runs with a TypeScript loader (`--import`), which worker threads
 * inherit with its execArgv.
 */
export function workerModule(base: string, name: string): URL {
  return new URL(`./${name}${base.endsWith('.ts') ? '.ts' : '.js'}`, base);
}
