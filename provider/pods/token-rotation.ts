/**
 * Keeps a running pod's resolved volume files current, as the kubelet does: projected service
 * account tokens are requested again once 80% of their lifetime has passed or they are 24 h old,
 * and ConfigMap and Secret contents are re-read about once a minute. The new files go to the
 * cell agent (`PUT /v1/pod/volumes`), which swaps each volume atomically.
 *
 * Volumes are resolved by the same code as at dispatch (pod-dispatch.ts), through a Kubernetes
 * client that serves the pod's tokens from what it already holds until they are due and reads
 * ConfigMaps and Secrets through a short cache shared by all pods.
 */
import type { AuthenticationV1TokenRequest, CoreV1Api, V1Pod } from '@kubernetes/client-node';
import type { VolumeFiles } from '../../lib/cell-agent-api.ts';
import type { CellAgentClient } from '../../lib/cell-agent-client.ts';
import type { Logger } from '../../lib/log.ts';
import type { PodEventRecorder } from './events.ts';
import {
  DispatchConfigError,
  resolveDispatch,
  type DispatchOptions,
  type ResolvedDispatch,
} from './pod-dispatch.ts';

/** When tokens are rotated and how often ConfigMap/Secret volumes are re-read (config `volumes`). */
export interface VolumeRefreshSettings {
  /** Share of a token's lifetime after which it is requested again. Default 0.8, as the kubelet. */
  tokenRefreshFraction: number;
  /** A token this old is requested again whatever its lifetime. Default 86400 (24 h). */
  tokenMaxAgeSeconds: number;
  /** Period of the ConfigMap and Secret re-read; 0 turns it off. Default 60. */
  configRefreshSeconds: number;
  /** First retry delay after a failed rotation, doubling up to `retryMaxSeconds`. Default 1. */
  retryInitialSeconds: number;
  /** Default 60. */
  retryMaxSeconds: number;
}

/** What the cell manager is given to build a TokenRotation (main.ts passes the config's `volumes`). */
export interface VolumeRefreshOptions extends Partial<VolumeRefreshSettings> {
  core: CoreV1Api;
  /** Passed on to resolveDispatch (cluster domain, default token lifetime). */
  dispatch?: Omit<DispatchOptions, 'core'>;
  /** Milliseconds since the epoch. Default Date.now. */
  now?: () => number;
  /** Re-adopted pods get new tokens within this window, spread so a restart is no burst. Default 10 s. */
  adoptSpreadMs?: number;
}

export interface TokenRotationOptions extends VolumeRefreshOptions {
  events: PodEventRecorder;
  log: Logger;
}

/** The pod's agent client once the pod was dispatched to it, else undefined. */
export type AgentRef = () => Pick<CellAgentClient, 'putVolumes'> | undefined;

export const DEFAULT_VOLUME_REFRESH: VolumeRefreshSettings = {
  tokenRefreshFraction: 0.8,
  tokenMaxAgeSeconds: 86_400,
  configRefreshSeconds: 60,
  retryInitialSeconds: 1,
  retryMaxSeconds: 60,
};

/** The kubelet's default lifetime of a projected token that names none (pod-dispatch.ts sends it). */
const DEFAULT_TOKEN_SECONDS = 3607;
/** Timers are re-armed at least this often, so a far-off due time never overflows setTimeout. */
const MAX_TIMER_MS = 86_400_000;
/** Pods refreshed at once by a ConfigMap/Secret sweep. */
const SWEEP_CONCURRENCY = 8;

interface HeldToken {
  token: string;
  issuedAt: number;
  expiresAt: number;
}

interface Watched {
  pod: V1Pod;
  agent: AgentRef;
  /** Volumes whose files can change: configMap, secret, projected, downwardAPI. */
  names: string[];
  hasTokens: boolean;
  hasObjects: boolean;
  /** Downward API files of labels or annotations, rewritten when those change. */
  hasMetadataFiles: boolean;
  /** Tokens the agent has, by audiences and requested lifetime. */
  tokens: Map<string, HeldToken>;
  /** The volume files last accepted by the agent (JSON), to send only changes. */
  lastSent?: string;
  timer?: NodeJS.Timeout;
  busy: Promise<void>;
  queued: boolean;
  failures: number;
  /** After a failed rotation, tokens are not requested again before this time (ms). */
  retryAt: number;
  lastError?: string;
  gone: boolean;
}

type TokenCall = Parameters<CoreV1Api['createNamespacedServiceAccountToken']>[0];
type ReadCall = { name: string; namespace: string };

const tokenKey = (audiences: string[] | undefined, seconds: number | undefined) =>
  `${(audiences ?? []).join(',')}|${seconds ?? DEFAULT_TOKEN_SECONDS}`;

/** `iat` and `exp` of a JWT, in ms; undefined for a token that is not one. */
function jwtTimes(token: string): { iat?: number; exp?: number } | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as {
      iat?: unknown;
      exp?: unknown;
    };
    return {
      ...(typeof claims.iat === 'number' ? { iat: claims.iat * 1000 } : {}),
      ...(typeof claims.exp === 'number' ? { exp: claims.exp * 1000 } : {}),
    };
  } catch {
    return undefined;
  }
}

/** A token's issue and expiry times: its own claims first, else the TokenRequest's expiry and lifetime. */
function heldToken(
  token: string,
  expiry: Date | string | undefined,
  seconds: number,
  now: number,
): HeldToken {
  const claims = jwtTimes(token);
  const expiresAt = claims?.exp ?? (expiry ? new Date(expiry).getTime() : now + seconds * 1000);
  return { token, expiresAt, issuedAt: claims?.iat ?? expiresAt - seconds * 1000 };
}

/** The pod reduced to what its volumes need: no env, pull secrets or DNS to resolve again. */
function volumeView(pod: V1Pod): V1Pod {
  return {
    metadata: pod.metadata,
    spec: {
      containers: [],
      volumes: pod.spec?.volumes,
      serviceAccountName: pod.spec?.serviceAccountName,
      dnsPolicy: 'None',
    },
  };
}

/**
 * Per-pod rotation of projected service account tokens and refresh of ConfigMap/Secret volumes.
 * The cell manager tells it when a pod was dispatched, re-adopted or removed; it never blocks the
 * caller, its timers are unref'd, and a failure is retried with backoff and told as a pod event.
 */
export class TokenRotation {
  private readonly s: VolumeRefreshSettings;
  private readonly now: () => number;
  private readonly pods = new Map<string, Watched>();
  private readonly objects = new Map<string, { at: number; value: Promise<unknown> }>();
  private sweepTimer?: NodeJS.Timeout;
  private sweeping = false;

  constructor(private readonly o: TokenRotationOptions) {
    this.s = { ...DEFAULT_VOLUME_REFRESH };
    for (const k of Object.keys(DEFAULT_VOLUME_REFRESH) as (keyof VolumeRefreshSettings)[])
      if (o[k] !== undefined) this.s[k] = o[k];
    this.now = o.now ?? Date.now;
    if (this.s.configRefreshSeconds > 0) {
      this.sweepTimer = setInterval(() => void this.sweep(), this.s.configRefreshSeconds * 1000);
      this.sweepTimer.unref();
    }
  }

  /** The pod was sent to its agent with `resolved`: its tokens' rotation is scheduled from their expiry. */
  dispatched(pod: V1Pod, agent: AgentRef, resolved: ResolvedDispatch): void {
    const w = this.watch(pod, agent);
    if (!w) return;
    const now = this.now();
    // The files sent hold the tokens: their own iat/exp say when each is due.
    for (const v of pod.spec?.volumes ?? []) {
      for (const src of v.projected?.sources ?? []) {
        const t = src.serviceAccountToken;
        const token = t && resolved.request.volumes?.[v.name]?.files[t.path];
        if (!t || !token) continue;
        const seconds = t.expirationSeconds ?? this.o.dispatch?.defaultTokenSeconds ?? DEFAULT_TOKEN_SECONDS;
        w.tokens.set(
          tokenKey(t.audience ? [t.audience] : [], seconds),
          heldToken(Buffer.from(token, 'base64').toString(), resolved.tokenExpiry, seconds, now),
        );
      }
    }
    w.lastSent = JSON.stringify(this.pick(w, resolved.request.volumes ?? {}));
    // Tokens whose files were not found are requested again right away.
    if (w.hasTokens && w.tokens.size === 0) this.arm(w, 0);
    else this.schedule(w);
  }

  /**
   * The pod's cell was adopted after a provider restart. The tokens it holds were not kept, so
   * new ones are requested shortly (as a restarted kubelet does), then rotated on schedule.
   */
  adopted(pod: V1Pod, agent: AgentRef): void {
    const w = this.watch(pod, agent);
    if (!w?.hasTokens) return;
    this.arm(w, Math.random() * (this.o.adoptSpreadMs ?? 10_000));
  }

  /**
   * The pod object as the API server has it now. When its labels or annotations changed, downward
   * API files of them are rewritten, as the kubelet does. Cheap when nothing changed.
   */
  updated(pod: V1Pod): void {
    const w = this.pods.get(pod.metadata?.uid ?? '');
    if (!w?.hasMetadataFiles) return;
    const meta = (p: V1Pod) => JSON.stringify([p.metadata?.labels ?? {}, p.metadata?.annotations ?? {}]);
    if (meta(pod) === meta(w.pod)) return;
    w.pod = { ...w.pod, metadata: pod.metadata };
    void this.enqueue(w);
  }

  /** The pod is gone from this provider (deleted, finished, cell removed): nothing more is sent. */
  forget(uid: string): void {
    const w = this.pods.get(uid);
    if (!w) return;
    w.gone = true;
    clearTimeout(w.timer);
    this.pods.delete(uid);
  }

  /** Stops every timer (provider shutdown). */
  stop(): void {
    clearInterval(this.sweepTimer);
    for (const uid of [...this.pods.keys()]) this.forget(uid);
  }

  /** When the pod's next token is due, or undefined when it holds none (for tests and logs). */
  nextRotation(uid: string): Date | undefined {
    const w = this.pods.get(uid);
    const due = w && this.earliestDue(w);
    return due !== undefined ? new Date(due) : undefined;
  }

  private watch(pod: V1Pod, agent: AgentRef): Watched | undefined {
    const uid = pod.metadata!.uid!;
    this.forget(uid);
    const vols = (pod.spec?.volumes ?? []).filter(
      (v) => v.configMap || v.secret || v.projected || v.downwardAPI,
    );
    const sources = vols.flatMap((v) => v.projected?.sources ?? []);
    const hasTokens = sources.some((s) => s.serviceAccountToken);
    const hasObjects =
      vols.some((v) => v.configMap || v.secret) || sources.some((s) => s.configMap || s.secret);
    const hasMetadataFiles = [...vols.map((v) => v.downwardAPI), ...sources.map((s) => s.downwardAPI)].some(
      (d) => d?.items?.some((i) => /^metadata\.(labels|annotations)/.test(i.fieldRef?.fieldPath ?? '')),
    );
    if (!hasTokens && !hasObjects && !hasMetadataFiles) return undefined;
    const w: Watched = {
      pod,
      agent,
      names: vols.map((v) => v.name),
      hasTokens,
      hasObjects,
      hasMetadataFiles,
      tokens: new Map(),
      busy: Promise.resolve(),
      queued: false,
      failures: 0,
      retryAt: 0,
      gone: false,
    };
    this.pods.set(uid, w);
    return w;
  }

  private dueAt(t: HeldToken): number {
    const lifetime = t.expiresAt - t.issuedAt;
    return t.issuedAt + Math.min(lifetime * this.s.tokenRefreshFraction, this.s.tokenMaxAgeSeconds * 1000);
  }

  private earliestDue(w: Watched): number | undefined {
    let due: number | undefined;
    for (const t of w.tokens.values()) due = Math.min(due ?? Infinity, this.dueAt(t));
    return due;
  }

  /** Arms the pod's timer for its earliest token (nothing when it holds none). */
  private schedule(w: Watched): void {
    const due = this.earliestDue(w);
    if (due !== undefined) this.arm(w, Math.max(due, w.retryAt) - this.now());
  }

  private arm(w: Watched, delayMs: number): void {
    clearTimeout(w.timer);
    if (w.gone) return;
    const ms = Math.max(0, Math.min(delayMs, MAX_TIMER_MS));
    w.timer = setTimeout(() => {
      const due = this.earliestDue(w);
      // A far-off due time is reached in steps of at most a day.
      if (due !== undefined && Math.max(due, w.retryAt) > this.now() + 1000) return this.schedule(w);
      void this.enqueue(w);
    }, ms);
    w.timer.unref();
  }

  /** Runs one refresh for the pod after the one in progress; a refresh already waiting covers it. */
  private enqueue(w: Watched): Promise<void> {
    if (w.queued) return w.busy;
    w.queued = true;
    w.busy = w.busy.then(async () => {
      w.queued = false;
      if (!w.gone) await this.refresh(w);
    });
    return w.busy;
  }

  /** Resolves the pod's volumes (tokens due requested again) and sends what changed to the agent. */
  private async refresh(w: Watched): Promise<void> {
    const now = this.now();
    const due = this.earliestDue(w);
    // A sweep during a rotation's backoff leaves the tokens to the retry timer.
    if (w.hasTokens && w.tokens.size === 0 && now + 100 < w.retryAt) return;
    const rotating =
      w.hasTokens &&
      now + 100 >= w.retryAt &&
      (w.tokens.size === 0 || (due !== undefined && due <= now + 1000));
    const issued = new Map<string, HeldToken>();
    try {
      const { request } = await resolveDispatch(volumeView(w.pod), {
        ...this.o.dispatch,
        core: this.client(w, issued),
      });
      const volumes = this.pick(w, request.volumes ?? {});
      const json = JSON.stringify(volumes);
      if (json !== w.lastSent) {
        const agent = w.agent();
        if (!agent) throw new Error('the pod is not on its cell agent yet');
        const reply = await agent.putVolumes({ uid: w.pod.metadata!.uid!, volumes });
        w.lastSent = json;
        this.o.log.info(
          { pod: this.keyOf(w), volumes: reply.changed, tokens: issued.size },
          issued.size ? 'service account tokens rotated' : 'volume files refreshed',
        );
      }
      // Only tokens the agent now has replace the ones held.
      for (const [k, t] of issued) w.tokens.set(k, t);
      if (rotating) {
        w.failures = 0;
        w.retryAt = 0;
      }
      w.lastError = undefined;
      this.schedule(w);
    } catch (err) {
      if (w.gone) return;
      await this.failed(w, err, rotating);
    }
  }

  private async failed(w: Watched, err: unknown, rotating: boolean): Promise<void> {
    const e = err as Error;
    const why = err instanceof DispatchConfigError ? `${err.field}: ${e.message}` : e.message;
    this.o.log.warn({ pod: this.keyOf(w), err: why, rotating }, 'volume refresh failed');
    if (!rotating) {
      // The next sweep tries again; the event says it once per distinct failure.
      if (why !== w.lastError)
        await this.o.events.record(
          w.pod,
          'Warning',
          'VolumeRefreshFailed',
          `cannot refresh volume files: ${why}`,
        );
      w.lastError = why;
      return;
    }
    const expiry = Math.min(...[...w.tokens.values()].map((t) => t.expiresAt));
    const expires = Number.isFinite(expiry)
      ? ` (the current token expires at ${new Date(expiry).toISOString()})`
      : '';
    await this.o.events.record(
      w.pod,
      'Warning',
      'TokenRotationFailed',
      `cannot rotate the service account token${expires}: ${why}; retrying with backoff`,
    );
    const delay = Math.min(
      this.s.retryMaxSeconds,
      this.s.retryInitialSeconds * 2 ** Math.min(w.failures, 16),
    );
    w.failures++;
    w.retryAt = this.now() + delay * 1000;
    this.arm(w, delay * 1000);
  }

  /** The refreshable volumes of a resolved dispatch. */
  private pick(w: Watched, volumes: Record<string, VolumeFiles>): Record<string, VolumeFiles> {
    const out: Record<string, VolumeFiles> = {};
    for (const n of w.names) if (volumes[n]) out[n] = volumes[n];
    return out;
  }

  private keyOf(w: Watched): string {
    return `${w.pod.metadata?.namespace}/${w.pod.metadata?.name}`;
  }

  /**
   * The Kubernetes client resolveDispatch uses here: a token the pod holds is served again until
   * it is due (new ones land in `issued`), ConfigMap and Secret reads share a short cache.
   */
  private client(w: Watched, issued: Map<string, HeldToken>): CoreV1Api {
    const core = this.o.core;
    const token = async (call: TokenCall): Promise<AuthenticationV1TokenRequest> => {
      const spec = call.body.spec ?? {};
      const key = tokenKey(spec.audiences, spec.expirationSeconds);
      const held = issued.get(key) ?? w.tokens.get(key);
      const now = this.now();
      if (held && (this.dueAt(held) > now + 1000 || now + 100 < w.retryAt))
        return { spec, status: { token: held.token, expirationTimestamp: new Date(held.expiresAt) } };
      const reply = await core.createNamespacedServiceAccountToken(call);
      const seconds = reply.spec?.expirationSeconds ?? spec.expirationSeconds ?? DEFAULT_TOKEN_SECONDS;
      if (reply.status?.token)
        issued.set(key, heldToken(reply.status.token, reply.status.expirationTimestamp, seconds, now));
      return reply;
    };
    const read = (kind: 'configmap' | 'secret', call: ReadCall): Promise<unknown> => {
      const id = `${kind}/${call.namespace}/${call.name}`;
      const now = this.now();
      const hit = this.objects.get(id);
      // Half the sweep period: each sweep reads an object at most once for all the pods using it.
      if (hit && now - hit.at < (this.s.configRefreshSeconds * 1000) / 2) return hit.value;
      const value =
        kind === 'configmap' ? core.readNamespacedConfigMap(call) : core.readNamespacedSecret(call);
      this.objects.set(id, { at: now, value });
      value.catch(() => this.objects.get(id)?.value === value && this.objects.delete(id));
      return value;
    };
    return new Proxy(core, {
      get(target, prop, receiver) {
        if (prop === 'createNamespacedServiceAccountToken') return token;
        if (prop === 'readNamespacedConfigMap') return (c: ReadCall) => read('configmap', c);
        if (prop === 'readNamespacedSecret') return (c: ReadCall) => read('secret', c);
        const v: unknown = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }

  /** Re-reads the ConfigMap/Secret volumes of every pod that has them, a few pods at a time. */
  private async sweep(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const now = this.now();
      const period = this.s.configRefreshSeconds * 1000;
      for (const [id, e] of this.objects) if (now - e.at >= period) this.objects.delete(id);
      const todo = [...this.pods.values()].filter((w) => w.hasObjects);
      const worker = async () => {
        for (let w = todo.shift(); w; w = todo.shift()) if (!w.gone) await this.enqueue(w);
      };
      await Promise.all(Array.from({ length: SWEEP_CONCURRENCY }, worker));
    } finally {
      this.sweeping = false;
    }
  }
}
