// Certificates for mutual TLS (ECDSA P-256): a CA and the leaf certificates it issues, built as
// DER (lib/der.ts) and signed with node:crypto. A schema-driven ASN.1 library spent milliseconds
// per certificate and its schemas at every start; concatenating bytes costs microseconds.
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import { isIP } from 'node:net';
import * as der from './der.ts';

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

const ECDSA_SHA256 = der.sequence(der.oid(OID.ecdsaWithSha256));

const extension = (id: string, critical: boolean, value: Buffer): Buffer =>
  der.sequence(der.oid(id), ...(critical ? [der.boolean(true)] : []), der.octetString(value));

/** A distinguished name: the common name, then each organisation, one attribute per RDN. */
function name(commonName: string, organizations: string[] = []): Buffer {
  const rdn = (id: string, value: string) => der.set(der.sequence(der.oid(id), der.utf8String(value)));
  return der.sequence(rdn(OID.commonName, commonName), ...organizations.map((o) => rdn(OID.organization, o)));
}

/** RFC 5280 method 1 key identifier: SHA-1 of the subjectPublicKey bits of a DER SPKI. */
function keyIdentifier(spki: Buffer): Buffer {
  const bits = der.children(spki, der.readElement(spki, 0))[1]!;
  return createHash('sha1')
    .update(spki.subarray(bits.contentStart + 1, bits.end))
    .digest();
}

/** Backdated by an hour so small clock skew between hosts never makes a fresh cert "not yet valid". */
function validity(days: number): Buffer {
  const notBefore = new Date(Date.now() - 3600_000);
  return der.sequence(der.time(notBefore), der.time(new Date(notBefore.getTime() + days * 86400_000)));
}

/** A v3 certificate over the given parts, signed by `key`, PEM. */
function certificate(
  parts: { issuer: Buffer; subject: Buffer; spki: Buffer; validityDays: number; extensions: Buffer[] },
  key: KeyObject,
  signatureAlgorithm: Buffer,
): string {
  // Positive 128-bit serial: the top bit cleared so DER never reads it as negative.
  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f;
  const tbs = der.sequence(
    der.explicit(0, der.smallInteger(2)),
    der.unsignedInteger(serial),
    signatureAlgorithm,
    parts.issuer,
    validity(parts.validityDays),
    parts.subject,
    parts.spki,
    der.explicit(3, der.sequence(...parts.extensions)),
  );
  const cert = der.sequence(tbs, signatureAlgorithm, der.bitString(sign('sha256', tbs, key)));
  const b64 = cert.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/\n$/, '')}\n-----END CERTIFICATE-----\n`;
}

function newKey(): { spki: Buffer; privateKey: KeyObject; keyPem: string } {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    spki: publicKey.export({ type: 'spki', format: 'der' }),
    privateKey,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}

/** Creates a self-signed ECDSA P-256 certificate authority. */
export function createCA(commonName: string, validityDays = 3650): Promise<KeyPair> {
  const { spki, privateKey, keyPem } = newKey();
  const subject = name(commonName);
  const certPem = certificate(
    {
      issuer: subject,
      subject,
      spki,
      validityDays,
      extensions: [
        extension(OID.basicConstraints, true, der.sequence(der.boolean(true), der.smallInteger(0))),
        // keyCertSign (bit 5) and cRLSign (bit 6): 0b0000011 followed by 1 unused bit.
        extension(OID.keyUsage, true, der.bitString(Buffer.from([0x06]), 1)),
        extension(OID.subjectKeyIdentifier, false, der.octetString(keyIdentifier(spki))),
      ],
    },
    privateKey,
    ECDSA_SHA256,
  );
  return Promise.resolve({ certPem, keyPem });
}

/** The elements of a certificate's TBSCertificate (version [0] dropped when present). */
function tbsFields(raw: Buffer): der.Element[] {
  const fields = der.children(raw, der.children(raw, der.readElement(raw, 0))[0]!);
  return fields[0]!.tag === 0xa0 ? fields.slice(1) : fields;
}

/**
 * Issues leaf certificates from one CA. The CA is read once (its subject, key identifier and
 * private key); each certificate is then a fresh P-256 key, a TBSCertificate and one signature.
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
    const buf = new X509Certificate(ca.certPem).raw;
    // After the optional version: serial, signature, issuer, validity, subject, spki, …, [3] extensions.
    const fields = tbsFields(buf);
    const subject = fields[4]!;
    const spki = fields[5]!;
    let keyId: Buffer | undefined;
    const exts = fields.find((f) => f.tag === 0xa3);
    for (const ext of exts ? der.children(buf, der.children(buf, exts)[0]!) : []) {
      const parts = der.children(buf, ext);
      if (!buf.subarray(parts[0]!.start, parts[0]!.end).equals(der.oid(OID.subjectKeyIdentifier))) continue;
      const inner = der.readElement(buf, parts[parts.length - 1]!.contentStart);
      keyId = buf.subarray(inner.contentStart, inner.end);
    }
    // Without the CA's own SKI: what it would hold.
    keyId ??= keyIdentifier(buf.subarray(spki.start, spki.end));
    const key = createPrivateKey(ca.keyPem);
    const sigAlg =
      key.asymmetricKeyType === 'rsa'
        ? der.sequence(der.oid(OID.sha256WithRsa), Buffer.from([0x05, 0x00]))
        : ECDSA_SHA256;
    return new CertificateIssuer(Buffer.from(buf.subarray(subject.start, subject.end)), keyId, key, sigAlg);
  }

  /** A new key and a certificate for it, signed by this CA. */
  issue(opts: IssueOptions): KeyPair {
    const { spki, keyPem } = newKey();
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
    const certPem = certificate(
      {
        issuer: this.issuerName,
        subject: name(opts.commonName, opts.organizations),
        spki,
        validityDays: opts.validityDays ?? 365,
        extensions,
      },
      this.key,
      this.signatureAlgorithm,
    );
    return { certPem, keyPem };
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
  return new Date(new X509Certificate(certPem).validTo);
}

/** The subject common name and organisations of a PEM certificate. */
export function certificateSubject(certPem: string): { commonName: string; organizations: string[] } {
  const buf = new X509Certificate(certPem).raw;
  const subject = tbsFields(buf)[4]!;
  const out = { commonName: '', organizations: [] as string[] };
  for (const rdn of der.children(buf, subject))
    for (const attr of der.children(buf, rdn)) {
      const [type, value] = der.children(buf, attr);
      const text = buf.subarray(value!.contentStart, value!.end).toString('utf8');
      const id = buf.subarray(type!.start, type!.end);
      if (id.equals(der.oid(OID.commonName)) && !out.commonName) out.commonName = text;
      else if (id.equals(der.oid(OID.organization))) out.organizations.push(text);
    }
  return out;
}
