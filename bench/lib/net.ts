// Loopback ports for the benchmark, the soak and the tests.
import { once } from 'node:events';
import net from 'node:net';
import { WAIT_MS, within } from './wait.js';

/**
 * A port on 127.0.0.1 that is free right now: bound, then released. For what needs a real port
 * before it starts (a policy's `listen`, a server that comes up later) or one that nothing listens
 * on. Another process could take it in between, which on a test machine is rare enough to accept.
 */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await within(once(server, 'listening'), 'a free port on 127.0.0.1');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
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
