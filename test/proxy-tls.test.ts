// Modbus/TCP Security end to end: real certificates (made by the openssl CLI in a temp folder),
// plcguard terminating mbaps in front of a PLC stand-in that records every byte, and three TLS
// client stacks: Node's, openssl s_client and GnuTLS's gnutls-cli.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { TestCa, opensslDate, type CertFiles } from '../demo/pki.js';
import { RawClient, hexOf, req } from './fixtures/raw-client.js';
import { startRawPlc, type RawPlc } from './fixtures/raw-plc.js';
import { startProxy, type TestProxy } from './fixtures/proxy.js';
import { REFUSALS, type RefusalReason } from '../proxy/stats.js';
import { handshakeRefusal, subjectCn } from '../proxy/tls.js';
import { parsePolicy } from '../policy/index.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-tls-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const ca = TestCa.create(dir);
const otherCa = TestCa.create(dir, 'other-ca');
// The listener's: server.crt and server.key, named by the policy.
ca.issue('server', { cn: 'plc-gateway', server: true });
const operator = ca.issue('operator', { cn: 'hmi-1', role: 'Operator' });
const viewer = ca.issue('viewer', { cn: 'historian', role: 'Viewer' });
const noRole = ca.issue('no-role', { cn: 'laptop' });
const foreign = otherCa.issue('foreign', { cn: 'intruder', role: 'Operator' });
// The other CA's client without a role (after rotation, when the other CA is the trusted one).
const visitor = otherCa.issue('visitor', { cn: 'visitor' });
const expired = ca.issue('expired', { cn: 'old-hmi', role: 'Operator', notBefore: opensslDate(-60), notAfter: opensslDate(-1) });
const revoked = ca.issue('revoked', { cn: 'stolen-hmi', role: 'Operator' });
// upstream_tls: plcguard's own certificate toward a PLC speaking mbaps, and that PLC's.
ca.issue('gateway', { cn: 'plcguard', role: 'Operator' });
const plcCert = ca.issue('mbaps-plc', { cn: 'plc-802', server: true });
ca.revoke(revoked.cert);
ca.writeCrl(path.join(dir, 'ca.crl'));
// Chains: an issuing CA under the root signs a server and a client certificate; each file to
// send holds the leaf, then the issuing CA.
const issuing = ca.intermediate('issuing-ca');
const chain = (c: CertFiles): CertFiles => {
  const file = c.cert.replace(/\.crt$/, '-chain.crt');
  fs.writeFileSync(file, fs.readFileSync(c.cert, 'utf8') + fs.readFileSync(issuing.cert, 'utf8'));
  return { cert: file, key: c.key };
};
const chainedServer = chain(issuing.issue('chained-server', { cn: 'plc-gateway-2', server: true }));
const chainedOperator = chain(issuing.issue('chained-operator', { cn: 'hmi-2', role: 'Operator' }));
// ca.crt is replaced by the rotation test: the original, for tests after it.
fs.copyFileSync(ca.cert, path.join(dir, 'ca.crt.orig'));
fs.copyFileSync(path.join(dir, 'server.key'), path.join(dir, 'server.key.orig'));

const key = (c: CertFiles) => ({ cert: fs.readFileSync(c.cert), key: fs.readFileSync(c.key) });
const trust = { ca: fs.readFileSync(ca.cert) };

// Relative paths: they resolve against the policy file's folder (the certificates' here).
const policy = (plcPort: number, extra = '') => `version: 1
devices:
  - name: plc
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:${plcPort}
    tls: { cert: server.crt, key: server.key, ca: ca.crt, crl: ca.crl }
${extra}    rules:
      - name: operators
        roles: [Operator]
        read: { holding_registers: [0-99] }
        write: { holding_registers: [{ addresses: 10-19, values: 0-1000 }] }
      - name: viewers
        roles: [Viewer]
        read: { holding_registers: [0-99] }
`;

// Requests and the PLC stand-in's answers (normalReply: register i holds i), field by field.
const READ_0_2 = req(1, 1, [0x03, 0x00, 0x00, 0x00, 0x02]); // FC3 start 0 qty 2
const READ_0_2_OK = '000100000007010304' + '0000' + '0001'; // 4 bytes: registers 0, 1
const WRITE_10 = req(2, 1, [0x06, 0x00, 0x0a, 0x01, 0xf4]); // FC6 register 10 = 500
const WRITE_10_OK = hexOf(WRITE_10); // FC6 echoes the request
const WRITE_10_TOO_HIGH = req(3, 1, [0x06, 0x00, 0x0a, 0x03, 0xe9]); // 1001: over the bound
const exception = (tid: number, fc: number, code: number) => hexOf(Buffer.from([0, tid, 0, 0, 0, 3, 1, fc | 0x80, code]));

let plc: RawPlc;
let proxy: TestProxy;
t.before(async () => {
  plc = await startRawPlc();
  proxy = await startProxy(policy(plc.port), { dir });
});
t.teardown(async () => {
  await proxy.stop();
  await plc.close();
});

const refused = (reason: RefusalReason): number => proxy.rt.server.stats.get('plc').refused[REFUSALS.indexOf(reason)]!;
const plcBytes = (): number => plc.received.reduce((n, b) => n + b.length, 0);

void t.test('an Operator writes what its rule allows; a Viewer only reads', async (t) => {
  const op = await RawClient.connectTls(proxy.port, { ...trust, ...key(operator) });
  t.equal(op.error, null);
  op.send(READ_0_2);
  t.equal(hexOf((await op.read())[0]!), READ_0_2_OK);
  op.send(WRITE_10);
  t.equal(hexOf((await op.read())[0]!), WRITE_10_OK);
  op.send(WRITE_10_TOO_HIGH);
  t.equal(hexOf((await op.read())[0]!), exception(3, 6, 0x03), 'a value outside the rule: 03');
  op.close();

  const before = plc.requests.length;
  const view = await RawClient.connectTls(proxy.port, { ...trust, ...key(viewer) });
  view.send(READ_0_2);
  t.equal(hexOf((await view.read())[0]!), READ_0_2_OK);
  view.send(WRITE_10);
  t.equal(hexOf((await view.read())[0]!), exception(2, 6, 0x01), 'a Viewer writing: 01, as the Modbus/TCP Security spec says');
  t.equal(plc.requests.length, before + 1, 'only the read reached the PLC');
  view.close();
  t.end();
});

void t.test('audit lines carry the role, subject CN and certificate fingerprint', async (t) => {
  const fingerprint = new X509Certificate(fs.readFileSync(viewer.cert)).fingerprint256;
  const opened = proxy.logged((l) => l.event === 'connection_opened' && l.subject_cn === 'historian');
  const denied = proxy.logged((l) => l.event === 'deny' && l.subject_cn === 'historian');
  const view = await RawClient.connectTls(proxy.port, { ...trust, ...key(viewer) });
  view.send(WRITE_10);
  await view.read();
  await opened;
  await denied;
  const lines = proxy.logs.filter((l) => l.subject_cn === 'historian' && l.conn_id === proxy.logs.find((x) => x.event === 'deny' && x.subject_cn === 'historian')!.conn_id);
  for (const l of lines) t.match(l, { role: 'Viewer', subject_cn: 'historian', cert_sha256: fingerprint }, String(l.event));
  t.ok(lines.some((l) => l.event === 'deny'));
  view.close();
  t.end();
});

void t.test('every other identity is refused before a byte reaches the PLC', async (t) => {
  const bytesBefore = plcBytes();
  // [what, reason, the log's detail, client options, what the client sees with TLS 1.2].
  // TLS 1.2: the handshake fails on the client too, with OpenSSL's alert for no certificate
  // (40 handshake_failure) and, for a certificate failing verification, without the server's
  // Finished. TLS 1.3: the client is done before the server has read its certificate; it sees the
  // alert (116 certificate_required) or the close, and what it sends is never read.
  const cases: [string, RefusalReason, string, tls.ConnectionOptions, string | null][] = [
    ['no certificate', 'tls_no_certificate', 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', trust, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE'],
    ['another CA', 'tls_unknown_ca', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', { ...trust, ...key(foreign) }, 'ECONNRESET'],
    ['expired', 'tls_expired', 'CERT_HAS_EXPIRED', { ...trust, ...key(expired) }, 'ECONNRESET'],
    ['revoked', 'tls_revoked', 'CERT_REVOKED', { ...trust, ...key(revoked) }, 'ECONNRESET'],
    ['no role: no rule matches', 'identity_not_allowed', '', { ...trust, ...key(noRole) }, null],
  ];
  for (const [what, reason, detail, options, tls12] of cases) {
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const n = refused(reason);
      const line = proxy.logged((l) => l.event === 'refused' && l.reason === reason, proxy.logs.length);
      const c = await RawClient.connectTls(proxy.port, { ...options, maxVersion });
      c.send(WRITE_10);
      await c.closed;
      await line;
      t.equal(c.received.length, 0, `${what}, ${maxVersion}: nothing back`);
      t.equal(refused(reason), n + 1, `${what}, ${maxVersion}: counted as ${reason}`);
      if (detail !== '') t.match(proxy.logs.findLast((l) => l.event === 'refused')!, { detail, src_ip: '127.0.0.1' }, `${what}: logged with the address`);
      // Node 24 spells alert 40 the way OpenSSL 3.5 does.
      if (tls12 === null) continue; // policy after a completed handshake: no handshake error to see
      if (maxVersion === 'TLSv1.2') t.equal(c.error?.replace('ERR_SSL_SSL/TLS_ALERT', 'ERR_SSL_SSLV3_ALERT') ?? null, tls12, `${what}, TLS 1.2: the client's handshake fails`);
      else if (reason === 'tls_no_certificate') t.equal(c.error, 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED', 'TLS 1.3: the alert');
    }
  }
  const noRoleLine = proxy.logs.find((l) => l.event === 'refused' && l.reason === 'identity_not_allowed')!;
  t.match(noRoleLine, { role: null, subject_cn: 'laptop', action: 'close' });

  // Plain Modbus/TCP on the mbaps port: the TLS parser gets it, the PLC nothing.
  const n = refused('tls_handshake_failed');
  const plain = await RawClient.connect(proxy.port);
  plain.send(READ_0_2);
  await plain.closed;
  t.equal(plain.received.length, 0, 'plain Modbus/TCP: nothing back that is Modbus');
  t.equal(refused('tls_handshake_failed'), n + 1);
  t.match(proxy.logs.findLast((l) => l.event === 'refused')!, { reason: 'tls_handshake_failed', detail: 'ERR_SSL_WRONG_VERSION_NUMBER' });

  // TLS 1.1 is below what the spec allows.
  const old = await RawClient.connectTls(proxy.port, { ...trust, ...key(operator), minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' });
  await old.closed;
  t.not(old.error, null, `TLS 1.1: ${old.error}`);
  t.equal(plcBytes(), bytesBefore, 'no byte of any refused client reached the PLC');
  t.end();
});

/**
 * Runs a TLS client program that sends what it reads on stdin and writes what it receives to
 * stdout: sends `request` (then closes its stdin with `end`), and returns once `n` bytes came back
 * (the program is then stopped) or once it exited (with its exit code).
 */
async function cliClient(command: string, args: string[], request: Buffer, n: number, end = false): Promise<{ out: Buffer; exit: number | null }> {
  const p = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = Buffer.alloc(0);
  const done = new Promise<number | null>((resolve) => {
    p.stdout.on('data', (chunk: Buffer) => {
      out = Buffer.concat([out, chunk]);
      if (out.length >= n) resolve(null);
    });
    p.on('exit', (code) => resolve(code));
  });
  p.stdin.on('error', () => {});
  p.stdin.write(request);
  if (end) p.stdin.end();
  try {
    return { exit: await done, out };
  } finally {
    p.kill();
  }
}

/** openssl s_client with `cert`: sends `request`, returns the first `n` bytes received. */
async function sClient(port: number, cert: CertFiles, request: Buffer, n: number): Promise<Buffer> {
  const args = ['s_client', '-quiet', '-verify_return_error', '-CAfile', ca.cert, '-cert', cert.cert, '-key', cert.key, '-connect', `127.0.0.1:${port}`, '-servername', 'localhost'];
  const r = await cliClient('openssl', args, request, n);
  if (r.exit !== null) throw new Error(`s_client exited ${r.exit} after ${r.out.length} bytes`);
  return r.out;
}

void t.test('a TLS stack other than Node\'s: openssl s_client', async (t) => {
  t.equal(hexOf(await sClient(proxy.port, operator, WRITE_10, WRITE_10.length)), WRITE_10_OK, 'Operator writes');
  const denied = await sClient(proxy.port, viewer, WRITE_10, 9);
  t.equal(hexOf(denied), exception(2, 6, 0x01), 'Viewer: exception 01');
  t.end();
});

void t.test('a TLS stack that isn\'t OpenSSL: gnutls-cli (Debian\'s gnutls-bin)', async (t) => {
  // Its status lines go to the log file, so stdout holds only what the proxy sent.
  const log = path.join(dir, 'gnutls.log');
  const gnutls = (cert: CertFiles | null): string[] => [
    '--x509cafile', ca.cert, ...(cert === null ? [] : ['--x509certfile', cert.cert, '--x509keyfile', cert.key]),
    '--sni-hostname', 'localhost', '--logfile', log, '-p', String(proxy.port), '127.0.0.1',
  ];
  const op = await cliClient('gnutls-cli', gnutls(operator), WRITE_10, WRITE_10.length);
  t.equal(hexOf(op.out), WRITE_10_OK, 'Operator writes');

  const bytesBefore = plcBytes();
  const n = refused('tls_no_certificate');
  const line = proxy.logged((l) => l.event === 'refused' && l.reason === 'tls_no_certificate', proxy.logs.length);
  const anonymous = await cliClient('gnutls-cli', gnutls(null), WRITE_10, 1);
  await line;
  t.equal(anonymous.exit, 1, 'no certificate: gnutls-cli fails');
  t.equal(anonymous.out.length, 0, 'nothing back');
  t.match(fs.readFileSync(log, 'utf8'), 'Received alert [116]: Certificate is required', 'TLS 1.3 alert 116 in the handshake');
  t.equal(refused('tls_no_certificate'), n + 1);
  t.equal(plcBytes(), bytesBefore, 'nothing reached the PLC');
  t.end();
});

void t.test('rotation: new files for new connections, open ones stay; a broken file keeps the last good set', async (t) => {
  const op = await RawClient.connectTls(proxy.port, { ...trust, ...key(operator) });
  op.send(READ_0_2);
  await op.read();

  // Trust the other CA instead, with its CRL: both made aside, then renamed into place at once
  // (as config management does), so the change settles into one reload.
  const reloaded = proxy.logged((l) => l.event === 'tls_reloaded', proxy.logs.length);
  otherCa.writeCrl(path.join(dir, 'ca.crl.new'));
  fs.copyFileSync(otherCa.cert, path.join(dir, 'ca.crt.new'));
  fs.renameSync(path.join(dir, 'ca.crt.new'), path.join(dir, 'ca.crt'));
  fs.renameSync(path.join(dir, 'ca.crl.new'), path.join(dir, 'ca.crl'));
  await reloaded;
  const n = refused('tls_unknown_ca');
  const oldCa = await RawClient.connectTls(proxy.port, { ...trust, ...key(operator) });
  await oldCa.closed;
  t.equal(refused('tls_unknown_ca'), n + 1, 'a new connection with the old CA\'s certificate is refused');
  const newCa = await RawClient.connectTls(proxy.port, { ...trust, ...key(foreign) });
  newCa.send(READ_0_2);
  t.equal(hexOf((await newCa.read())[0]!), READ_0_2_OK, 'the new CA\'s Operator is served');
  newCa.close();
  op.send(WRITE_10);
  t.equal(hexOf((await op.read())[0]!), WRITE_10_OK, 'the connection opened before rotation stays');

  const rejected = proxy.logged((l) => l.event === 'tls_rejected', proxy.logs.length);
  fs.writeFileSync(path.join(dir, 'server.key'), 'not a key\n');
  await rejected;
  t.match(proxy.logs.findLast((l) => l.event === 'tls_rejected')!, { device: 'plc', kept: 'last good certificates' });
  const still = await RawClient.connectTls(proxy.port, { ...trust, ...key(foreign) });
  still.send(READ_0_2);
  t.equal(hexOf((await still.read())[0]!), READ_0_2_OK, 'served with the last good set');
  still.close();
  op.close();
  const restored = proxy.logged((l) => l.event === 'tls_reloaded', proxy.logs.length);
  fs.copyFileSync(path.join(dir, 'server.key.orig'), path.join(dir, 'server.key'));
  await restored;
  t.end();
});

void t.test('a policy whose certificates cannot be read is rejected whole; the last good one stays', async (t) => {
  await proxy.rewrite(policy(plc.port).replace('cert: server.crt', 'cert: missing.crt'));
  t.match(proxy.logs.findLast((l) => l.event === 'policy_rejected')!, { errors: [/missing\.crt/], kept: 'last good policy' });
  const c = await RawClient.connectTls(proxy.port, { ...trust, ...key(foreign) });
  c.send(READ_0_2);
  t.equal(hexOf((await c.read())[0]!), READ_0_2_OK);
  c.close();
  t.end();
});

void t.test('SIGHUP or a push with the same files reads them again; a handshake under way at shutdown ends', async (t) => {
  const reloaded = proxy.logged((l) => l.event === 'tls_reloaded', proxy.logs.length);
  await proxy.rewrite(policy(plc.port).replace('    rules:', '    description: same files\n    rules:'));
  await reloaded;
  t.pass('read again');
  t.end();
});

void t.test('a tls device that cannot listen fails the apply whole; its certificates are let go', async (t) => {
  const taken = `${policy(plc.port)}  - name: second
    listen: 127.0.0.1:${plc.port}
    upstream: 127.0.0.1:${plc.port}
    tls: { cert: server.crt, key: server.key, ca: ca.crt }
    rules:
      - read: { coils: [0] }
`;
  await proxy.rewrite(taken);
  t.match(proxy.logs.findLast((l) => l.event === 'policy_rejected')!, { errors: [/EADDRINUSE/], kept: 'last good policy' });
  t.end();
});

void t.test('monitor mode: an identity no rule matches is served and its requests counted as would-deny', async (t) => {
  const n = refused('identity_not_allowed');
  // Open across the reload: its next request is judged by the new policy, with its role.
  const open = await RawClient.connectTls(proxy.port, { ...trust, ...key(foreign) });
  open.send(READ_0_2);
  await open.read();
  await proxy.rewrite(policy(plc.port, '    mode: monitor\n'));
  open.send(WRITE_10);
  t.equal(hexOf((await open.read())[0]!), WRITE_10_OK, 'the open Operator connection, after the reload');
  open.close();
  const c = await RawClient.connectTls(proxy.port, { ...trust, ...key(visitor) });
  c.send(READ_0_2);
  t.equal(hexOf((await c.read())[0]!), READ_0_2_OK, 'forwarded');
  c.close();
  t.equal(refused('identity_not_allowed'), n);
  t.match(proxy.logs.findLast((l) => l.event === 'would_deny')!, { subject_cn: 'visitor', role: null, reason: 'source_not_allowed' });
  t.end();
});

void t.test('a handshake under way at shutdown is ended and counted', async (t) => {
  const p = await startProxy(policy(plc.port), { dir });
  const silent = await RawClient.connect(p.port);
  // Accepted in order: once a later client is served, the silent one is in its handshake.
  const op = await RawClient.connectTls(p.port, { ...trust, ...key(foreign) });
  op.send(READ_0_2);
  await op.read();
  const line = p.logged((l) => l.event === 'refused' && l.reason === 'tls_handshake_failed');
  await p.stop();
  await silent.closed;
  await line;
  t.match(p.logs.findLast((l) => l.event === 'refused')!, { reason: 'tls_handshake_failed', detail: 'closed during the handshake' });
  t.end();
});

void t.test('pure helpers', (t) => {
  t.equal(subjectCn(undefined), '');
  t.equal(subjectCn({}), '');
  t.equal(subjectCn({ CN: ['a', 'b'] }), 'a,b');
  t.equal(handshakeRefusal('ECONNRESET', 'CERT_NOT_YET_VALID'), 'tls_expired');
  t.equal(handshakeRefusal('ECONNRESET', 'DEPTH_ZERO_SELF_SIGNED_CERT'), 'tls_unknown_ca');
  t.equal(handshakeRefusal('ECONNRESET', 'CERT_UNTRUSTED'), 'tls_handshake_failed');
  t.equal(handshakeRefusal('ERR_TLS_HANDSHAKE_TIMEOUT', undefined), 'tls_handshake_failed');
  t.end();
});

void t.test('learn mode on an mbaps device sharing its PLC connection: the proposal stays mbaps and shared', async (t) => {
  const p = await startProxy(
    `version: 1
devices:
  - name: plc
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:${plc.port}
    tls: { cert: server.crt, key: server.key, ca: [ca.crt.orig] }
    upstream_connections: 1
    mode: learn
    rules: []
`,
    { dir, admin: true },
  );
  t.teardown(() => p.stop());
  const op = await RawClient.connectTls(p.port, { ...trust, ...key(operator) });
  op.send(READ_0_2);
  t.equal(hexOf((await op.read())[0]!), READ_0_2_OK);
  op.close();
  const proposal = await (await fetch(`http://127.0.0.1:${p.rt.adminPort}/learn/proposal`)).text();
  t.match(proposal, `    upstream: 127.0.0.1:${plc.port}\n    upstream_connections: 1\n    upstream_max_in_flight: 1\n    tls: {"cert":"server.crt","key":"server.key","ca":["ca.crt.orig"]}\n    mode: enforce\n`);
  t.strictSame(parsePolicy(proposal, path.join(dir, 'proposal.yaml')).errors, [], 'policy validate passes');
});

void t.test('upstream_tls: plcguard is an mbaps client with its own certificate toward a PLC that speaks it', async (t) => {
  // A PLC speaking mbaps: it wants plcguard's certificate and echoes every request (FC6 does).
  const peers: string[] = [];
  const mbapsPlc = tls.createServer({ ...key(plcCert), ...trust, requestCert: true, rejectUnauthorized: true }, (s) => {
    peers.push(subjectCn(s.getPeerCertificate().subject));
    s.on('data', (d: Buffer) => s.write(d));
  });
  mbapsPlc.listen(0, '127.0.0.1');
  await once(mbapsPlc, 'listening');
  const plcPort = (mbapsPlc.address() as AddressInfo).port;
  const p = await startProxy(`version: 1
devices:
  - name: plc
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:${plcPort}
    upstream_tls: { ca: [ca.crt.orig], cert: gateway.crt, key: gateway.key }
    rules:
      - write: { holding_registers: [10] }
`, { dir });
  const c = await RawClient.connect(p.port);
  c.send(WRITE_10);
  t.equal(hexOf((await c.read())[0]!), WRITE_10_OK);
  t.strictSame(peers, ['plcguard'], 'the PLC saw plcguard\'s certificate');
  c.close();
  await p.stop();

  // Learning in front of it: the proposal keeps upstream_tls.
  const learning = await startProxy(`version: 1
devices:
  - name: plc
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:${plcPort}
    upstream_tls: { ca: [ca.crt.orig], cert: gateway.crt, key: gateway.key }
    mode: learn
    rules: []
`, { dir, admin: true });
  const l = await RawClient.connect(learning.port);
  l.send(WRITE_10);
  t.equal(hexOf((await l.read())[0]!), WRITE_10_OK);
  l.close();
  const proposal = await (await fetch(`http://127.0.0.1:${learning.rt.adminPort}/learn/proposal`)).text();
  t.match(proposal, `    upstream_tls: {"ca":["ca.crt.orig"],"cert":"gateway.crt","key":"gateway.key"}\n    mode: enforce\n`);
  await learning.stop();
  mbapsPlc.close();
  t.end();
});

void t.test('chains: the server sends leaf and issuing CA; a client sending its chain to the root is served', async (t) => {
  const p = await startProxy(
    `version: 1
devices:
  - name: plc
    listen: 127.0.0.1:0
    upstream: 127.0.0.1:${plc.port}
    tls: { cert: ${path.basename(chainedServer.cert)}, key: ${path.basename(chainedServer.key)}, ca: ca.crt.orig }
    rules:
      - roles: [Operator]
        write: { holding_registers: [10] }
`,
    { dir },
  );
  t.teardown(() => p.stop());
  // Node's client trusts the root only: the server's chain must be whole for it to verify.
  const op = await RawClient.connectTls(p.port, { ca: fs.readFileSync(path.join(dir, 'ca.crt.orig')), ...key(chainedOperator) });
  t.equal(op.error, null);
  op.send(WRITE_10);
  t.equal(hexOf((await op.read())[0]!), WRITE_10_OK, 'the Operator behind the issuing CA writes');
  op.close();
  t.match(p.logs.find((l) => l.event === 'connection_opened')!, { role: 'Operator', subject_cn: 'hmi-2' });
  // The same leaf without its issuing CA: the server can't link it to the root.
  const line = p.logged((l) => l.event === 'refused');
  const leafOnly = await RawClient.connectTls(p.port, { ca: fs.readFileSync(path.join(dir, 'ca.crt.orig')), ...key({ cert: path.join(dir, 'chained-operator.crt'), key: chainedOperator.key }), maxVersion: 'TLSv1.2' });
  await leafOnly.closed;
  await line;
  t.match(p.logs.findLast((l) => l.event === 'refused')!, { reason: 'tls_unknown_ca', detail: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }, 'the leaf alone is refused');

  // What the server sends, as openssl s_client -showcerts prints it: the leaf, then the issuing CA.
  const shown = await cliClient('openssl', ['s_client', '-showcerts', '-verify_return_error', '-CAfile', path.join(dir, 'ca.crt.orig'), '-cert', chainedOperator.cert, '-key', chainedOperator.key, '-connect', `127.0.0.1:${p.port}`, '-servername', 'localhost'], Buffer.alloc(0), Infinity, true);
  const text = shown.out.toString();
  t.equal(text.match(/-----BEGIN CERTIFICATE-----/g)?.length, 2, 'two certificates sent');
  t.match(text, / 0 s:CN ?= ?plc-gateway-2\n\s+i:CN ?= ?plcguard issuing-ca\n/, 'the leaf first');
  t.match(text, / 1 s:CN ?= ?plcguard issuing-ca\n\s+i:CN ?= ?plcguard ca\n/, 'then the issuing CA, signed by the root');
  t.match(text, 'Verify return code: 0 (ok)');
  t.end();
});
