/**
 * The daemon's metrics endpoint (`metrics_listen`): `GET /metrics` answers the same text as the
 * textfile, rendered at each request. Anything else is 404, a method other than GET/HEAD 405.
 * The address was checked when the config was loaded: loopback unless `metrics_allow_remote`.
 */
import { createServer, type Server } from 'node:http';
import type { MetricsListen } from '../config/index.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface MetricsServer {
  /** The port it listens on (the configured one). */
  port: number;
  close(): Promise<void>;
}

/** Listens on `listen`; resolves once it does. @throws the listen error (EADDRINUSE, EADDRNOTAVAIL). */
export function startMetricsServer(listen: MetricsListen, render: () => string): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    const body = render();
    res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve({
        port: typeof addr === 'object' && addr ? addr.port : listen.port,
        close: () =>
          new Promise((done) => {
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
