// The client role of Modbus/TCP Security (Modbus/TCP Security Protocol Specification,
// MB-TCP-Security-v21): an X.509v3 extension, OID 1.3.6.1.4.1.50316.802.1, whose value is a DER
// UTF8String. Node's X509Certificate and getPeerCertificate() don't expose arbitrary extensions,
// so this walks the certificate's DER (RFC 5280 §4.1; X.690 §8.1 for the encoding) as far as the
// extensions, and no further. No I/O; never throws on any input: a certificate the TLS stack has
// verified is well formed, but this code must not be the place that trusts that.
//
//   Certificate       SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
//   tbsCertificate    SEQUENCE {
//     version         [0] EXPLICIT INTEGER            (optional; absent in v1)
//     serialNumber    INTEGER
//     signature       SEQUENCE
//     issuer          SEQUENCE
//     validity        SEQUENCE
//     subject         SEQUENCE
//     subjectPKInfo   SEQUENCE
//     issuerUID       [1] IMPLICIT BIT STRING         (optional)
//     subjectUID      [2] IMPLICIT BIT STRING         (optional)
//     extensions      [3] EXPLICIT SEQUENCE OF Extension (optional) }
//   Extension         SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
//   role              UTF8String, the DER inside extnValue

/** The role OID's DER content bytes: 1.3 → 43, 50316 → 0x83 0x89 0x0C, 802 → 0x86 0x22. */
const ROLE_OID_DER = Buffer.from([0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0x89, 0x0c, 0x86, 0x22, 0x01]);

const TAG_BOOLEAN = 0x01;
const TAG_OCTET_STRING = 0x04;
const TAG_OID = 0x06;
const TAG_UTF8_STRING = 0x0c;
const TAG_SEQUENCE = 0x30;
/** Context-specific, constructed: [0] version, [3] extensions. */
const TAG_VERSION = 0xa0;
const TAG_EXTENSIONS = 0xa3;
/** Context-specific, primitive: [1] issuerUniqueID, [2] subjectUniqueID. */
const TAG_ISSUER_UID = 0x81;
const TAG_SUBJECT_UID = 0x82;
/** Elements of tbsCertificate before the optional UIDs and extensions (version excluded). */
const TBS_FIXED_FIELDS = 6;
/** Length octets of a long-form length we read: 4 covers any certificate (X.690 §8.1.3.5). */
const MAX_LENGTH_OCTETS = 4;

/** One TLV: its tag, and where its contents start and end in the buffer. */
interface Tlv {
  tag: number;
  start: number;
  end: number;
}

/** The TLV at `at`, ending no later than `limit`; null when it doesn't fit or isn't DER-shaped. */
function readTlv(der: Uint8Array, at: number, limit: number): Tlv | null {
  if (at + 2 > limit) return null;
  const tag = der[at]!;
  // High tag numbers (low five bits all set) never occur in the fields walked here.
  if ((tag & 0x1f) === 0x1f) return null;
  let len = der[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    // 0x80 is BER's indefinite length, which DER forbids.
    if (n === 0 || n > MAX_LENGTH_OCTETS || start + n > limit) return null;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + der[start + i]!;
    start += n;
  }
  const end = start + len;
  return end > limit ? null : { tag, start, end };
}

function equalBytes(der: Uint8Array, t: Tlv, want: Uint8Array): boolean {
  if (t.end - t.start !== want.length) return false;
  for (let i = 0; i < want.length; i++) if (der[t.start + i] !== want[i]) return false;
  return true;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The role a certificate (DER, as X509Certificate#raw or getPeerCertificate().raw give it)
 * carries, or null: no role extension, a value that isn't a UTF8String of valid UTF-8, or bytes
 * that aren't a certificate. A certificate with the extension twice is malformed (RFC 5280
 * §4.2): null too, so no policy can be steered by which copy a reader takes.
 */
export function certificateRole(der: Uint8Array): string | null {
  const cert = readTlv(der, 0, der.length);
  if (cert === null || cert.tag !== TAG_SEQUENCE) return null;
  const tbs = readTlv(der, cert.start, cert.end);
  if (tbs === null || tbs.tag !== TAG_SEQUENCE) return null;
  let at = tbs.start;
  let t = readTlv(der, at, tbs.end);
  if (t !== null && t.tag === TAG_VERSION) at = t.end;
  for (let i = 0; i < TBS_FIXED_FIELDS; i++) {
    t = readTlv(der, at, tbs.end);
    if (t === null) return null;
    at = t.end;
  }
  while (at < tbs.end) {
    t = readTlv(der, at, tbs.end);
    if (t === null) return null;
    if (t.tag === TAG_EXTENSIONS) return roleIn(der, t);
    if (t.tag !== TAG_ISSUER_UID && t.tag !== TAG_SUBJECT_UID) return null;
    at = t.end;
  }
  return null;
}

/** The role in the [3] extensions wrapper `wrap`. */
function roleIn(der: Uint8Array, wrap: Tlv): string | null {
  const list = readTlv(der, wrap.start, wrap.end);
  if (list === null || list.tag !== TAG_SEQUENCE) return null;
  let role: string | null = null;
  let found = false;
  for (let at = list.start; at < list.end; ) {
    const ext = readTlv(der, at, list.end);
    if (ext === null || ext.tag !== TAG_SEQUENCE) return null;
    at = ext.end;
    const id = readTlv(der, ext.start, ext.end);
    if (id === null || id.tag !== TAG_OID) return null;
    if (!equalBytes(der, id, ROLE_OID_DER)) continue;
    if (found) return null;
    found = true;
    let v = readTlv(der, id.end, ext.end);
    if (v !== null && v.tag === TAG_BOOLEAN) v = readTlv(der, v.end, ext.end);
    if (v === null || v.tag !== TAG_OCTET_STRING || v.end !== ext.end) return null;
    const s = readTlv(der, v.start, v.end);
    if (s === null || s.tag !== TAG_UTF8_STRING || s.end !== v.end) return null;
    try {
      role = utf8.decode(der.subarray(s.start, s.end));
    } catch {
      return null;
    }
  }
  return role;
}
