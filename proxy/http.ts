import http from 'node:http';
import { once } from 'node:events';
import type { Endpoint } from '../policy/types.js';
import type { Exposition } from './metrics.js';

export interface Readiness {
  /** Named checks; ready when all are true. */
  checks(): Record<string, boolean>;
}

/** What learn mode serves (GET /learn/proposal, /learn/stats). */
export interface Learning {
  /** The proposed policy (YAML) for every device that has learned something; null if none has. */
  proposal(mode: 'enforce' | 'monitor'): string | null;
  stats(): unknown;
  /** The observations themselves (snapshot.ts), for `plcguard policy learn --admin`. */
  observations(): unknown;
}

const NOTHING_LEARNED: Learning = { proposal: () => null, stats: () => ({ devices: [] }), observations: () => ({ devices: [] }) };

/**
 * Admin endpoints, never on a Modbus listener: /metrics (Prometheus), /healthz (the process is
 * alive), /readyz (policy loaded, listeners up, Redis reachable when used), /learn/proposal
 * (`?mode=monitor` for a monitor-mode proposal), /learn/stats and /learn/observations. Never
 * touches a PLC.
 */
export async function startAdminServer(at: Endpoint, register: Exposition, readiness: Readiness, learning: Learning = NOTHING_LEARNED): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    // The path alone: a query string (some scrapers add one) doesn't change what is served. A
    // request an http.Server hands over always has a url.
    const [url, query] = (req.url as string).split('?', 2);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/metrics') {
      // Written as it is produced: at plant scale the text is megabytes, made in slices that let
      // Modbus traffic through between them (metrics.ts).
      let started = false;
      register
        .write((piece) => {
          if (!started) {
            started = true;
            res.writeHead(200, { 'content-type': register.contentType });
          }
          if (!res.destroyed) res.write(piece);
        })
        .then(
          () => res.end(),
          (err: Error) => {
            // Only before the first piece (Exposition.write).
            res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`);
          },
        );
    } else if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else if (url === '/readyz') {
      const checks = readiness.checks();
      const ready = Object.values(checks).every(Boolean);
      res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ ready, checks }) + '\n');
    } else if (url === '/learn/proposal') {
      const mode = new URLSearchParams(query).get('mode') ?? 'enforce';
      if (mode !== 'enforce' && mode !== 'monitor') {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(`mode: ${JSON.stringify(mode)} is not one of enforce, monitor\n`);
        return;
      }
      const yaml = learning.proposal(mode);
      if (yaml === null) res.writeHead(404, { 'content-type': 'text/plain' }).end('nothing learned: no device in learn mode has seen a request\n');
      else res.writeHead(200, { 'content-type': 'application/yaml' }).end(yaml);
    } else if (url === '/learn/stats' || url === '/learn/observations') {
      const body = url === '/learn/stats' ? learning.stats() : learning.observations();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body) + '\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics, /healthz, /readyz, /learn/proposal, /learn/stats, /learn/observations\n');
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
