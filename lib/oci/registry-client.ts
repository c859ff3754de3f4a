import { rootCertificates } from 'node:tls';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, interceptors, request, type Dispatcher } from 'undici';
import type { Logger } from '../log.ts';
import { basicAuthorization, parseChallenge, parseTokenAnswer, tokenUrl, type Challenge } from './auth.ts';
import type { RegistryCredential } from './credentials.ts';
import { ImagePullError, isAbort } from './errors.ts';
import { MANIFEST_ACCEPT } from './manifest.ts';
import { registryEndpoint, type ImageReference } from './reference.ts';

export interface RegistryClientOptions {
  /** `host:port` of registries reached over plain http. */
  insecureRegistries?: string[];
  /** Extra PEM CA certificates trusted for https registries and token endpoints. */
  caCerts?: string[];
  log?: Logger;
  /** Attempts per request on connection errors, 429 and 5xx (default 3). */
  attempts?: number;
  /** Delay before the first retry, doubled each time (default 250 ms). */
  retryDelayMs?: number;
}

/** Per-pull context: who asks (for messages), with which credentials, until when. */
export interface RequestContext {
  /** The image as the user wrote it, quoted in error messages. */
  image: string;
  credentials: RegistryCredential[];
  signal?: AbortSignal;
}

export interface ManifestAnswer {
  body: Buffer;
  contentType?: string;
  /** `Docker-Content-Digest` as the registry sent it. */
  digestHeader?: string;
}

export interface BlobAnswer {
  body: Readable;
  /** Content-Length, when the registry sent one. */
  length?: number;
}

interface AuthState {
  authorization?: string;
  expiresAt: number;
  /** The credential the authorization was made from (undefined: anonymous). */
  credential?: RegistryCredential;
}

const RETRYABLE_STATUS = new Set([429, 500, 502, 503, 504]);
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function statusText(status: number): string {
  const texts: Record<number, string> = {
    400: 'Bad Request',
    401: 'Unauthorized',
    403: 'Forbidden',
    404: 'Not Found',
    429: 'Too Many Requests',
    500: 'Internal Server Error',
    502: 'Bad Gateway',
    503: 'Service Unavailable',
    504: 'Gateway Timeout',
  };
  return `${status}${texts[status] ? ` ${texts[status]}` : ''}`;
}

/** The registry's own error text (`{"errors":[{"code","message"}]}`), when it sent one. */
async function registryErrorText(body: Dispatcher.ResponseData['body']): Promise<string> {
  try {
    const text = (await body.text()).slice(0, 2000);
    const doc = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const first = doc.errors?.[0];
    if (first) return [first.code, first.message].filter(Boolean).join(': ');
  } catch {
    // not JSON; the status says enough
  }
  return '';
}

/**
 * A client for the OCI distribution API (`/v2/`): manifests and blobs, with the registry's
 * authentication challenge answered by a bearer token (anonymous or with credentials) or by basic
 * credentials, retries on transient failures, and errors worded for `kubectl describe pod`.
 */
export class RegistryClient {
  private readonly dispatcher: Dispatcher;
  private readonly agent: Agent;
  private readonly insecure: Set<string>;
  private readonly auth = new Map<string, AuthState>();
  private readonly attempts: number;
  private readonly retryDelayMs: number;

  constructor(private readonly opts: RegistryClientOptions = {}) {
    this.insecure = new Set(opts.insecureRegistries ?? []);
    this.agent = new Agent({
      connect: opts.caCerts?.length ? { ca: [...rootCertificates, ...opts.caCerts] } : {},
      headersTimeout: 30_000,
      bodyTimeout: 60_000,
    });
    this.dispatcher = this.agent.compose(interceptors.redirect({ maxRedirections: 5 }));
    this.attempts = opts.attempts ?? 3;
    this.retryDelayMs = opts.retryDelayMs ?? 250;
  }

  /** Closes idle connections. */
  async close(): Promise<void> {
    await this.agent.close();
  }

  private baseUrl(ref: ImageReference): string {
    const scheme = this.insecure.has(ref.registry) ? 'http' : 'https';
    return `${scheme}://${registryEndpoint(ref.registry)}/v2/${ref.repository}`;
  }

  /** Fetches the manifest or index named by `reference` (a tag or a digest). */
  async getManifest(ref: ImageReference, reference: string, ctx: RequestContext): Promise<ManifestAnswer> {
    const what = `manifest "${reference}" of repository "${ref.repository}"`;
    const res = await this.send(ref, `/manifests/${reference}`, { accept: MANIFEST_ACCEPT }, ctx, what);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_MANIFEST_BYTES) {
        res.body.destroy();
        throw new ImagePullError(
          'UnsupportedMediaType',
          `Failed to pull image "${ctx.image}": registry ${ref.registry} sent a ${what} larger than 4 MiB; this is not an image manifest`,
        );
      }
      chunks.push(chunk);
    }
    return {
      body: Buffer.concat(chunks),
      contentType: header(res.headers, 'content-type'),
      digestHeader: header(res.headers, 'docker-content-digest'),
    };
  }

  /** Opens the blob `digest`; the caller reads (and verifies) the stream. */
  async openBlob(ref: ImageReference, digest: string, ctx: RequestContext): Promise<BlobAnswer> {
    const what = `blob ${digest} of repository "${ref.repository}"`;
    const res = await this.send(ref, `/blobs/${digest}`, {}, ctx, what);
    const len = Number(header(res.headers, 'content-length'));
    return { body: res.body, length: Number.isFinite(len) ? len : undefined };
  }

  private authKey(ref: ImageReference, ctx: RequestContext): string {
    return `${ref.registry}|${ref.repository}|${ctx.credentials.map((c) => `${c.username}:${c.password}`).join('|')}`;
  }

  private async send(
    ref: ImageReference,
    path: string,
    headers: Record<string, string>,
    ctx: RequestContext,
    what: string,
  ): Promise<Dispatcher.ResponseData> {
    const url = this.baseUrl(ref) + path;
    const key = this.authKey(ref, ctx);
    let state = this.auth.get(key);
    if (state && state.expiresAt <= Date.now()) state = undefined;
    // Candidates after a 401: each credential in order, then anonymous (as the kubelet does).
    const candidates: (RegistryCredential | undefined)[] = [...ctx.credentials, undefined];
    let candidate = 0;
    let lastChallenge: Challenge | undefined;
    let refusedBy: string | undefined;
    for (;;) {
      const res = await this.requestWithRetry(
        url,
        { ...headers, ...(state?.authorization ? { authorization: state.authorization } : {}) },
        ctx,
        ref,
        what,
      );
      if (res.statusCode >= 200 && res.statusCode < 300) {
        if (state) this.auth.set(key, state);
        return res;
      }
      if (res.statusCode === 401) {
        await res.body.dump();
        const challenge = parseChallenge(header(res.headers, 'www-authenticate')) ?? lastChallenge;
        lastChallenge = challenge;
        // Credentials sent with this request and still answered 401: refused.
        if (state?.credential) refusedBy = state.credential.source;
        let next: AuthState | undefined;
        while (!next && candidate < candidates.length) {
          const cred = candidates[candidate++];
          try {
            next = await this.authorize(challenge, cred, ref, ctx);
          } catch (err) {
            if (err instanceof ImagePullError && err.reason === 'Unauthorized') {
              refusedBy = cred?.source ?? refusedBy;
              continue;
            }
            throw err;
          }
        }
        if (next) {
          state = next;
          continue;
        }
        this.auth.delete(key);
        throw this.unauthorized(ref, ctx, 401, refusedBy);
      }
      const text = await registryErrorText(res.body);
      const detail = text ? ` (${text})` : '';
      if (res.statusCode === 403) throw this.unauthorized(ref, ctx, 403, undefined, detail);
      if (res.statusCode === 404) {
        throw new ImagePullError(
          'NotFound',
          `Failed to pull image "${ctx.image}": registry ${ref.registry} answered ${statusText(404)} for the ${what}${detail}; check the image name and tag, and that the image was pushed to this registry`,
          { status: 404 },
        );
      }
      if (res.statusCode === 400) {
        throw new ImagePullError(
          'InvalidReference',
          `Failed to pull image "${ctx.image}": registry ${ref.registry} answered ${statusText(400)} for the ${what}${detail}; check the image reference`,
          { status: 400 },
        );
      }
      throw new ImagePullError(
        'Unavailable',
        `Failed to pull image "${ctx.image}": registry ${ref.registry} answered ${statusText(res.statusCode)} for the ${what}${detail}; the registry is failing, try again later`,
        { status: res.statusCode },
      );
    }
  }

  private unauthorized(
    ref: ImageReference,
    ctx: RequestContext,
    status: number,
    refusedBy: string | undefined,
    detail = '',
  ): ImagePullError {
    const advice =
      ctx.credentials.length === 0
        ? `the repository needs credentials: add an imagePullSecret for ${ref.registry} to the pod (or its service account)`
        : `the credentials${refusedBy ? ` of the imagePullSecret entry "${refusedBy}"` : ''} were refused or lack pull access to ${ref.repository}: check the username, password and the account's permissions`;
    return new ImagePullError(
      'Unauthorized',
      `Failed to pull image "${ctx.image}": registry ${ref.registry} answered ${statusText(status)}${detail}; ${advice}`,
      { status },
    );
  }

  /** Answers a challenge for one candidate credential (undefined: anonymous). Throws Unauthorized when refused. */
  private async authorize(
    challenge: Challenge | undefined,
    cred: RegistryCredential | undefined,
    ref: ImageReference,
    ctx: RequestContext,
  ): Promise<AuthState | undefined> {
    if (!challenge || challenge.scheme === 'basic') {
      if (!cred) return undefined;
      return {
        authorization: basicAuthorization(cred),
        expiresAt: Number.POSITIVE_INFINITY,
        credential: cred,
      };
    }
    if (challenge.scheme !== 'bearer') {
      throw new ImagePullError(
        'Unauthorized',
        `Failed to pull image "${ctx.image}": registry ${ref.registry} asks for "${challenge.scheme}" authentication, which this client does not speak; use a registry with token or basic authentication`,
        { status: 401 },
      );
    }
    let url: URL;
    try {
      url = tokenUrl(challenge, `repository:${ref.repository}:pull`);
    } catch {
      throw new ImagePullError(
        'Unavailable',
        `Failed to pull image "${ctx.image}": registry ${ref.registry} sent a bearer challenge without a valid token realm; the registry is misconfigured`,
        { status: 401 },
      );
    }
    const res = await this.requestWithRetry(
      url.toString(),
      cred ? { authorization: basicAuthorization(cred) } : {},
      ctx,
      ref,
      `token from ${url.host}`,
    );
    if (res.statusCode === 401 || res.statusCode === 403) {
      await res.body.dump();
      throw this.unauthorized(ref, ctx, res.statusCode, cred?.source);
    }
    if (res.statusCode < 200 || res.statusCode >= 300) {
      const text = await registryErrorText(res.body);
      throw new ImagePullError(
        'Unavailable',
        `Failed to pull image "${ctx.image}": the token service ${url.host} of registry ${ref.registry} answered ${statusText(res.statusCode)}${text ? ` (${text})` : ''}; try again later`,
        { status: res.statusCode },
      );
    }
    let answer;
    try {
      answer = parseTokenAnswer(await res.body.json());
    } catch {
      answer = undefined;
    }
    if (!answer) {
      throw new ImagePullError(
        'Unavailable',
        `Failed to pull image "${ctx.image}": the token service ${url.host} of registry ${ref.registry} sent no token; the registry is misconfigured`,
      );
    }
    this.opts.log?.debug(
      { registry: ref.registry, repository: ref.repository, anonymous: !cred },
      'registry token',
    );
    return { authorization: `Bearer ${answer.token}`, expiresAt: answer.expiresAt, credential: cred };
  }

  /** One GET, retried on connection errors, 429 and 5xx with exponential backoff. */
  private async requestWithRetry(
    url: string,
    headers: Record<string, string>,
    ctx: RequestContext,
    ref: ImageReference,
    what: string,
  ): Promise<Dispatcher.ResponseData> {
    let delay = this.retryDelayMs;
    for (let attempt = 1; ; attempt++) {
      ctx.signal?.throwIfAborted();
      let res: Dispatcher.ResponseData | undefined;
      let failure: unknown;
      try {
        res = await request(url, {
          method: 'GET',
          headers: { 'user-agent': 'kip-oci/0.1', ...headers },
          dispatcher: this.dispatcher,
          signal: ctx.signal,
        });
      } catch (err) {
        if (isAbort(err) || ctx.signal?.aborted) throw err;
        failure = err;
      }
      if (res && !RETRYABLE_STATUS.has(res.statusCode)) return res;
      if (attempt >= this.attempts) {
        if (res) return res;
        throw this.unreachable(ref, ctx, url, what, failure);
      }
      if (res) await res.body.dump();
      this.opts.log?.warn(
        { url, attempt, status: res?.statusCode, err: failure ? String(failure) : undefined },
        'registry request failed, retrying',
      );
      await sleep(delay, undefined, { signal: ctx.signal });
      delay *= 2;
    }
  }

  private unreachable(
    ref: ImageReference,
    ctx: RequestContext,
    url: string,
    what: string,
    err: unknown,
  ): ImagePullError {
    const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
    const code = e?.code ?? e?.cause?.code;
    const msg = e?.cause?.message ?? e?.message ?? String(err);
    const tlsHint =
      /ssl|tls|certificate|wrong version/i.test(msg) && url.startsWith('https:')
        ? `; if ${ref.registry} serves plain http, list it as an insecure registry, or trust its CA`
        : '';
    return new ImagePullError(
      'Unavailable',
      `Failed to pull image "${ctx.image}": cannot reach registry ${ref.registry} for the ${what} (${code ? `${code}: ` : ''}${msg})${tlsHint || '; check that the registry is up and reachable from the cell, then retry'}`,
      { cause: err },
    );
  }
}
