// A throwaway certificate authority for `plcguard demo --tls` and the tests: every certificate
// Modbus/TCP Security ("mbaps") needs, made with the `openssl` command line
// (the same commands docs/tls.md gives an operator), in a folder of its own. Nothing here is fit
// for a plant: keys are unencrypted and the CA's key sits beside its certificate.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** The X.509v3 extension carrying a client's role (Modbus/TCP Security Protocol Specification, MB-TCP-Security-v21). */
export const ROLE_OID = '1.3.6.1.4.1.50316.802.1';

/** A certificate and its key, as PEM files. */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

export interface IssueOptions {
  /** Subject CN. */
  readonly cn: string;
  /** The role extension's UTF8String; omitted: no role extension. */
  readonly role?: string;
  /** A server certificate (serverAuth, SAN 127.0.0.1 and localhost) instead of a client one. */
  readonly server?: boolean;
  /** openssl's YYYYMMDDHHMMSSZ; omitted: now and in 30 days. */
  readonly notBefore?: string;
  readonly notAfter?: string;
}

/** An openssl date (YYYYMMDDHHMMSSZ) `days` from now (negative: in the past). */
export function opensslDate(days: number, now = Date.now()): string {
  return new Date(now + days * 86_400_000).toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
}

const DEFAULT_DAYS = 30;
/** What makes a certificate a CA's (RFC 5280 4.2.1.9 and 4.2.1.3). */
const CA_EXTENSIONS = ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'];

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A CA in `dir`: ca.crt, ca.key and `openssl ca`'s books (index, serial, CRL number), so it can
 * issue, revoke and publish a CRL. EC P-256 keys: quick to make.
 */
export class TestCa {
  readonly cert: string;
  private readonly key: string;
  private readonly config: string;

  private constructor(
    readonly dir: string,
    readonly name: string,
  ) {
    this.cert = path.join(dir, `${name}.crt`);
    this.key = path.join(dir, `${name}.key`);
    this.config = path.join(dir, `${name}.cnf`);
  }

  /** A root CA: self-signed. */
  static create(dir: string, name = 'ca'): TestCa {
    const ca = TestCa.books(dir, name);
    openssl(
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', ca.key, '-out', ca.cert,
        '-subj', `/CN=plcguard ${name}`, '-days', String(DEFAULT_DAYS), ...CA_EXTENSIONS.flatMap((e) => ['-addext', e])],
      dir,
    );
    return ca;
  }

  /**
   * An intermediate CA issued by this one (as plants run them: the root offline, an issuing CA
   * signing certificates). Its certificate file holds itself only; a chain is the leaf's file
   * followed by this one's.
   */
  intermediate(name: string): TestCa {
    const sub = TestCa.books(this.dir, name);
    const csr = path.join(this.dir, `${name}.csr`);
    const ext = path.join(this.dir, `${name}.ext`);
    fs.writeFileSync(ext, ['[ ext ]', ...CA_EXTENSIONS.map((e) => e.replace('=', ' = '))].join('\n') + '\n');
    openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', sub.key, '-out', csr, '-subj', `/CN=plcguard ${name}`], this.dir);
    openssl(['ca', '-batch', '-notext', '-config', this.config, '-in', csr, '-out', sub.cert, '-extfile', ext, '-extensions', 'ext', '-days', String(DEFAULT_DAYS)], this.dir);
    return sub;
  }

  /** The files of a CA named `name` in `dir` and `openssl ca`'s books for it, before its certificate. */
  private static books(dir: string, name: string): TestCa {
    const ca = new TestCa(dir, name);
    const books = path.join(dir, `${name}-books`);
    fs.mkdirSync(path.join(books, 'issued'), { recursive: true });
    fs.writeFileSync(path.join(books, 'index.txt'), '');
    fs.writeFileSync(path.join(books, 'serial'), '1000\n');
    fs.writeFileSync(path.join(books, 'crlnumber'), '1000\n');
    fs.writeFileSync(
      ca.config,
      [
        '[ ca ]',
        'default_ca = this_ca',
        '[ this_ca ]',
        `database = ${path.join(books, 'index.txt')}`,
        `new_certs_dir = ${path.join(books, 'issued')}`,
        `serial = ${path.join(books, 'serial')}`,
        `crlnumber = ${path.join(books, 'crlnumber')}`,
        `certificate = ${ca.cert}`,
        `private_key = ${ca.key}`,
        'default_md = sha256',
        'default_crl_days = 30',
        'policy = any_subject',
        'unique_subject = no',
        'copy_extensions = none',
        '[ any_subject ]',
        'commonName = supplied',
        '',
      ].join('\n'),
    );
    return ca;
  }

  /** Issues `file`.crt and `file`.key in the CA's folder. */
  issue(file: string, o: IssueOptions): CertFiles {
    const out = { cert: path.join(this.dir, `${file}.crt`), key: path.join(this.dir, `${file}.key`) };
    const csr = path.join(this.dir, `${file}.csr`);
    const ext = path.join(this.dir, `${file}.ext`);
    const lines = ['[ ext ]', 'basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature'];
    if (o.server) lines.push('extendedKeyUsage = serverAuth', 'subjectAltName = IP:127.0.0.1, DNS:localhost');
    else lines.push('extendedKeyUsage = clientAuth');
    if (o.role !== undefined) lines.push(`${ROLE_OID} = ASN1:UTF8String:${o.role}`);
    fs.writeFileSync(ext, lines.join('\n') + '\n');
    openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', out.key, '-out', csr, '-subj', `/CN=${o.cn}`], this.dir);
    openssl(
      ['ca', '-batch', '-notext', '-config', this.config, '-in', csr, '-out', out.cert, '-extfile', ext, '-extensions', 'ext',
        '-startdate', o.notBefore ?? opensslDate(-1), '-enddate', o.notAfter ?? opensslDate(DEFAULT_DAYS)],
      this.dir,
    );
    return out;
  }

  revoke(cert: string): void {
    openssl(['ca', '-config', this.config, '-revoke', cert], this.dir);
  }

  /** Writes the CA's CRL (every certificate revoked so far) to `file`. */
  writeCrl(file: string): string {
    openssl(['ca', '-config', this.config, '-gencrl', '-out', file], this.dir);
    return file;
  }
}
