// Loopback ports for the benchmark, the soak and the tests.
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import { WAIT_MS, within } from './wait.js';

/** Below this, ports are well-known or registered services'. */
const LOWEST_LISTEN_PORT = 10_000;
/**
 * The top of the ports below the ephemeral range is the plant's (listenPorts scans down from
 * there, 1,000 of them); freePort stays under it.
 */
const PLANT_BAND = 2000;
/** freePort's random picks before it gives up (each one taken means another process has it). */
const FREE_PORT_TRIES = 50;

/** The first port of the kernel's ephemeral range ("32768\t60999"): what bind(0) and connect() hand out from. */
export function ephemeralLow(): number {
  return Number.parseInt(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8'), 10);
}

/** Whether 127.0.0.1:port can be listened on now (it is bound, then released). */
async function canListen(port: number): Promise<boolean> {
  const server = net.createServer();
  const ok = await new Promise<boolean>((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => resolve(true));
  });
  if (ok) await new Promise<void>((resolve) => server.close(() => resolve()));
  return ok;
}

/**
 * A port on 127.0.0.1 that is free right now. For what needs a real port before it starts (a
 * policy's `listen`, a server that comes up later) or one that nothing listens on. Picked at
 * random below the kernel's ephemeral range: a port bind(0) handed out is handed out again, and
 * every outgoing connection takes one as its source port (which also keeps it from being
 * listened on), so with the suite's thousands of connections one was taken between this check
 * and its use in two full runs of one day. Below the range only another such pick can take it.
 */
export async function freePort(): Promise<number> {
  const top = ephemeralLow() - PLANT_BAND - 1;
  for (let i = 1; ; i++) {
    const port = LOWEST_LISTEN_PORT + Math.floor(Math.random() * (top - LOWEST_LISTEN_PORT + 1));
    if (await canListen(port)) return port;
    /* c8 ignore start -- a pick another process holds (rare); as many in a row: no ports to give */
    if (i === FREE_PORT_TRIES) throw new Error(`no free port on 127.0.0.1 in ${FREE_PORT_TRIES} random picks from ${LOWEST_LISTEN_PORT}-${top}`);
  }
}
/* c8 ignore stop */

/**
 * `n` ports on 127.0.0.1 free now, from `top` (just below the kernel's ephemeral range: the
 * plant's band, above freePort's picks) down to `lowest`: ports that bind(0) and connect() never
 * hand out, so the plant's own 10,000 client connections (and other jobs' tests) can't take one
 * between this check and plcguard's listen.
 */
export async function portsBelowEphemeral(n: number, top = ephemeralLow() - 1, lowest = LOWEST_LISTEN_PORT): Promise<number[]> {
  const ports: number[] = [];
  for (let port = top; ports.length < n && port >= lowest; port--) {
    if (await canListen(port)) ports.push(port);
  }
  if (ports.length < n) throw new Error(`only ${ports.length} free ports below the ephemeral range, ${n} needed`);
  return ports;
}

/**
 * Connects to 127.0.0.1:port; resolves the connected socket. A refused or timed-out connect
 * rejects, and its socket is destroyed (a connect that merely timed out would still be pending).
 */
export async function connectLocal(port: number, opts: { localAddress?: string; noDelay?: boolean } = {}, ms = WAIT_MS): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port, ...opts });
  try {
    await within(once(socket, 'connect'), `connect to 127.0.0.1:${port}`, ms);
  } catch (err) {
    socket.destroy();
    throw err;
  }
  return socket;
}
