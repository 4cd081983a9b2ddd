// The baseline: a minimal blind relay. Each client connection is piped to a new connection to the
// PLC, both ways, with no parsing at all: what any inline TCP hop costs in Node.js. plcguard is
// judged against this, measured in the same run.
//   node dist/bench/relay.js --upstream PORT [--port N]   → {"type":"listening","port":N}
import net from 'node:net';
import { parseArgs } from 'node:util';
import { sendToParent, type RelayMessage } from './ipc.js';

function report(msg: RelayMessage): void {
  if (!sendToParent(msg)) process.stdout.write(JSON.stringify(msg) + '\n');
}

function main(): void {
  const { values } = parseArgs({ options: { upstream: { type: 'string' }, port: { type: 'string', default: '0' } } });
  const upstreamPort = Number(values.upstream);
  if (!Number.isInteger(upstreamPort) || upstreamPort < 1 || upstreamPort > 65535) {
    process.stderr.write('bench relay: --upstream PORT (1..65535) is required\n');
    process.exit(2);
  }
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
  server.on('error', (err) => {
    process.stderr.write(`bench relay: ${err.message}\n`);
    process.exit(1);
  });
  server.listen({ host: '127.0.0.1', port: Number(values.port), backlog: 4096 }, () => {
    report({ type: 'listening', port: (server.address() as net.AddressInfo).port });
  });
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}

main();
