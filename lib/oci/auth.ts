import type { RegistryCredential } from './credentials.ts';

/** A parsed `WWW-Authenticate` challenge. */
export interface Challenge {
  scheme: 'bearer' | 'basic' | string;
  params: Record<string, string>;
}

/**
 * Parses the first challenge of a `WWW-Authenticate` header:
 * `Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"` or
 * `Basic realm="x"`. Quoted values may contain commas and escaped quotes.
 */
export function parseChallenge(header: string | undefined): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9._~+/-]*)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/gy;
  const rest = m[2]!;
  re.lastIndex = 0;
  let p: RegExpExecArray | null;
  while (re.lastIndex < rest.length && (p = re.exec(rest))) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

/** The `Authorization` value for HTTP basic authentication. */
export function basicAuthorization(cred: RegistryCredential): string {
  return `Basic ${Buffer.from(`${cred.username}:${cred.password}`, 'utf8').toString('base64')}`;
}

/** A token endpoint's answer (the Docker token protocol; `access_token` is the OAuth2 spelling). */
export interface TokenAnswer {
  token: string;
  /** Milliseconds since the epoch after which the token must not be reused. */
  expiresAt: number;
}

/** Reads a token endpoint's JSON answer; tokens live 60 s when it names no lifetime. */
export function parseTokenAnswer(body: unknown, now = Date.now()): TokenAnswer | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const o = body as { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
  const token = typeof o.token === 'string' && o.token ? o.token : o.access_token;
  if (typeof token !== 'string' || token === '') return undefined;
  const lifetime = typeof o.expires_in === 'number' && o.expires_in > 0 ? o.expires_in : 60;
  const issued = typeof o.issued_at === 'string' ? Date.parse(o.issued_at) : NaN;
  const start = Number.isNaN(issued) ? now : Math.min(issued, now);
  // Renew 10 s early so a token never expires between the check and the request.
  return { token, expiresAt: start + lifetime * 1000 - 10_000 };
}

/** The token URL for a bearer challenge and a scope. */
export function tokenUrl(challenge: Challenge, scope: string): URL {
  const realm = challenge.params.realm;
  if (!realm) throw new Error('bearer challenge without realm');
  const url = new URL(realm);
  if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
  url.searchParams.set('scope', scope);
  return url;
}
