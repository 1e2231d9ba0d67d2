#!/usr/bin/env node
/**
 * The `vaultik` executable: sets V8's heap flags before anything else loads (heapFlags.ts), then
 * runs the CLI (main.ts).
 */
import { setHeapFlags } from './heapFlags.js';

setHeapFlags();
const { runAsProgram } = await import('./main.js');
runAsProgram();
