/**
 * Service account tokens: JWTs signed with an ES256 key made at start, issued through the
 * TokenRequest subresource and resolved back to their service account by TokenReview and by
 * request authentication. The public key is served as JWKS (`/openid/v1/jwks`).
 */
import { generateKeyPairSync, randomUUID, sign, verify, type KeyObject } from 'node:crypto';

const DEFAULT_ISSUER = 'https://kubernetes.default.svc.cluster.local';

export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

export interface ServiceAccountClaims {
  iss: string;
  sub: string;
  aud: string[];
  exp: number;
  iat: number;
  nbf: number;
  jti: string;
  'kubernetes.io': {
    namespace: string;
    serviceaccount: { name: string; uid: string };
    pod?: { name: string; uid: string };
    node?: { name: string; uid: string };
    secret?: { name: string; uid: string };
  };
}

const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

export class TokenIssuer {
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;
  readonly keyId: string;

  constructor(readonly issuer = DEFAULT_ISSUER) {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.privateKey = privateKey;
    this.publicKey = publicKey;
    this.keyId = randomUUID().replace(/-/g, '');
  }

  /** Signs the claims as a compact JWS (ES256: raw r||s signature, per RFC 7518). */
  sign(claims: ServiceAccountClaims): string {
    const header = b64url(JSON.stringify({ alg: 'ES256', kid: this.keyId }));
    const payload = b64url(JSON.stringify(claims));
    const sig = sign('sha256', Buffer.from(`${header}.${payload}`), {
      key: this.privateKey,
      dsaEncoding: 'ieee-p1363',
    });
    return `${header}.${payload}.${b64url(sig)}`;
  }

  /** True when `token` looks like one of ours (right key id), valid or not. */
  isOurs(token: string): boolean {
    const parts = token.split('.');
    if (parts.length !== 3) return false;
    try {
      const header = JSON.parse(Buffer.from(parts[0]!, 'base64url').toString()) as { kid?: string };
      return header.kid === this.keyId;
    } catch {
      return false;
    }
  }

  /** The claims of a token this issuer signed, or an error saying why it is not acceptable. */
  verify(
    token: string,
    nowSeconds = Math.floor(Date.now() / 1000),
  ): ServiceAccountClaims | { error: string } {
    const parts = token.split('.');
    if (parts.length !== 3) return { error: 'token is not a JWT' };
    const ok = verify(
      'sha256',
      Buffer.from(`${parts[0]}.${parts[1]}`),
      { key: this.publicKey, dsaEncoding: 'ieee-p1363' },
      Buffer.from(parts[2]!, 'base64url'),
    );
    if (!ok) return { error: 'invalid signature' };
    let claims: ServiceAccountClaims;
    try {
      claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString()) as ServiceAccountClaims;
    } catch {
      return { error: 'malformed claims' };
    }
    if (claims.iss !== this.issuer) return { error: 'token issuer mismatch' };
    if (typeof claims.exp !== 'number' || claims.exp <= nowSeconds) return { error: 'token has expired' };
    if (typeof claims.nbf === 'number' && claims.nbf > nowSeconds + 60)
      return { error: 'token is not valid yet' };
    return claims;
  }

  jwks(): object {
    const jwk = this.publicKey.export({ format: 'jwk' });
    return {
      keys: [{ use: 'sig', kty: jwk.kty, kid: this.keyId, crv: jwk.crv, alg: 'ES256', x: jwk.x, y: jwk.y }],
    };
  }

  openidConfiguration(): object {
    return {
      issuer: this.issuer,
      jwks_uri: `${this.issuer}/openid/v1/jwks`,
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: ['ES256'],
    };
  }
}

/** The user a service account token authenticates as. */
export function serviceAccountUser(claims: ServiceAccountClaims): UserInfo {
  const k = claims['kubernetes.io'];
  const extra: Record<string, string[]> = {
    'authentication.kubernetes.io/credential-id': [`JTI=${claims.jti}`],
  };
  if (k.pod) {
    extra['authentication.kubernetes.io/pod-name'] = [k.pod.name];
    extra['authentication.kubernetes.io/pod-uid'] = [k.pod.uid];
  }
  if (k.node) {
    extra['authentication.kubernetes.io/node-name'] = [k.node.name];
    extra['authentication.kubernetes.io/node-uid'] = [k.node.uid];
  }
  return {
    username: `system:serviceaccount:${k.namespace}:${k.serviceaccount.name}`,
    uid: k.serviceaccount.uid,
    groups: ['system:serviceaccounts', `system:serviceaccounts:${k.namespace}`, 'system:authenticated'],
    extra,
  };
}

/** Whoever holds the kubeconfig (or any token that is not a service account token). */
export const ADMIN_USER: UserInfo = {
  username: 'kubernetes-admin',
  groups: ['system:masters', 'system:authenticated'],
};
