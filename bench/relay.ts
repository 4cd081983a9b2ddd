// The baseline: a minimal blind relay. Each client connection is piped to a new connection to the
// PLC, both ways, with no parsing at all: what any inline TCP hop costs in Node.js. plcguard is
// judged against this, measured in the same run.
//   node dist/bench/relay.js --upstream PORT [--port N]   → {"type":"listening","port":N}
//   node dist/bench/relay.js --map L=U,L=U,...           → {"type":"listening-many","ports":[L,...]}
//     (the plant: a listener on 127.0.0.1:L for each PLC port U, as plcguard has one per device)
import net from 'node:net';
import { parseArgs } from 'node:util';
import { sendToParent, type RelayMessage } from './ipc.js';

function report(msg: RelayMessage): void {
  if (!sendToParent(msg)) process.stdout.write(JSON.stringify(msg) + '\n');
}

function fail(message: string, code: number): never {
  process.stderr.write(`bench relay: ${message}\n`);
  process.exit(code);
}

function port(text: string | undefined, what: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n > 65535) fail(`${what}: a port (0..65535), got "${text}"`, 2);
  return n;
}

/** Listens on 127.0.0.1:listenPort (0: any) and relays every connection to 127.0.0.1:upstreamPort; resolves the port. */
function relay(listenPort: number, upstreamPort: number): Promise<number> {
  const server = net.createServer({ noDelay: true }, (client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: upstreamPort, noDelay: true });
    client.pipe(upstream);
    upstream.pipe(client);
    // Either side failing ends both: a relay has nothing to answer with.
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  server.on('error', (err) => fail(err.message, 1));
  return new Promise((resolve) => server.listen({ host: '127.0.0.1', port: listenPort, backlog: 4096 }, () => resolve((server.address() as net.AddressInfo).port)));
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { upstream: { type: 'string' }, port: { type: 'string', default: '0' }, map: { type: 'string' } } });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  if (values.map !== undefined) {
    const pairs = values.map.split(',').map((pair) => pair.split('=').map((p, i) => port(p, i === 0 ? `--map ${pair}: listen` : `--map ${pair}: upstream`)));
    report({ type: 'listening-many', ports: await Promise.all(pairs.map(([l, u]) => relay(l!, u!))) });
    return;
  }
  if (values.upstream === undefined || port(values.upstream, '--upstream') === 0) fail('--upstream PORT (1..65535) or --map L=U,... is required', 2);
  report({ type: 'listening', port: await relay(port(values.port, '--port'), Number(values.upstream)) });
}

void main();
