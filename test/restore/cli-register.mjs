// Lets a child `node` run the TypeScript sources (src/cli/main.ts) directly: registers
// cli-hooks.mjs, which maps './x.js' imports to './x.ts' and transpiles them with typescript.
import { register } from 'node:module';

register('./cli-hooks.mjs', import.meta.url);
