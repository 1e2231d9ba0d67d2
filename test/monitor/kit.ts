/**
 * Test kit for src/monitor: a local HTTP server that records health-check pings (or never
 * answers), a free loopback port, and hook commands that write their environment to files.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface PingServer {
  url: string;
  /** Paths requested, in order ("/hc", "/hc/start", "/hc/fail"). */
  paths: string[];
  bodies: string[];
  close(): Promise<void>;
}

/** A server on 127.0.0.1 recording each request's path and body; `hang`: never answers. */
export async function startPingServer(options: { hang?: boolean } = {}): Promise<PingServer> {
  const paths: string[] = [];
  const bodies: string[] = [];
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => (body += d));
    req.on('end', () => {
      paths.push(req.url ?? '');
      bodies.push(body);
      if (!options.hang) res.writeHead(200, { 'content-type': 'text/plain' }).end('OK');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hc`,
    paths,
    bodies,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port nothing listens on (taken from the kernel, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A shell hook that appends its name to `<dir>/order` and writes its whole environment to `<dir>/<name>.env`. */
export function envHook(dir: string, name: string, exit = 0): string {
  return JSON.stringify(`echo ${name} >> ${join(dir, 'order')}; env > ${join(dir, `${name}.env`)}; exit ${exit}`);
}

/** The environment a hook wrote (envHook), as a map. */
export function readEnvFile(dir: string, name: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(join(dir, `${name}.env`), 'utf8').split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

export function readOrder(dir: string): string[] {
  try {
    return readFileSync(join(dir, 'order'), 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** Every `vaultik_…` metric name docs/MONITORING.md documents (its table rows). */
export function documentedMetricNames(): string[] {
  const doc = readFileSync(new URL('../../docs/MONITORING.md', import.meta.url), 'utf8');
  return [...new Set([...doc.matchAll(/^\| `(vaultik_[a-z_]+)`/gm)].map((m) => m[1]!))];
}
