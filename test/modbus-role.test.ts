import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { certificateRole } from '../modbus/index.js';
import { TestCa } from '../demo/pki.js';
import { Random } from './fixtures/random.js';

// DER by hand: tag, length (short or long form as DER requires), contents.
function tlv(tag: number, ...parts: Uint8Array[]): Buffer {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff];
  return Buffer.concat([Buffer.from([tag, ...len]), body]);
}
const seq = (...p: Uint8Array[]) => tlv(0x30, ...p);
// 1.3.6.1.4.1.50316.802.1: 2b 06 01 04 01 | 83 89 0c (50316) | 86 22 (802) | 01
const ROLE_OID = tlv(0x06, Buffer.from([0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0x89, 0x0c, 0x86, 0x22, 0x01]));
// 2.5.29.19 basicConstraints, a neighbour to skip.
const OTHER_OID = tlv(0x06, Buffer.from([0x55, 0x1d, 0x13]));
const utf8 = (s: string | Buffer) => tlv(0x0c, typeof s === 'string' ? Buffer.from(s, 'utf8') : s);
const roleExt = (value: Buffer, critical = false) => seq(ROLE_OID, ...(critical ? [tlv(0x01, Buffer.from([0xff]))] : []), tlv(0x04, value));
// tbsCertificate: [0] version 2 (v3), serial, sigAlg, issuer, validity, subject, spki, then `tail`.
const fixed = [tlv(0xa0, tlv(0x02, Buffer.from([2]))), tlv(0x02, Buffer.from([1])), seq(), seq(), seq(), seq(), seq()];
const cert = (...tail: Buffer[]) => seq(seq(...fixed, ...tail), seq(), tlv(0x03, Buffer.from([0])));
const withExts = (...exts: Buffer[]) => cert(tlv(0xa3, seq(...exts)));

void t.test('hand-built certificates', (t) => {
  t.equal(certificateRole(withExts(seq(OTHER_OID, tlv(0x04, seq())), roleExt(utf8('Operator')))), 'Operator');
  t.equal(certificateRole(withExts(roleExt(utf8('Operator'), true))), 'Operator', 'marked critical');
  t.equal(certificateRole(withExts(roleExt(utf8('Ingénieur')))), 'Ingénieur', 'UTF-8 beyond ASCII');
  t.equal(certificateRole(withExts(roleExt(utf8('')))), '', 'an empty role is a role (no rule can name it)');
  t.equal(certificateRole(cert(tlv(0x81, Buffer.from([0])), tlv(0x82, Buffer.from([0])), tlv(0xa3, seq(roleExt(utf8('Viewer')))))), 'Viewer', 'after unique ids');
  // A v1 certificate has no version field and no extensions.
  t.equal(certificateRole(seq(seq(...fixed.slice(1)), seq())), null);
  t.equal(certificateRole(withExts(seq(OTHER_OID, tlv(0x04, seq())))), null, 'extensions without a role');
  t.equal(certificateRole(cert()), null, 'no extensions');
  // A long role: a two-byte long-form length inside.
  const long = 'R'.repeat(300);
  t.equal(certificateRole(withExts(roleExt(utf8(long)))), long);
  t.end();
});

void t.test('malformed roles and certificates are null, never an exception', (t) => {
  const bad: [string, Buffer][] = [
    ['the role twice', withExts(roleExt(utf8('Viewer')), roleExt(utf8('Operator')))],
    ['a PrintableString, not a UTF8String', withExts(roleExt(tlv(0x13, Buffer.from('Operator'))))],
    ['invalid UTF-8', withExts(roleExt(utf8(Buffer.from([0xc3, 0x28]))))],
    ['bytes after the UTF8String', withExts(roleExt(Buffer.concat([utf8('Operator'), Buffer.from([0])])))],
    ['bytes after the OCTET STRING', withExts(Buffer.concat([seq(ROLE_OID, tlv(0x04, utf8('Operator')), Buffer.from([5, 0]))]))],
    ['extnValue not an OCTET STRING', withExts(seq(ROLE_OID, utf8('Operator')))],
    ['extnValue missing', withExts(seq(ROLE_OID))],
    ['an extension that is not a SEQUENCE', withExts(tlv(0x31, ROLE_OID))],
    ['an extension without an OID', withExts(seq(tlv(0x02, Buffer.from([1]))))],
    ['extensions not a SEQUENCE', cert(tlv(0xa3, tlv(0x31)))],
    ['an unknown field after subjectPKInfo', cert(tlv(0xa4, seq()))],
    ['tbsCertificate cut short', seq(seq(...fixed.slice(0, 4)))],
    ['tbsCertificate not a SEQUENCE', seq(tlv(0x31))],
    ['not a SEQUENCE', tlv(0x31)],
    ['empty', Buffer.alloc(0)],
    ['one byte', Buffer.from([0x30])],
    ['indefinite length (BER, not DER)', Buffer.from([0x30, 0x80, 0, 0])],
    ['a length of 5 octets', Buffer.from([0x30, 0x85, 0, 0, 0, 0, 1, 0])],
    ['a long length past the end', Buffer.from([0x30, 0x82, 0x01])],
    ['a length past the end', Buffer.from([0x30, 0x05, 0])],
    ['a high tag number', Buffer.from([0x30, 0x03, 0x1f, 0x01, 0x00])],
  ];
  for (const [what, der] of bad) t.equal(certificateRole(der), null, what);
  t.end();
});

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plcguard-role-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const ca = TestCa.create(dir);
const raw = (file: string) => new X509Certificate(fs.readFileSync(file)).raw;

void t.test('certificates made by openssl with the documented extension', (t) => {
  t.equal(certificateRole(raw(ca.issue('op', { cn: 'op', role: 'Operator' }).cert)), 'Operator');
  t.equal(certificateRole(raw(ca.issue('viewer', { cn: 'viewer', role: 'Viewer' }).cert)), 'Viewer');
  t.equal(certificateRole(raw(ca.issue('none', { cn: 'none' }).cert)), null, 'no role extension');
  t.equal(certificateRole(raw(ca.cert)), null, 'the CA: extensions, none a role');
  t.end();
});

void t.test('fuzz: truncations and random byte changes never throw', (t) => {
  const der = raw(ca.issue('fuzz', { cn: 'fuzz', role: 'Operator' }).cert);
  // Every prefix is cut inside some TLV: none is a certificate.
  let roles = 0;
  for (let n = 0; n < der.length; n++) if (certificateRole(der.subarray(0, n)) !== null) roles++;
  t.equal(roles, 0, 'no truncation yields a role');
  const rnd = new Random(802);
  let thrown = 0;
  for (let i = 0; i < 5000; i++) {
    const b = Buffer.from(der);
    for (let k = rnd.range(1, 4); k > 0; k--) b[rnd.int(b.length)] = rnd.int(256);
    try {
      certificateRole(b);
    } catch {
      thrown++;
    }
  }
  t.equal(thrown, 0);
  t.end();
});
