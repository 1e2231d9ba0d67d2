#!/usr/bin/env node
/**
 * The `vaultik` executable: refuses a Node.js it cannot run on (nodeVersion.ts), sets V8's heap
 * flags before anything else loads (heapFlags.ts), then runs the CLI (main.ts). `backup --daemon`
 * first execs itself with glibc's malloc settings (daemonEnv.ts).
 */
import { execDaemonEnv } from './daemonEnv.js';
import { setHeapFlags } from './heapFlags.js';
import { unsupportedNode } from './nodeVersion.js';

const unsupported = unsupportedNode(process.version);
if (unsupported !== undefined) {
  process.stderr.write(`${unsupported}\n`);
  process.exit(1);
}
execDaemonEnv();
setHeapFlags();
const { runAsProgram } = await import('./main.js');
runAsProgram();
