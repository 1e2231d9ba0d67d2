// Lets `node` run the TypeScript sources directly (tests only): registers ts-hooks.mjs, which maps
// './x.js' imports to './x.ts' and transpiles .ts on load. Used with `--import` by the CLI child
// processes the tests spawn and by vitest's own processes (vitest.config.ts), whose worker
// threads inherit it: the pools start their workers from src/**/*Worker.ts there.
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);
