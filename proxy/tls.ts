// Modbus/TCP Security (mbaps) termination: a device with `tls` gets a tls.Server that never
// listens. The device's plain listening socket accepts, counts the connection against the limits,
// and hands it to that server (`emit('connection')`, net.Server's documented way of injecting a
// socket), so a socket taken over by another device on reload, or a device gaining or losing tls,
// needs no second bind. What the Modbus/TCP Security Protocol Specification requires of the
// server: TLS 1.2 or newer, a client certificate chaining to the configured CAs (Node verifies
// the chain, dates and CRLs when `rejectUnauthorized` is set), and the whole server chain sent
// (the cert file holds it, leaf first). Not a byte of the client's reaches the session before the
// handshake has verified it: a plain Modbus/TCP client only ever talks to the TLS parser.
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type net from 'node:net';
import { certificateRole } from '../modbus/index.js';
import type { TlsInput, UpstreamTlsInput } from '../policy/format.js';

/** Who a verified client is: what rules match on (role) and what people read in logs. */
export interface ClientIdentity {
  /** The role extension's value; null: the certificate has none. */
  readonly role: string | null;
  /** The subject's CN (empty when it has none). */
  readonly cn: string;
  /** SHA-256 of the certificate's DER, colon-separated hex as openssl prints it. */
  readonly fingerprint: string;
}

/** A subject's CN for logs: '' without one, several joined with commas. */
export function subjectCn(subject: { CN?: string | string[] } | undefined): string {
  return [subject?.CN ?? ''].flat().join(',');
}

/** Log fields of an identity (audit lines; docs/siem.md). */
export function identityFields(id: ClientIdentity): Record<string, unknown> {
  return { role: id.role, subject_cn: id.cn, cert_sha256: id.fingerprint };
}

/** Why a handshake was refused: metric label values and log fields. */
export const HANDSHAKE_REFUSALS = ['tls_no_certificate', 'tls_unknown_ca', 'tls_expired', 'tls_revoked', 'tls_handshake_failed'] as const;
export type HandshakeRefusal = (typeof HANDSHAKE_REFUSALS)[number];

// OpenSSL's verify results (X509_V_ERR_*), as Node names them in authorizationError. Node lets
// OpenSSL verify the whole chain and reports the last error. A certificate from a CA not trusted
// here is UNABLE_TO_VERIFY_LEAF_SIGNATURE (with CRLs configured too: test/proxy-tls.test.ts); one
// from a trusted CA whose CRL is missing ends on UNABLE_TO_GET_CRL (docs/tls.md: one CRL per CA).
// Both: not a CA vouched for.
const UNKNOWN_CA = new Set([
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
]);
const EXPIRED = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
/** OpenSSL's error when a client sends no certificate (SSL_VERIFY_FAIL_IF_NO_PEER_CERT), TLS 1.2 and 1.3 alike. */
const NO_CERTIFICATE = 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE';

/**
 * Why a handshake failed, from what Node 20 and 24 hand to 'tlsClientError' (found by
 * experiment): a client without a certificate makes OpenSSL abort the handshake (alert 40 in
 * TLS 1.2, 116 certificate_required in 1.3) with `code` NO_CERTIFICATE. A certificate that fails
 * verification doesn't: Node's verify callback lets OpenSSL finish and Node destroys the socket
 * in its own 'secure' handler, so the error is a plain ECONNRESET and the verify result is the
 * socket's `authorizationError`. Anything else (plain Modbus/TCP, an old TLS, a timeout, a client
 * leaving) is a failed handshake.
 */
export function handshakeRefusal(code: string | undefined, authorizationError: string | null | undefined): HandshakeRefusal {
  if (code === NO_CERTIFICATE) return 'tls_no_certificate';
  if (authorizationError === 'CERT_REVOKED') return 'tls_revoked';
  if (authorizationError != null && EXPIRED.has(authorizationError)) return 'tls_expired';
  if (authorizationError != null && UNKNOWN_CA.has(authorizationError)) return 'tls_unknown_ca';
  return 'tls_handshake_failed';
}

/** Handshakes must finish within this: a client opening TCP and sending nothing holds a slot. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Files replaced one after another (cert, then key) settle this long before they are read. */
export const ROTATION_SETTLE_MS = 200;

const list = (x: string | string[] | undefined): string[] => (x === undefined ? [] : Array.isArray(x) ? x : [x]);

/** Every file `tls` names, resolved against `dir` (a policy file's folder, or --tls-dir). */
function files(config: TlsInput | UpstreamTlsInput, dir: string): { cert: string; key: string; ca: string[]; crl: string[] } {
  const at = (p: string): string => path.resolve(dir, p);
  return { cert: at(config.cert), key: at(config.key), ca: list(config.ca).map(at), crl: list('crl' in config ? config.crl : undefined).map(at) };
}

/** Reads the files and checks them by building a context; throws what is wrong with which file. */
function readContext(f: ReturnType<typeof files>): tls.SecureContextOptions {
  const read = (p: string): Buffer => fs.readFileSync(p);
  const options: tls.SecureContextOptions = {
    cert: read(f.cert),
    key: read(f.key),
    ca: f.ca.map(read),
    ...(f.crl.length > 0 ? { crl: f.crl.map(read) } : {}),
    minVersion: 'TLSv1.2',
  };
  // Throws on a PEM that doesn't parse or a key that isn't the certificate's.
  tls.createSecureContext(options);
  return options;
}

/** The client side toward a PLC that speaks mbaps (`upstream_tls`). */
export function upstreamTlsOptions(config: UpstreamTlsInput, dir: string): tls.ConnectionOptions {
  return { ...readContext(files(config, dir)), rejectUnauthorized: true };
}

/**
 * The TCP connection a TLS socket of ours runs over: the one plcguard accepted and handed to
 * `handle`, whose peer address it read then. A TLS socket that Node destroyed (a certificate
 * failing verification) no longer knows its peer; the socket under it does. Node keeps it as
 * `_parent` on a TLSSocket made over a net.Socket (every Node since 0.11; not in the typings).
 */
export function tcpOf(socket: tls.TLSSocket): net.Socket {
  return (socket as unknown as { _parent: net.Socket })._parent;
}

export interface TlsEvents {
  /** A client's certificate verified (the socket is alive: the receiver keeps or destroys it). */
  handshake(socket: tls.TLSSocket, identity: ClientIdentity): void;
  /**
   * A handshake failed: why, and OpenSSL's verify result or the TLS error's code for the log.
   * The TCP socket's 'close' is emitted before this when Node ended a certificate that failed
   * verification, after it otherwise.
   */
  failed(tcp: net.Socket, refusal: HandshakeRefusal, detail: string): void;
  /** Files read again: `error` null when the new set is in force, else why the last good one stays. */
  reloaded(error: string | null): void;
}

/** One device's TLS: the files it was configured with, the server doing handshakes, the watch. */
export class TlsTerminator {
  private readonly server: tls.Server;
  private readonly files: ReturnType<typeof files>;
  private readonly watchers: fs.FSWatcher[] = [];
  private settle: NodeJS.Timeout | undefined;

  /** Throws when the files can't be read or don't fit together: a device can't start without them. */
  constructor(
    readonly config: TlsInput,
    readonly dir: string,
    private readonly events: TlsEvents,
  ) {
    this.files = files(config, dir);
    // requestCert + rejectUnauthorized: OpenSSL refuses a client without a certificate in the
    // handshake itself (SSL_VERIFY_FAIL_IF_NO_PEER_CERT), and Node ends one whose certificate
    // fails verification (chain, dates, CRL) before 'secureConnection': only verified clients
    // get there. Which it was, 'tlsClientError' says (handshakeRefusal).
    this.server = tls.createServer({
      ...readContext(this.files),
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      allowHalfOpen: true,
    });
    this.server.on('secureConnection', (socket: tls.TLSSocket) => {
      const cert = socket.getPeerCertificate();
      events.handshake(socket, { role: certificateRole(cert.raw), cn: subjectCn(cert.subject), fingerprint: cert.fingerprint256 });
    });
    this.server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
      // Node's typings say Error; it holds OpenSSL's verify result's name (null: none).
      const verify = socket.authorizationError as unknown as string | null | undefined;
      // Node's 'socket hang up' for a connection closed mid-handshake by the client or by
      // plcguard: nothing to add to the TCP close, which reports it.
      if (err.code === 'ECONNRESET' && verify == null) return;
      /* c8 ignore next -- Node's handshake errors all carry a code; the message is a fallback */
      const code = err.code ?? err.message;
      events.failed(tcpOf(socket), handshakeRefusal(err.code, verify), verify ?? code);
    });
    this.watch();
  }

  /** Starts the handshake on an accepted connection. */
  handle(socket: net.Socket): void {
    this.server.emit('connection', socket);
  }

  /** Is `config` (resolved against `dir`) what this terminator serves? */
  serves(config: TlsInput, dir: string): boolean {
    return dir === this.dir && JSON.stringify(config) === JSON.stringify(this.config);
  }

  /**
   * Reads the files again: new connections get them, open ones keep theirs. A file that is
   * missing or broken leaves the last good set in force.
   */
  reload(): void {
    try {
      this.server.setSecureContext(readContext(this.files));
      this.events.reloaded(null);
    } catch (err) {
      this.events.reloaded((err as Error).message);
    }
  }

  // Folders, not files: rotation usually replaces a file (a rename over it), and a watch on the
  // old file would never fire again.
  private watch(): void {
    const all = [this.files.cert, this.files.key, ...this.files.ca, ...this.files.crl];
    const byDir = new Map<string, Set<string>>();
    for (const f of all) {
      const names = byDir.get(path.dirname(f)) ?? new Set<string>();
      names.add(path.basename(f));
      byDir.set(path.dirname(f), names);
    }
    for (const [dir, names] of byDir) {
      const w = fs.watch(dir, (_event, name) => {
        if (name !== null && names.has(name)) this.changed();
      });
      /* c8 ignore next -- a watched folder removed: the files are gone too; reload reports them */
      w.on('error', () => this.changed());
      this.watchers.push(w);
    }
  }

  private changed(): void {
    clearTimeout(this.settle);
    this.settle = setTimeout(() => this.reload(), ROTATION_SETTLE_MS);
  }

  /** Stops watching (open connections stay). */
  close(): void {
    for (const w of this.watchers) w.close();
    clearTimeout(this.settle);
  }
}
