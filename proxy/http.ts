import http from 'node:http';
import { once } from 'node:events';
import type { Registry } from 'prom-client';
import type { Endpoint } from '../policy/types.js';

export interface Readiness {
  /** Named checks; ready when all are true. */
  checks(): Record<string, boolean>;
}

/**
 * Admin endpoints, never on a Modbus listener: /metrics (Prometheus), /healthz (the process is
 * alive), /readyz (policy loaded, listeners up, Redis reachable when used). Never touches a PLC.
 */
export async function startAdminServer(at: Endpoint, register: Registry, readiness: Readiness): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    // The path alone: a query string (some scrapers add one) doesn't change what is served. A
    // request an http.Server hands over always has a url.
    const url = (req.url as string).split('?', 1)[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/metrics') {
      register.metrics().then(
        (body) => res.writeHead(200, { 'content-type': register.contentType }).end(body),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
      );
    } else if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (url === '/readyz') {
      const checks = readiness.checks();
      const ready = Object.values(checks).every(Boolean);
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready, checks }) + '\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz, /readyz\n');
    }
  });
  server.listen({ host: at.host, port: at.port });
  await Promise.race([
    once(server, 'listening'),
    once(server, 'error').then(([err]) => {
      throw err as Error;
    }),
  ]);
  return server;
}
