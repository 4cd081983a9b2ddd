// libmodbus's own unit-test suite (tests/unit-test-client.c against tests/unit-test-server.c)
// through plcguard (`npm run test:e2e`; .ci/run runs it too), as issue 12 asks: once with default
// limits (a PLC connection per client) and once sharing one PLC connection
// (`upstream_connections: 1`). The suite is a conformance oracle written by others: it checks
// exception codes, transaction ids, a response with an invalid TID or slave, malformed answers and
// byte timeouts of a few milliseconds, so it is timing-sensitive and runs here, serially, not in
// the parallel `npm test`.
//
// This file fetches nothing. It takes libmodbus's source tree (Debian's: `apt-get source
// libmodbus`, which .ci/run does) from the folder PLCGUARD_LIBMODBUS_SRC names, and never writes
// there: the files it needs are copied into a temporary folder, the headers `configure` would
// generate are written there, the two hard-coded ports (127.0.0.1:1502 in the client and the
// server, and their IPv6 variants) are made to read the environment, and gcc builds both programs.
// Then, all on 127.0.0.1 with free ports: unit-test-server ← plcguard run ← unit-test-client.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { freePort } from '../../bench/lib/net.js';
import { PLCGUARD_MAIN as MAIN, Proc, startPlcguard } from '../../bench/lib/process.js';
import { until, within } from '../../bench/lib/wait.js';

const SRC_ENV = 'PLCGUARD_LIBMODBUS_SRC';
/** The environment variable the patched programs read their port from. */
const PORT_ENV = 'UT_MODBUS_PORT';
const START_TIMEOUT_MS = 20_000;
/** The whole suite takes about a second; the generous bound is for a loaded CI machine. */
const SUITE_TIMEOUT_MS = 60_000;
const SUCCESS = 'ALL TESTS PASS WITH SUCCESS.';
/** Checks (lines ending in OK) libmodbus 3.1.6's client makes when it runs to the end, as straight to its server. */
const EXPECTED_CHECKS = 113;

/** Below the runner's --timeout (package.json), so the teardowns run before it kills this process. */
t.setTimeout(110_000);

if (!fs.existsSync(MAIN)) throw new Error(`${MAIN} is missing: run \`npm run build\` first (npm run test:e2e does)`);
const src = process.env[SRC_ENV];
if (src === undefined || src === '' || !fs.existsSync(path.join(src, 'tests/unit-test-client.c'))) {
  throw new Error(
    `${SRC_ENV} must name an unpacked libmodbus source tree (it holds tests/unit-test-client.c); it is ${JSON.stringify(src ?? null)}.\n` +
      `Get one with deb-src enabled in APT: mkdir -p ~/.cache/plcguard-ci && cd ~/.cache/plcguard-ci && apt-get source libmodbus,\n` +
      `then ${SRC_ENV}=~/.cache/plcguard-ci/libmodbus-3.1.6 npm run test:e2e (.ci/run does all of it).`,
  );
}
if (spawnSync('sh', ['-c', 'command -v gcc']).status !== 0) throw new Error('gcc is not installed (Debian: apt-get install gcc libc6-dev)');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-libmodbus-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Copies `rel` from the source tree into the build folder, with `edit` applied on the way. */
function copy(rel: string, edit: (text: string) => string = (s) => s): void {
  fs.writeFileSync(path.join(dir, path.basename(rel)), edit(fs.readFileSync(path.join(src!, rel), 'utf8')));
}

/** Replaces `from` by `to` in `text`, which must hold it exactly `count` times (a changed upstream file fails loudly). */
function replaceExactly(file: string, text: string, from: string, to: string, count: number): string {
  const parts = text.split(from);
  if (parts.length - 1 !== count) throw new Error(`${file}: expected ${count} × ${JSON.stringify(from)}, found ${parts.length - 1}`);
  return parts.join(to);
}

const LIB = ['modbus.c', 'modbus-data.c', 'modbus-tcp.c', 'modbus-rtu.c'];
for (const f of fs.readdirSync(path.join(src, 'src'))) if (/\.[ch]$/.test(f)) copy(`src/${f}`);

// configure's outputs. The version comes from configure.ac; config.h says what Linux with glibc
// has (the macros libmodbus 3.1's sources test).
const configureAc = fs.readFileSync(path.join(src, 'configure.ac'), 'utf8');
const versionPart = (p: string): string => {
  const m = new RegExp(`m4_define\\(\\[libmodbus_version_${p}\\], \\[(\\d+)\\]\\)`).exec(configureAc);
  if (m === null) throw new Error(`configure.ac: no libmodbus_version_${p}`);
  return m[1]!;
};
const [major, minor, micro] = ['major', 'minor', 'micro'].map(versionPart) as [string, string, string];
copy('src/modbus-version.h.in', (s) =>
  s
    .replaceAll('@LIBMODBUS_VERSION_MAJOR@', major)
    .replaceAll('@LIBMODBUS_VERSION_MINOR@', minor)
    .replaceAll('@LIBMODBUS_VERSION_MICRO@', micro)
    .replaceAll('@LIBMODBUS_VERSION@', `${major}.${minor}.${micro}`),
);
fs.renameSync(path.join(dir, 'modbus-version.h.in'), path.join(dir, 'modbus-version.h'));
copy('tests/unit-test.h.in', (s) => s.replaceAll('@HAVE_INTTYPES_H@', '1').replaceAll('@HAVE_STDINT_H@', '1'));
fs.renameSync(path.join(dir, 'unit-test.h.in'), path.join(dir, 'unit-test.h'));
fs.writeFileSync(
  path.join(dir, 'config.h'),
  ['HAVE_ACCEPT4', 'HAVE_BYTESWAP_H', 'HAVE_DECL_TIOCSRS485', 'HAVE_DECL_TIOCM_RTS', 'HAVE_INTTYPES_H', 'HAVE_STDINT_H']
    .map((m) => `#define ${m} 1\n`)
    .join(''),
);

// The ports: 1502 hard-coded, for IPv4 and IPv6 alike; the tests run only the IPv4 one (`tcp`).
const port = `atoi(getenv("${PORT_ENV}"))`;
copy('tests/unit-test-client.c', (s) => {
  s = replaceExactly('unit-test-client.c', s, 'modbus_new_tcp("127.0.0.1", 1502)', `modbus_new_tcp("127.0.0.1", ${port})`, 1);
  return replaceExactly('unit-test-client.c', s, 'modbus_new_tcp_pi("::1", "1502")', `modbus_new_tcp_pi("::1", getenv("${PORT_ENV}"))`, 1);
});
copy('tests/unit-test-server.c', (s) => {
  s = replaceExactly('unit-test-server.c', s, 'modbus_new_tcp("127.0.0.1", 1502)', `modbus_new_tcp("127.0.0.1", ${port})`, 1);
  return replaceExactly('unit-test-server.c', s, 'modbus_new_tcp_pi("::0", "1502")', `modbus_new_tcp_pi("::0", getenv("${PORT_ENV}"))`, 1);
});

for (const program of ['unit-test-server', 'unit-test-client']) {
  // -w: the 2017 sources warn under today's gcc; the warnings are not ours to fix.
  const r = spawnSync('gcc', ['-O1', '-w', '-I.', '-o', program, `${program}.c`, ...LIB], { cwd: dir, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`gcc ${program} failed (${r.status ?? r.signal}):\n${r.stderr}`);
}

/** True while something listens on 127.0.0.1:`p` (Linux: /proc/net/tcp, state 0A is LISTEN). */
function listening(p: number): boolean {
  const local = `0100007F:${p.toString(16).toUpperCase().padStart(4, '0')}`;
  return fs
    .readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[1] === local && f[3] === '0A';
    });
}

const POLICY = (listen: number, upstream: number, sharing: string): string => `version: 1
devices:
  - name: ut
    listen: 127.0.0.1:${listen}
    upstream: 127.0.0.1:${upstream}
${sharing}    rules:
      # What the suite asks: every table, plus the serial-line functions it tries.
      - name: all
        read: { coils: [0-65535], discrete_inputs: [0-65535], holding_registers: [0-65535], input_registers: [0-65535] }
        write: { coils: [0-65535], holding_registers: [0-65535] }
        functions: [report_server_id, read_exception_status, diagnostics, get_comm_event_counter, get_comm_event_log]
`;

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

interface SuiteRun {
  out: string;
  tail: string;
  exit: unknown;
  /** Each failed check: its name and the client's assertion line ("N/M what: Line L: assertion error ..."). */
  failed: string[];
  plcguardRan: boolean;
}

/** One run of the suite: its server, plcguard in front of it, its client; all stopped after. */
async function runSuite(t: TapTest, sharing: string): Promise<SuiteRun> {
  const serverPort = await freePort();
  const listenPort = await freePort();
  const server = new Proc('unit-test-server', path.join(dir, 'unit-test-server'), ['tcp'], { cwd: dir, env: { ...process.env, [PORT_ENV]: String(serverPort) } });
  t.teardown(() => server.stop('SIGKILL'));
  await until(() => listening(serverPort), `unit-test-server listening on 127.0.0.1:${serverPort}`, START_TIMEOUT_MS, 20);
  const policyFile = path.join(dir, `policy-${listenPort}.yaml`);
  fs.writeFileSync(policyFile, POLICY(listenPort, serverPort, sharing));
  const proxy = startPlcguard('plcguard', ['run', '--policy', policyFile, '--admin', 'off']);
  t.teardown(() => proxy.stop('SIGKILL'));
  await proxy.waitForEvent('started', START_TIMEOUT_MS);
  const client = new Proc('unit-test-client', path.join(dir, 'unit-test-client'), ['tcp'], { cwd: dir, env: { ...process.env, [PORT_ENV]: String(listenPort) } });
  t.teardown(() => client.stop('SIGKILL'));
  const exit = await within(client.exited, 'unit-test-client to finish', SUITE_TIMEOUT_MS);
  const out = client.stdout();
  // A check prints its name, then "OK" on the same line, or a new line with "Line L: assertion error".
  const lines = out.split('\n');
  const failed = lines.flatMap((l, i) => (l.includes('assertion error') ? [`${lines[i - 1]!.trim()} ${l.trim()}`] : []));
  const run = { out, tail: client.tail(30), exit, failed, plcguardRan: proxy.child.exitCode === null };
  await Promise.all([proxy.stop('SIGKILL'), server.stop('SIGKILL')]);
  return run;
}

/**
 * libmodbus's timeout checks time the gaps between bytes (3 ms and 7 ms against a server writing
 * one byte every 5 ms) and a response against 0.2/0.6 s: on a machine busy with other work,
 * scheduling alone can stretch a gap past 7 ms through any relay. A run in which only such
 * checks failed is run again, at most TIMING_ATTEMPTS times in all, each failure shown; any other
 * failed check fails at once.
 */
const TIMING_ATTEMPTS = 3;
const TIMING_CHECK = /timeout \([\d.]+m?s [<>] [\d.]+m?s\)/;

for (const [name, sharing] of [
  ['default limits: a PLC connection per client', ''],
  ['one shared PLC connection (upstream_connections: 1)', '    upstream_connections: 1\n'],
] as const) {
  await t.test(`libmodbus's unit-test suite through plcguard, ${name}`, async (t) => {
    let run = await runSuite(t, sharing);
    for (let attempt = 1; attempt < TIMING_ATTEMPTS && run.failed.length > 0 && run.failed.every((l) => TIMING_CHECK.test(l)); attempt++) {
      t.comment(`attempt ${attempt}: only timing checks failed (${run.failed.join('; ')}); the suite again`);
      run = await runSuite(t, sharing);
    }
    t.same(run.failed, [], 'no check failed');
    t.ok(run.out.includes(SUCCESS), `the client printed "${SUCCESS}"${run.out.includes(SUCCESS) ? '' : `; its output ended:\n${run.tail}`}`);
    t.same(run.exit, { code: 0, signal: null }, 'the client exited 0');
    const checks = run.out.split('\n').filter((l) => l.endsWith('OK')).length;
    t.equal(checks, EXPECTED_CHECKS, `every check ran: ${checks} OK`);
    t.equal(run.plcguardRan, true, 'plcguard still ran');
  });
}
