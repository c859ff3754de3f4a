import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { AuthenticationV1Api, AuthorizationV1Api, type KubeConfig } from '@kubernetes/client-node';
import { systemClock, type Clock } from '../clock.ts';

/** Who made a request, as Kubernetes names users. */
export interface UserInfo {
  username: string;
  uid?: string;
  groups: string[];
  extra?: Record<string, string[]>;
}

/** What a request asks for, in SubjectAccessReview terms (resource `nodes`, name = the node). */
export interface RequestAttributes {
  verb: string;
  subresource: 'log' | 'stats' | 'metrics' | 'proxy';
  path: string;
}

/** Checks a bearer token: the user, or null when the token is not valid. Throws when it cannot tell. */
export type TokenReviewer = (token: string) => Promise<UserInfo | null>;

/** Decides whether `user` may do `attrs` on node `nodeName`. Throws when it cannot tell. */
export type AccessReviewer = (
  user: UserInfo,
  nodeName: string,
  attrs: RequestAttributes,
) => Promise<{ allowed: boolean; reason?: string }>;

const VERBS: Record<string, string> = {
  GET: 'get',
  POST: 'create',
  PUT: 'update',
  PATCH: 'patch',
  DELETE: 'delete',
};

/** The kubelet's mapping of a request to an authorization check. */
export function requestAttributes(method: string, path: string): RequestAttributes {
  const subresource = path.startsWith('/stats')
    ? 'stats'
    : path.startsWith('/metrics')
      ? 'metrics'
      : path.startsWith('/logs')
        ? 'log'
        : 'proxy';
  return { verb: VERBS[method] ?? method.toLowerCase(), subresource, path };
}

/** TokenReview and SubjectAccessReview through the Kubernetes API (what a real kubelet does). */
export function kubernetesReviewers(kc: KubeConfig): { tokens: TokenReviewer; access: AccessReviewer } {
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  return {
    async tokens(token) {
      const review = await authn.createTokenReview({
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
      });
      const s = review.status;
      if (!s?.authenticated || !s.user?.username) return null;
      return { username: s.user.username, uid: s.user.uid, groups: s.user.groups ?? [], extra: s.user.extra };
    },
    async access(user, nodeName, attrs) {
      const review = await authz.createSubjectAccessReview({
        body: {
          apiVersion: 'authorization.k8s.io/v1',
          kind: 'SubjectAccessReview',
          spec: {
            user: user.username,
            uid: user.uid,
            groups: user.groups,
            extra: user.extra,
            resourceAttributes: {
              verb: attrs.verb,
              group: '',
              version: 'v1',
              resource: 'nodes',
              subresource: attrs.subresource,
              name: nodeName,
            },
          },
        },
      });
      return { allowed: review.status?.allowed === true, reason: review.status?.reason };
    },
  };
}

/** A small expiring cache; the oldest entries go first when it is full. */
class TtlCache<V> {
  private entries = new Map<string, { value: V; expires: number }>();

  constructor(
    private readonly clock: Clock,
    private readonly maxEntries = 10_000,
  ) {}

  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.clock.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: V, ttlMs: number): void {
    this.entries.delete(key);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { value, expires: this.clock.now() + ttlMs });
  }
}

export interface KubeletAuthOptions {
  nodeName: string;
  tokens: TokenReviewer;
  access: AccessReviewer;
  clock?: Clock;
  /** Cache lifetimes, the kubelet's defaults: tokens 2 min (invalid ones 10 s), allow 5 min, deny 30 s. */
  tokenTtlMs?: number;
  invalidTokenTtlMs?: number;
  allowTtlMs?: number;
  denyTtlMs?: number;
}

/** Why a request was refused: 401 (unauthenticated), 403 (forbidden) or 500 (could not check). */
export class AuthError extends Error {
  constructor(
    readonly status: 401 | 403 | 500,
    message: string,
  ) {
    super(message);
    this.name = 'AuthError';
  }
}

/**
 * The kubelet API's authentication (verified client certificate, else bearer token by TokenReview)
 * and authorization (SubjectAccessReview on the node), with the kubelet's cache lifetimes.
 */
export class KubeletAuth {
  private readonly clock: Clock;
  private readonly tokenCache: TtlCache<UserInfo | null>;
  private readonly accessCache: TtlCache<{ allowed: boolean; reason?: string }>;

  constructor(private readonly opts: KubeletAuthOptions) {
    this.clock = opts.clock ?? systemClock;
    this.tokenCache = new TtlCache(this.clock);
    this.accessCache = new TtlCache(this.clock);
  }

  /** The request's user; throws AuthError 401 when there is no valid credential. */
  async authenticate(req: IncomingMessage): Promise<UserInfo> {
    const socket = req.socket as TLSSocket;
    if (socket.authorized) {
      const cert = socket.getPeerCertificate();
      const subject = cert.subject as unknown as Record<string, string | string[] | undefined> | undefined;
      const cn = subject?.CN;
      const org = subject?.O;
      if (typeof cn === 'string' && cn) {
        return {
          username: cn,
          groups: [...(Array.isArray(org) ? org : org ? [org] : []), 'system:authenticated'],
        };
      }
    }
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match) throw new AuthError(401, 'Unauthorized');
    const token = match[1]!;
    const key = createHash('sha256').update(token).digest('hex');
    let user = this.tokenCache.get(key);
    if (user === undefined) {
      try {
        user = await this.opts.tokens(token);
      } catch (err) {
        throw new AuthError(401, `Unauthorized: token review failed: ${(err as Error).message}`);
      }
      this.tokenCache.set(
        key,
        user,
        user ? (this.opts.tokenTtlMs ?? 120_000) : (this.opts.invalidTokenTtlMs ?? 10_000),
      );
    }
    if (!user) throw new AuthError(401, 'Unauthorized');
    return user;
  }

  /** Resolves when `user` may make the request; throws AuthError 403 (or 500) otherwise. */
  async authorize(user: UserInfo, attrs: RequestAttributes): Promise<void> {
    const key = JSON.stringify([
      user.username,
      user.uid,
      user.groups,
      user.extra,
      attrs.verb,
      attrs.subresource,
    ]);
    let decision = this.accessCache.get(key);
    if (!decision) {
      try {
        decision = await this.opts.access(user, this.opts.nodeName, attrs);
      } catch (err) {
        throw new AuthError(500, `Authorization error (user=${user.username}): ${(err as Error).message}`);
      }
      this.accessCache.set(
        key,
        decision,
        decision.allowed ? (this.opts.allowTtlMs ?? 300_000) : (this.opts.denyTtlMs ?? 30_000),
      );
    }
    if (!decision.allowed) {
      throw new AuthError(
        403,
        `Forbidden (user=${user.username}, verb=${attrs.verb}, resource=nodes, subresource(s)=[${attrs.subresource}])` +
          (decision.reason ? `: ${decision.reason}` : ''),
      );
    }
  }

  /** Authenticates and authorizes one request; resolves with the user. */
  async check(req: IncomingMessage, path: string): Promise<UserInfo> {
    const user = await this.authenticate(req);
    await this.authorize(user, requestAttributes(req.method ?? 'GET', path));
    return user;
  }
}
