// A bounded HTTP GET on loopback, for plcguard's admin endpoints (/metrics, /readyz).
import http from 'node:http';
import { WAIT_MS } from './wait.js';

export interface HttpReply {
  status: number;
  body: string;
}

/**
 * GET http://127.0.0.1:port/urlPath; rejects on a connection error or when no reply has come within
 * `ms`. node:http rather than fetch: no connection pool, so every scrape is a fresh connection, as
 * Prometheus' would be after an idle interval.
 */
export function httpGet(port: number, urlPath: string, ms = WAIT_MS): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: ms, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} on 127.0.0.1:${port}: no reply within ${ms} ms`)));
    req.on('error', reject);
  });
}
