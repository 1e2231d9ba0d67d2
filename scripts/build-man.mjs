#!/usr/bin/env node
// Writes man/vaultik.1 from the built CLI's help data (dist/cli/help.js): run by `npm run build`
// after tsc, so the man page shipped in the package lists exactly the options the parser takes.
// The date is SOURCE_DATE_EPOCH's when set (reproducible builds), else today's.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { manPage } = await import(join(root, 'dist/cli/help.js'));
const { commands } = await import(join(root, 'dist/cli/commands/index.js'));
const { version } = await import(join(root, 'dist/cli/main.js'));
const epoch = process.env.SOURCE_DATE_EPOCH;
const date = (epoch ? new Date(Number(epoch) * 1000) : new Date()).toISOString().slice(0, 10);
mkdirSync(join(root, 'man'), { recursive: true });
writeFileSync(join(root, 'man', 'vaultik.1'), manPage(commands, version(), date));
