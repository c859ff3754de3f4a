import 'reflect-metadata';
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  sign,
  webcrypto,
  X509Certificate as NodeX509,
  type KeyObject,
} from 'node:crypto';
import { isIP } from 'node:net';
import * as x509 from '@peculiar/x509';
import * as der from './der.ts';

x509.cryptoProvider.set(webcrypto as never);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A certificate and its private key, both PEM. */
export interface KeyPair {
  certPem: string;
  keyPem: string;
}

/** What a certificate is for: serving TLS, authenticating as a client, or both. */
export type CertUsage = 'server' | 'client' | 'both';

export interface IssueOptions {
  commonName: string;
  /** Subject organisations (Kubernetes reads them as groups). */
  organizations?: string[];
  /** DNS names and IP addresses; each goes into the subjectAltName as the right kind. */
  hosts?: string[];
  usage: CertUsage;
  validityDays?: number;
}

function pemKey(der: ArrayBuffer): string {
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

function serial(): string {
  // Positive 128-bit serial; the leading nibble stays below 8 so DER never reads it as negative.
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

function validity(days: number): { notBefore: Date; notAfter: Date } {
  // Backdated by an hour so small clock skew between hosts never makes a fresh cert "not yet valid".
  const notBefore = new Date(Date.now() - 3600_000);
  return { notBefore, notAfter: new Date(notBefore.getTime() + days * 86400_000) };
}

function subject(cn: string, orgs: string[] = []): string {
  const esc = (s: string) => s.replace(/([,+"\\<>;=])/g, '\\$1');
  return [`CN=${esc(cn)}`, ...orgs.map((o) => `O=${esc(o)}`)].join(', ');
}

/** Creates a self-signed ECDSA P-256 certificate authority. */
export async function createCA(commonName: string, validityDays = 3650): Promise<KeyPair> {
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: subject(commonName),
    ...validity(validityDays),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    certPem: cert.toString('pem'),
    keyPem: pemKey(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)),
  };
}

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  sha256WithRsa: '1.2.840.113549.1.1.11',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  subjectAltName: '2.5.29.17',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

const extension = (id: string, critical: boolean, value: Buffer): Buffer =>
  der.sequence(der.oid(id), ...(critical ? [der.boolean(true)] : []), der.octetString(value));

/**
 * Issues leaf certificates from one CA. The CA is read once (its subject, key identifier and
 * private key); each certificate is then a fresh P-256 key, a DER TBSCertificate built by hand and
 * one signature: well under a millisecond, where a schema-driven ASN.1 library takes several.
 */
export class CertificateIssuer {
  private static readonly cache = new Map<string, CertificateIssuer>();

  private constructor(
    private readonly issuerName: Buffer,
    private readonly authorityKeyId: Buffer,
    private readonly key: KeyObject,
    private readonly signatureAlgorithm: Buffer,
  ) {}

  /** The issuer for `ca` (kept, so a CA is parsed once per process). */
  static for(ca: KeyPair): CertificateIssuer {
    const cacheKey = ca.certPem + ca.keyPem;
    let issuer = CertificateIssuer.cache.get(cacheKey);
    if (!issuer) {
      issuer = CertificateIssuer.parse(ca);
      CertificateIssuer.cache.set(cacheKey, issuer);
    }
    return issuer;
  }

  private static parse(ca: KeyPair): CertificateIssuer {
    const cert = new NodeX509(ca.certPem);
    const buf = cert.raw;
    const tbs = der.children(buf, der.readElement(buf, 0))[0]!;
    const fields = der.children(buf, tbs);
    // version [0] is optional; after it: serial, signature, issuer, validity, subject, spki.
    const base = fields[0]!.tag === 0xa0 ? 1 : 0;
    const subject = fields[base + 4]!;
    const spki = fields[base + 5]!;
    let keyId: Buffer | undefined;
    const exts = fields.find((f) => f.tag === 0xa3);
    if (exts) {
      for (const ext of der.children(buf, der.children(buf, exts)[0]!)) {
        const parts = der.children(buf, ext);
        if (!buf.subarray(parts[0]!.start, parts[0]!.end).equals(der.oid(OID.subjectKeyIdentifier))) continue;
        const value = parts[parts.length - 1]!;
        const inner = der.readElement(buf, value.contentStart);
        keyId = buf.subarray(inner.contentStart, inner.end);
      }
    }
    if (!keyId) {
      // RFC 5280 method 1: SHA-1 of the subjectPublicKey bits (what the CA's own SKI would hold).
      const bits = der.children(buf, spki)[1]!;
      keyId = createHash('sha1')
        .update(buf.subarray(bits.contentStart + 1, bits.end))
        .digest();
    }
    const key = createPrivateKey(ca.keyPem);
    const sigAlg =
      key.asymmetricKeyType === 'rsa'
        ? der.sequence(der.oid(OID.sha256WithRsa), Buffer.from([0x05, 0x00]))
        : der.sequence(der.oid(OID.ecdsaWithSha256));
    return new CertificateIssuer(Buffer.from(buf.subarray(subject.start, subject.end)), keyId, key, sigAlg);
  }

  /** A new key and a certificate for it, signed by this CA. */
  issue(opts: IssueOptions): KeyPair {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const { notBefore, notAfter } = validity(opts.validityDays ?? 365);
    const rdn = (id: string, value: string) => der.set(der.sequence(der.oid(id), der.utf8String(value)));
    const subject = der.sequence(
      rdn(OID.commonName, opts.commonName),
      ...(opts.organizations ?? []).map((o) => rdn(OID.organization, o)),
    );
    const ekus: Buffer[] = [];
    if (opts.usage !== 'client') ekus.push(der.oid(OID.serverAuth));
    if (opts.usage !== 'server') ekus.push(der.oid(OID.clientAuth));
    const extensions = [
      extension(OID.basicConstraints, true, der.sequence()),
      // digitalSignature (bit 0) and keyEncipherment (bit 2): 0b101 followed by 5 unused bits.
      extension(OID.keyUsage, true, der.bitString(Buffer.from([0xa0]), 5)),
      extension(OID.extKeyUsage, false, der.sequence(...ekus)),
      extension(
        OID.authorityKeyIdentifier,
        false,
        der.sequence(der.implicitPrimitive(0, this.authorityKeyId)),
      ),
    ];
    const hosts = opts.hosts ?? [];
    if (hosts.length > 0) {
      const names = hosts.map((h) =>
        isIP(h) ? der.implicitPrimitive(7, ipBytes(h)) : der.implicitPrimitive(2, Buffer.from(h, 'latin1')),
      );
      extensions.push(extension(OID.subjectAltName, false, der.sequence(...names)));
    }
    const tbs = der.sequence(
      der.explicit(0, der.smallInteger(2)),
      der.unsignedInteger(Buffer.from(serial(), 'hex')),
      this.signatureAlgorithm,
      this.issuerName,
      der.sequence(der.time(notBefore), der.time(notAfter)),
      subject,
      publicKey.export({ type: 'spki', format: 'der' }),
      der.explicit(3, der.sequence(...extensions)),
    );
    const signature = sign('sha256', tbs, this.key);
    const cert = der.sequence(tbs, this.signatureAlgorithm, der.bitString(signature));
    return {
      certPem: pem(cert, 'CERTIFICATE'),
      keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    };
  }
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand "::" and write the eight 16-bit groups.
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return out;
}

function pem(derBytes: Buffer, label: string): string {
  const b64 = derBytes.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64.replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

/** Issues a leaf certificate signed by `ca` for a server, a client, or both. */
export function issueCertificate(ca: KeyPair, opts: IssueOptions): Promise<KeyPair> {
  try {
    return Promise.resolve(CertificateIssuer.for(ca).issue(opts));
  } catch (err) {
    return Promise.reject(err as Error);
  }
}

/** When `certPem` expires. */
export function certificateExpiry(certPem: string): Date {
  return new Date(new NodeX509(certPem).validTo);
}

/** The subject common name and organisations of a PEM certificate. */
export function certificateSubject(certPem: string): { commonName: string; organizations: string[] } {
  const cert = new x509.X509Certificate(certPem);
  return {
    commonName: cert.subjectName.getField('CN')[0] ?? '',
    organizations: cert.subjectName.getField('O'),
  };
}
