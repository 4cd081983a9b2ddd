import net from 'node:net';
import type { Endpoint } from '../policy/types.js';

export class EndpointError extends Error {
  readonly code = 'ERR_ENDPOINT';
}

/** Parses `host:port` or `[ipv6]:port`; throws EndpointError naming `what` and the value. */
export function parseEndpoint(value: string, what: string): Endpoint {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  const host = m ? (m[1] ?? m[2]!) : '';
  if (!m || port < 1 || port > 65535 || (m[1] !== undefined && net.isIPv6(host) === false)) {
    throw new EndpointError(`${what}: "${value}" is not HOST:PORT or [IPv6]:PORT with a port 1..65535`);
  }
  return { host, port };
}
