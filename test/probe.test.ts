// `plcguard probe` against the simulated PLC and against scripted raw servers, all on 127.0.0.1.
import net from 'node:net';
import t from 'tap';
import { HR, readBit, startSimulatedPlc, type SimulatedPlc } from '../demo/plc.js';
import { encodeAdu } from '../modbus/index.js';
import { PROBE_USAGE, probeCommand } from '../cli/probe.js';
import { closeServer, listenLocal } from './fixtures/net.js';
import { freePort as closedPort } from '../bench/lib/net.js';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

interface Run {
  code: number;
  stdout: string[];
  stderr: string[];
}

async function probe(...args: string[]): Promise<Run> {
  const run: Run = { code: -1, stdout: [], stderr: [] };
  run.code = await probeCommand(args, { stdout: (s) => run.stdout.push(s), stderr: (s) => run.stderr.push(s) });
  return run;
}

async function plcFor(t: TapTest, unitId?: number): Promise<SimulatedPlc> {
  const plc = await startSimulatedPlc({ tickMs: 0, unitId });
  t.teardown(() => plc.close());
  return plc;
}

/**
 * A scripted server: `reply` gets each received chunk (a whole request: the probe sends one) and
 * the socket, and answers however the test wants. Its sockets are destroyed at teardown.
 */
async function rawServer(t: TapTest, reply: (request: Buffer, socket: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (chunk: Buffer) => reply(chunk, socket));
  });
  const port = await listenLocal(server);
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await closeServer(server);
  });
  return port;
}

/** A reply ADU to `request` (its transaction and unit id) with the given PDU. */
const answer = (request: Buffer, pdu: number[]): Buffer => encodeAdu(request.readUInt16BE(0), request[6]!, Buffer.from(pdu));

void t.test('read each table: one `table address: value` line per address', async (t) => {
  const plc = await plcFor(t);
  const at = `127.0.0.1:${plc.port}`;
  t.same(await probe(at, 'read', 'holding_registers', '10-12'), {
    code: 0,
    stdout: ['holding_registers 10: 650', 'holding_registers 11: 850', 'holding_registers 12: 550'],
    stderr: [],
  });
  t.same(await probe(at, 'read', 'input_registers', '2'), { code: 0, stdout: ['input_registers 2: 65526'], stderr: [] });
  t.same((await probe(at, 'read', 'holding_registers', '0xa-0xb')).stdout, ['holding_registers 10: 650', 'holding_registers 11: 850'], '0x-hex addresses');
  t.same(await probe(at, 'read', 'coils', '0-2', '--unit', '1'), {
    code: 0,
    stdout: ['coils 0: 1', 'coils 1: 1', 'coils 2: 0'],
    stderr: [],
  });
  t.same(await probe(at, 'read', 'discrete_inputs', '3-4', '--timeout=1000'), {
    code: 0,
    stdout: ['discrete_inputs 3: 0', 'discrete_inputs 4: 1'],
    stderr: [],
  });
  const max = await probe(at, 'read', 'holding_registers', '0-124');
  t.equal(max.code, 0);
  t.equal(max.stdout.length, 125, 'a maximal register read');
  t.equal(max.stdout[124], 'holding_registers 124: 0');
  const bits = await probe(at, 'read', 'coils', '0-1999');
  t.equal(bits.stdout.length, 2000, 'a maximal bit read');
  t.equal(bits.stdout[1999], 'coils 1999: 0');
});

void t.test('write with FC6, FC16, FC5, FC15, then read back', async (t) => {
  const plc = await plcFor(t);
  const at = `127.0.0.1:${plc.port}`;
  const ack = (fc: string): string => `written with ${fc}, acknowledged by ${at} unit 1`;
  t.same(await probe(at, 'write', 'holding_registers', '10=700'), {
    code: 0,
    stdout: ['holding_registers 10: 700', ack('write_single_register (FC6)')],
    stderr: [],
  });
  t.equal(plc.holding.readUInt16BE(HR.SUPPLY_SETPOINT * 2), 700);
  t.same(await probe(at, 'write', 'holding_registers', '14=25,13=70'), {
    code: 0,
    stdout: ['holding_registers 13: 70', 'holding_registers 14: 25', ack('write_multiple_registers (FC16)')],
    stderr: [],
  });
  t.same((await probe(at, 'read', 'holding_registers', '10-14')).stdout, [
    'holding_registers 10: 700',
    'holding_registers 11: 850',
    'holding_registers 12: 550',
    'holding_registers 13: 70',
    'holding_registers 14: 25',
  ]);
  t.same(await probe(at, 'write', 'coils', '2=1'), { code: 0, stdout: ['coils 2: 1', ack('write_single_coil (FC5)')], stderr: [] });
  t.equal(readBit(plc.coils, 2), 1);
  t.same(await probe(at, 'write', 'coils', '0=0,1=0,2=0,3=1'), {
    code: 0,
    stdout: ['coils 0: 0', 'coils 1: 0', 'coils 2: 0', 'coils 3: 1', ack('write_multiple_coils (FC15)')],
    stderr: [],
  });
  t.same((await probe(at, 'read', 'coils', '0-3')).stdout, ['coils 0: 0', 'coils 1: 0', 'coils 2: 0', 'coils 3: 1']);
  t.same(await probe(at, 'write', 'holding_registers', '20-21=0x10', '22=5'), {
    code: 0,
    stdout: ['holding_registers 20: 16', 'holding_registers 21: 16', 'holding_registers 22: 5', ack('write_multiple_registers (FC16)')],
    stderr: [],
  }, 'A-B=V and assignments in several words, as policy check takes them');
  t.same(await probe(at, 'write', 'holding_registers', '999=65535'), {
    code: 0,
    stdout: ['holding_registers 999: 65535', ack('write_single_register (FC6)')],
    stderr: [],
  });
});

void t.test('a Modbus exception: its code and name, exit 3', async (t) => {
  const plc = await plcFor(t);
  const at = `127.0.0.1:${plc.port}`;
  t.same(await probe(at, 'read', 'holding_registers', '999-1000'), {
    code: 3,
    stdout: [`exception 0x02 (illegal data address) from ${at} unit 1`],
    stderr: [],
  });
  t.same(await probe(at, 'write', 'coils', '2000=1', '--unit', '9'), {
    code: 3,
    stdout: [`exception 0x02 (illegal data address) from ${at} unit 9`],
    stderr: [],
  });
  const gated = await plcFor(t, 5);
  const gatedAt = `127.0.0.1:${gated.port}`;
  t.same(await probe(gatedAt, 'read', 'input_registers', '0', '--unit', '6'), {
    code: 3,
    stdout: [`exception 0x0b (gateway target device failed to respond) from ${gatedAt} unit 6`],
    stderr: [],
  });
  // An exception code without a name in the spec.
  const odd = await rawServer(t, (r, s) => s.write(answer(r, [0x83, 0x42])));
  t.same(await probe(`127.0.0.1:${odd}`, 'read', 'holding_registers', '0'), {
    code: 3,
    stdout: [`exception 0x42 (unknown exception code) from 127.0.0.1:${odd} unit 1`],
    stderr: [],
  });
});

void t.test('connection and response failures: one line on stderr, exit 1', async (t) => {
  const refused = await closedPort();
  t.same(await probe(`127.0.0.1:${refused}`, 'read', 'coils', '0'), {
    code: 1,
    stdout: [],
    stderr: [`error: connection refused by 127.0.0.1:${refused}`],
  });

  const silent = await rawServer(t, () => {});
  t.same(await probe(`127.0.0.1:${silent}`, 'read', 'coils', '0', '--timeout', '100'), {
    code: 1,
    stdout: [],
    stderr: [`error: no response from 127.0.0.1:${silent} unit 1 within 100 ms`],
  });

  const slammer = await rawServer(t, (_, s) => s.destroy());
  t.same(await probe(`127.0.0.1:${slammer}`, 'write', 'holding_registers', '10=1'), {
    code: 1,
    stdout: [],
    stderr: [`error: connection closed by 127.0.0.1:${slammer} before a response`],
  });

  // Two registers asked for, one returned.
  const short = await rawServer(t, (r, s) => s.write(answer(r, [3, 2, 0, 1])));
  t.same(await probe(`127.0.0.1:${short}`, 'read', 'holding_registers', '0-1'), {
    code: 1,
    stdout: [],
    stderr: [
      `error: bad response from 127.0.0.1:${short} unit 1: transaction 1, unit 1, PDU 03020001 does not answer FC3 read_holding_registers holding_registers 0-1`,
    ],
  });

  // A write acknowledged with a different value than was sent.
  const liar = await rawServer(t, (r, s) => s.write(answer(r, [6, 0, 10, 0, 1])));
  t.same(await probe(`127.0.0.1:${liar}`, 'write', 'holding_registers', '10=650'), {
    code: 1,
    stdout: [],
    stderr: [
      `error: bad response from 127.0.0.1:${liar} unit 1: transaction 1, unit 1, PDU 06000a0001 does not answer FC6 write_single_register holding_registers 10 = 650`,
    ],
  });
  const coilLiar = await rawServer(t, (r, s) => s.write(answer(r, [15, 0, 3, 0, 2])));
  t.same(await probe(`127.0.0.1:${coilLiar}`, 'write', 'coils', '2=1,3=1'), {
    code: 1,
    stdout: [],
    stderr: [
      `error: bad response from 127.0.0.1:${coilLiar} unit 1: transaction 1, unit 1, PDU 0f00030002 does not answer FC15 write_multiple_coils coils 2-3 = 1, 1`,
    ],
  });

  // A well-formed answer to someone else: another transaction id, then another unit id.
  const stranger = await rawServer(t, (r, s) => s.write(encodeAdu(7, r[6]!, Buffer.from([3, 2, 0, 1]))));
  t.same(await probe(`127.0.0.1:${stranger}`, 'read', 'holding_registers', '0'), {
    code: 1,
    stdout: [],
    stderr: [
      `error: bad response from 127.0.0.1:${stranger} unit 1: transaction 7, unit 1, PDU 03020001 does not answer FC3 read_holding_registers holding_registers 0-0`,
    ],
  });
  const otherUnit = await rawServer(t, (r, s) => s.write(encodeAdu(r.readUInt16BE(0), 2, Buffer.from([3, 2, 0, 1]))));
  t.same((await probe(`127.0.0.1:${otherUnit}`, 'read', 'holding_registers', '0')).stderr, [
    `error: bad response from 127.0.0.1:${otherUnit} unit 1: transaction 1, unit 2, PDU 03020001 does not answer FC3 read_holding_registers holding_registers 0-0`,
  ]);

  // Not Modbus at all: protocol id 1 is a framing error.
  const notModbus = await rawServer(t, (_, s) => s.write(Buffer.from([0, 1, 0, 1, 0, 3, 1, 3, 0])));
  t.same(await probe(`127.0.0.1:${notModbus}`, 'read', 'holding_registers', '0'), {
    code: 1,
    stdout: [],
    stderr: [`error: bad response from 127.0.0.1:${notModbus} unit 1: MBAP protocol id is 1, expected 0`],
  });

  // A reset instead of an answer.
  const resetter = await rawServer(t, (_, s) => s.resetAndDestroy());
  t.same(await probe(`127.0.0.1:${resetter}`, 'read', 'holding_registers', '0'), {
    code: 1,
    stdout: [],
    stderr: [`error: connection to 127.0.0.1:${resetter} lost before a response: read ECONNRESET`],
  });

  const unresolvable = await probe('nonexistent.invalid:502', 'read', 'coils', '0', '--timeout', '10000');
  t.equal(unresolvable.code, 1);
  t.match(unresolvable.stderr, [/^error: cannot connect to nonexistent\.invalid:502: getaddrinfo (ENOTFOUND|EAI_AGAIN) nonexistent\.invalid$/]);
  t.equal(unresolvable.stderr.length, 1);

  // IPv6 literals are shown in brackets, whether or not this machine has IPv6 loopback.
  const v6 = await probe(`[::1]:${refused}`, 'read', 'coils', '0');
  t.equal(v6.code, 1);
  t.match(v6.stderr, [new RegExp(`^error: (connection refused by|cannot connect to) \\[::1\\]:${refused}`)]);
});

const hasIpv6Loopback = await new Promise<boolean>((resolve) => {
  const server = net.createServer();
  server.once('error', () => resolve(false));
  server.listen(0, '::1', () => server.close(() => resolve(true)));
});

void t.test(
  'IPv6: [::1]:PORT reaches a PLC listening on ::1',
  { skip: hasIpv6Loopback ? false : 'no IPv6 loopback on this machine' },
  async (t) => {
    const plc = await startSimulatedPlc({ host: '::1', tickMs: 0 });
    t.teardown(() => plc.close());
    t.equal(plc.host, '::1');
    t.same(await probe(`[::1]:${plc.port}`, 'read', 'holding_registers', '7'), {
      code: 0,
      stdout: ['holding_registers 7: 258'],
      stderr: [],
    });
  },
);

const HINT = "try 'plcguard probe --help'";

void t.test('usage errors: exit 2, the problem named in one line, then the hint', async (t) => {
  const cases: [string[], string][] = [
    [[], 'expected HOST:PORT, read or write, TABLE and a RANGE or ADDR=VALUE list; got 0 argument(s)'],
    [['127.0.0.1:502'], 'expected HOST:PORT, read or write, TABLE and a RANGE or ADDR=VALUE list; got 1 argument(s)'],
    [['127.0.0.1:502', 'read', 'coils'], 'expected read TABLE A[-B]'],
    [['127.0.0.1:502', 'read', 'coils', '0', '1'], 'expected read TABLE A[-B]'],
    [['127.0.0.1', 'read', 'coils', '0'], 'HOST:PORT: "127.0.0.1" has no port; expected HOST:PORT or [IPv6]:PORT with a port 1..65535'],
    [['127.0.0.1:70000', 'read', 'coils', '0'], 'HOST:PORT: "127.0.0.1:70000" has port "70000"; expected HOST:PORT or [IPv6]:PORT with a port 1..65535'],
    [['::1:502', 'read', 'coils', '0'], 'HOST:PORT: "::1:502" has an IPv6 address without brackets; expected HOST:PORT or [IPv6]:PORT with a port 1..65535'],
    [['127.0.0.1:502', 'read', 'coils', '0', '--unit', '256'], '--unit must be a whole number 0..255, got "256"'],
    [['127.0.0.1:502', 'read', 'coils', '0', '--unit', 'one'], '--unit must be a whole number 0..255, got "one"'],
    [['127.0.0.1:502', 'read', 'coils', '0', '--timeout', '0'], '--timeout must be a whole number 1..600000, got "0"'],
    [['127.0.0.1:502', 'erase', 'coils', '0'], 'operation "erase" is not read or write'],
    [['127.0.0.1:502', 'read_fifo_queue', '0'], 'operation "read_fifo_queue" is not read or write'],
    [['127.0.0.1:502', 'read', 'registers', '0'], 'read needs a table: coils, discrete_inputs, holding_registers, input_registers (got "registers")'],
    [['127.0.0.1:502', 'read', 'coils', ''], 'address "" is not a number'],
    [['127.0.0.1:502', 'read', 'coils', 'a-b'], 'address "a" is not a number'],
    [['127.0.0.1:502', 'read', 'coils', '5-'], 'address "" is not a number'],
    [['127.0.0.1:502', 'read', 'coils', '1-2-3'], 'address "2-3" is not a number'],
    [['127.0.0.1:502', 'read', 'coils', '0x1g'], 'address "0x1g" is not a number'],
    [['127.0.0.1:502', 'read', 'coils', '65536'], 'address 65536 is out of range 0..65535'],
    [['127.0.0.1:502', 'read', 'holding_registers', '20-10'], 'address range 20-10 is reversed'],
    [['127.0.0.1:502', 'read', 'holding_registers', '0-125'], 'FC3 read_holding_registers holding_registers 0-125 is malformed (quantity); probe sends only well-formed requests'],
    [['127.0.0.1:502', 'read', 'input_registers', '0-200'], 'FC4 read_input_registers input_registers 0-200 is malformed (quantity); probe sends only well-formed requests'],
    [['127.0.0.1:502', 'read', 'discrete_inputs', '0-2000'], 'FC2 read_discrete_inputs discrete_inputs 0-2000 is malformed (quantity); probe sends only well-formed requests'],
    [['127.0.0.1:502', 'write', 'input_registers', '0=1'], 'write needs a table: coils, holding_registers (got "input_registers")'],
    [['127.0.0.1:502', 'write', 'discrete_inputs', '0=1'], 'write needs a table: coils, holding_registers (got "discrete_inputs")'],
    [['127.0.0.1:502', 'write', 'holding_registers', '10'], '"10" is not ADDR=VALUE'],
    [['127.0.0.1:502', 'write', 'holding_registers', '10=65536'], 'value 65536 is out of range 0..65535'],
    [['127.0.0.1:502', 'write', 'holding_registers', '10=-1'], 'value "-1" is not a number'],
    [['127.0.0.1:502', 'write', 'coils', '3=2'], 'value 2 is out of range 0..1'],
    [['127.0.0.1:502', 'write', 'holding_registers', 'x=1'], 'address "x" is not a number'],
    [['127.0.0.1:502', 'write', 'holding_registers', '10=1,10=2'], 'address 10 is written twice'],
    [['127.0.0.1:502', 'write', 'holding_registers', '10=1,12=2'], 'address 12 does not follow 10: one request writes consecutive addresses'],
    [['127.0.0.1:502', 'write', 'holding_registers', ','], 'expected ADDR=VALUE assignments'],
  ];
  for (const [args, message] of cases) {
    const run = await probe(...args);
    t.same(run, { code: 2, stdout: [], stderr: [`plcguard probe: ${message}\n${HINT}`] }, args.join(' '));
  }
  // node:util parseArgs' own messages (their wording belongs to Node).
  for (const [args, start] of [
    [['127.0.0.1:502', 'read', 'coils', '0', '--color'], "plcguard probe: Unknown option '--color'"],
    [['127.0.0.1:502', 'read', 'coils', '0', '--unit'], "plcguard probe: Option '--unit <value>' argument missing"],
  ] as const) {
    const run = await probe(...args);
    t.equal(run.code, 2);
    t.equal(run.stderr.length, 1);
    t.ok(run.stderr[0]!.startsWith(start), args.join(' '));
    t.ok(run.stderr[0]!.endsWith(`\n${HINT}`));
    t.equal(run.stderr[0]!.split('\n').length, 2, 'one line and the hint');
  }
  const many = (n: number, v: number): string => Array.from({ length: n }, (_, i) => `${i}=${v}`).join(',');
  t.same((await probe('127.0.0.1:502', 'write', 'holding_registers', many(124, 7))).stderr, [
    `plcguard probe: FC16 writes at most 123 registers\n${HINT}`,
  ]);
  t.same((await probe('127.0.0.1:502', 'write', 'coils', many(1969, 1))).stderr, [
    `plcguard probe: FC15 writes at most 1968 coils\n${HINT}`,
  ]);
});

void t.test('the largest writes are accepted: 123 registers, 1968 coils', async (t) => {
  const plc = await plcFor(t);
  const at = `127.0.0.1:${plc.port}`;
  const many = (n: number, from: number, v: (i: number) => number): string =>
    Array.from({ length: n }, (_, i) => `${from + i}=${v(i)}`).join(',');
  const regs = await probe(at, 'write', 'holding_registers', many(123, 100, (i) => i * 3));
  t.equal(regs.code, 0);
  t.equal(regs.stdout.at(-1), `written with write_multiple_registers (FC16), acknowledged by ${at} unit 1`);
  t.equal(plc.holding.readUInt16BE(222 * 2), 122 * 3);
  const coils = await probe(at, 'write', 'coils', many(1968, 10, (i) => i % 2));
  t.equal(coils.code, 0);
  t.equal(readBit(plc.coils, 10 + 1967), 1);
  t.equal(readBit(plc.coils, 10 + 1966), 0);
});

void t.test('--help prints the usage and exits 0', async (t) => {
  t.same(await probe('--help'), { code: 0, stdout: [PROBE_USAGE], stderr: [] });
  t.same(await probe('127.0.0.1:502', 'read', '-h'), { code: 0, stdout: [PROBE_USAGE], stderr: [] });
  t.same(await probe('nowhere', 'erase', '--help'), { code: 0, stdout: [PROBE_USAGE], stderr: [] }, 'whatever else was typed');
  t.match(PROBE_USAGE, /plcguard probe HOST:PORT read TABLE RANGE \[--unit N\] \[--timeout MS\] \[--json\]/);
  t.match(PROBE_USAGE, /plcguard probe HOST:PORT write TABLE ADDR=VALUE\[,ADDR=VALUE\.\.\.\] \[--unit N\] \[--timeout MS\] \[--json\]/);
});

void t.test('--json: one document with the values or the exception; failures still on stderr', async (t) => {
  const plc = await plcFor(t);
  const at = `127.0.0.1:${plc.port}`;
  const json = async (...args: string[]) => {
    const r = await probe('--json', ...args);
    t.equal(r.stdout.length, 1, 'one document');
    t.strictSame(r.stderr, []);
    return { code: r.code, doc: JSON.parse(r.stdout[0]!) as unknown };
  };
  t.strictSame(await json(at, 'read', 'holding_registers', '10-12'), {
    code: 0,
    doc: {
      target: at,
      unit: 1,
      request: 'FC3 read_holding_registers holding_registers 10-12',
      function_code: 3,
      operation: 'read',
      table: 'holding_registers',
      start: 10,
      values: [650, 850, 550],
      exception: null,
    },
  });
  t.strictSame(await json(at, 'write', 'coils', '2=1,3=0', '--unit', '1'), {
    code: 0,
    doc: {
      target: at,
      unit: 1,
      request: 'FC15 write_multiple_coils coils 2-3 = 1, 0',
      function_code: 15,
      operation: 'write',
      table: 'coils',
      start: 2,
      values: [1, 0],
      exception: null,
    },
  });
  t.equal(readBit(plc.coils, 2), 1);
  const refused = await rawServer(t, (r, s) => s.write(answer(r, [0x83, 2])));
  t.strictSame(await json(`127.0.0.1:${refused}`, 'read', 'holding_registers', '50'), {
    code: 3,
    doc: {
      target: `127.0.0.1:${refused}`,
      unit: 1,
      request: 'FC3 read_holding_registers holding_registers 50-50',
      function_code: 3,
      operation: 'read',
      table: 'holding_registers',
      start: 50,
      values: null,
      exception: 2,
    },
  });
  const down = await closedPort();
  t.same(await probe(`127.0.0.1:${down}`, 'read', 'coils', '0', '--json'), {
    code: 1,
    stdout: [],
    stderr: [`error: connection refused by 127.0.0.1:${down}`],
  });
});
