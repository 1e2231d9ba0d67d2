/**
 * The Node.js versions vaultik runs on. better-sqlite3 13 (Node-API) needs Node 22: on Node 20 it
 * crashes the process with a segmentation fault instead of an error, so the executable checks
 * first and says what to do (README, "Node.js").
 */

/** Oldest major version supported; package.json's `engines` says the same. */
export const MIN_NODE_MAJOR = 22;

/** The message for an unsupported Node.js version, or undefined when `version` (e.g. 'v24.1.0') is supported. */
export function unsupportedNode(version: string): string | undefined {
  const major = Number(/^v?(\d+)\./.exec(version)?.[1]);
  if (major >= MIN_NODE_MAJOR) return undefined;
  return `vaultik: needs Node.js ${MIN_NODE_MAJOR} or newer (22 or 24 LTS); this is Node.js ${version}. See README.md, "Node.js", for how to get one.`;
}
