import { Readable } from 'node:stream';
import { createSecureContext, type SecureContext } from 'node:tls';
import { Agent, request, type Dispatcher } from 'undici';
import WebSocket from 'ws';
import {
  EXEC_PROTOCOLS,
  type ApiStatus,
  type HealthReply,
  type LogOptions,
  type PodStats,
  type PodStatusReply,
  type PutPodReply,
  type PutPodRequest,
  type PutVolumesReply,
  type PutVolumesRequest,
} from './cell-agent-api.ts';

/** The agent answered with an error; `status` is its Kubernetes Status body when it sent one. */
export class CellAgentError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly status?: ApiStatus,
  ) {
    super(message);
    this.name = 'CellAgentError';
  }
}

export interface CellAgentClientOptions {
  /** `https://<cell IP>:<port>` */
  baseUrl: string;
  /** PEM of the CA that signed the agent's certificate. */
  ca: string;
  /** The provider's client certificate and key (PEM), signed by the agent's client CA. */
  cert: string;
  key: string;
  /** Name to verify in the agent's certificate when it is not the host in baseUrl. */
  servername?: string;
  /** Connect and response-header timeout for ordinary calls (default 10 s). */
  timeoutMs?: number;
}

export interface ExecOptions {
  stdin?: boolean;
  stdout?: boolean;
  stderr?: boolean;
}

/** Which of a running container's streams an attach carries (stdin needs `stdin: true` in its spec). */
export type AttachOptions = ExecOptions;

/** The outcome of an exec: the Status from channel 3 and the exit code it carries. */
export interface ExecResult {
  exitCode: number;
  status: Record<string, unknown>;
}

/** A running exec: write stdin, read stdout/stderr, await `done`. */
export interface ExecSession {
  stdout: Readable;
  stderr: Readable;
  write(data: Buffer | string): void;
  /** Ends stdin (v5 protocol: a close frame for channel 0). */
  end(): void;
  resize(width: number, height: number): void;
  done: Promise<ExecResult>;
  close(): void;
}

/**
 * An attach to a running container: its output from the moment of attaching, stdin into the
 * container's. `done` resolves with a `Success` status when the container exits; `close()` detaches.
 */
export type AttachSession = ExecSession;

// The provider talks to every cell with the same CA and client certificate. Parsing those PEMs
// (the private key above all) for each cell's connections was a large part of the provider's CPU
// in a burst of pods, so one TLS context per set of credentials is shared by all clients.
const secureContexts = new Map<string, SecureContext>();
function sharedSecureContext(ca: string, cert: string, key: string): SecureContext {
  const id = `${ca}\0${cert}\0${key}`;
  let ctx = secureContexts.get(id);
  if (!ctx) {
    if (secureContexts.size >= 8) secureContexts.delete(secureContexts.keys().next().value!);
    ctx = createSecureContext({ ca, cert, key });
    secureContexts.set(id, ctx);
  }
  return ctx;
}

/**
 * Typed client of the cell agent's mutual-TLS API, used by the provider. One instance per cell;
 * `close()` releases its connections.
 */
export class CellAgentClient {
  private readonly agent: Agent;
  private readonly base: URL;
  private readonly secureContext: SecureContext;

  constructor(private readonly opts: CellAgentClientOptions) {
    this.base = new URL(opts.baseUrl);
    this.secureContext = sharedSecureContext(opts.ca, opts.cert, opts.key);
    this.agent = new Agent({
      connect: {
        secureContext: this.secureContext,
        servername: opts.servername,
        timeout: opts.timeoutMs ?? 10_000,
      },
      headersTimeout: opts.timeoutMs ?? 10_000,
    });
  }

  /** The reply body as text; a 4xx/5xx becomes a CellAgentError. */
  private async callText(
    method: Dispatcher.HttpMethod,
    path: string,
    body?: unknown,
    extra: { headersTimeout?: number; signal?: AbortSignal } = {},
  ): Promise<string> {
    const res = await request(new URL(path, this.base), {
      method,
      dispatcher: this.agent,
      headers: body !== undefined ? { 'content-type': 'application/json' } : {},
      body: body !== undefined ? JSON.stringify(body) : undefined,
      ...extra,
    });
    const text = await res.body.text();
    if (res.statusCode >= 400) throw errorFrom(res.statusCode, text);
    return text;
  }

  private async call<T>(...args: Parameters<CellAgentClient['callText']>): Promise<T> {
    return JSON.parse(await this.callText(...args)) as T;
  }

  healthz(): Promise<HealthReply> {
    return this.call('GET', '/v1/healthz');
  }

  /** Sends the pod (202). The same UID again is a no-op; another UID while one runs is a 409 CellAgentError. */
  putPod(req: PutPodRequest): Promise<PutPodReply> {
    return this.call('PUT', '/v1/pod', req);
  }

  /**
   * Replaces the files of the running pod's configMap, secret, projected or downwardAPI volumes,
   * atomically per volume (service account token rotation, ConfigMap and Secret updates). A
   * CellAgentError 409 when `uid` is not the running pod, 400 naming a volume that is not one of
   * those, 404 before any pod.
   */
  putVolumes(req: PutVolumesRequest): Promise<PutVolumesReply> {
    return this.call('PUT', '/v1/pod/volumes', req);
  }

  /**
   * The pod status. With `after` (the last version seen) and `wait` (seconds), the agent holds the
   * request until the status changes or the wait runs out: a long-poll, not tight polling.
   */
  getStatus(opts: { after?: number; wait?: number; signal?: AbortSignal } = {}): Promise<PodStatusReply> {
    const q = new URLSearchParams();
    if (opts.after !== undefined) q.set('after', String(opts.after));
    if (opts.wait !== undefined) q.set('wait', String(opts.wait));
    return this.call('GET', `/v1/pod/status?${q}`, undefined, {
      headersTimeout: ((opts.wait ?? 0) + 10) * 1000,
      signal: opts.signal,
    });
  }

  /** Stops the pod: SIGTERM now, SIGKILL after the grace period (default the pod's). */
  deletePod(gracePeriodSeconds?: number): Promise<PodStatusReply> {
    const q = gracePeriodSeconds !== undefined ? `?gracePeriodSeconds=${gracePeriodSeconds}` : '';
    return this.call('DELETE', `/v1/pod${q}`);
  }

  /** The agent's Prometheus metrics, in the text exposition format. */
  metricsText(): Promise<string> {
    return this.callText('GET', '/metrics');
  }

  stats(): Promise<PodStats> {
    return this.call('GET', '/v1/stats/summary');
  }

  /** A container's log as a byte stream; with `follow` it stays open while the container runs. */
  async logs(container: string, opts: LogOptions = {}, signal?: AbortSignal): Promise<Readable> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts)) if (v !== undefined) q.set(k, String(v));
    const res = await request(
      new URL(`/v1/pod/containers/${encodeURIComponent(container)}/logs?${q}`, this.base),
      {
        method: 'GET',
        dispatcher: this.agent,
        bodyTimeout: 0,
        signal,
      },
    );
    if (res.statusCode >= 400) throw errorFrom(res.statusCode, await res.body.text());
    return res.body as unknown as Readable;
  }

  /** Runs a command in a container over the WebSocket channel protocol (v5, else v4). */
  exec(
    container: string,
    command: string[],
    opts: ExecOptions = { stdout: true, stderr: true },
  ): ExecSession {
    const q = new URLSearchParams();
    for (const c of command) q.append('command', c);
    for (const k of ['stdin', 'stdout', 'stderr'] as const) if (opts[k]) q.set(k, '1');
    return this.channelSession(`/v1/pod/containers/${encodeURIComponent(container)}/exec?${q}`, 'exec');
  }

  /**
   * Attaches to a container's running instance over the same channel protocol as exec. A 400
   * CellAgentError (in `done`) when the container is not running, or stdin is asked of a container
   * without `stdin: true`.
   */
  attach(container: string, opts: AttachOptions = { stdout: true, stderr: true }): AttachSession {
    const q = new URLSearchParams();
    for (const k of ['stdin', 'stdout', 'stderr'] as const) if (opts[k]) q.set(k, '1');
    return this.channelSession(`/v1/pod/containers/${encodeURIComponent(container)}/attach?${q}`, 'attach');
  }

  /** A WebSocket session on `path` speaking the Kubernetes channel protocol (v5, else v4). */
  private channelSession(path: string, what: string): ExecSession {
    const url = new URL(path, this.base);
    url.protocol = 'wss:';
    const ws = new WebSocket(url, [...EXEC_PROTOCOLS], {
      secureContext: this.secureContext,
      ...(this.opts.servername ? { servername: this.opts.servername } : {}),
    } as WebSocket.ClientOptions);
    const stdout = new Readable({ read() {} });
    const stderr = new Readable({ read() {} });
    const pending: Buffer[] = [];
    const sendFrame = (frame: Buffer) =>
      ws.readyState === WebSocket.OPEN ? ws.send(frame) : pending.push(frame);
    ws.on('open', () => pending.splice(0).forEach((f) => ws.send(f)));
    let status: Record<string, unknown> | undefined;
    const done = new Promise<ExecResult>((resolve, reject) => {
      ws.on('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => reject(errorFrom(res.statusCode ?? 0, text)));
      });
      ws.on('message', (data: Buffer) => {
        const ch = data[0];
        const payload = data.subarray(1);
        if (ch === 1) stdout.push(payload);
        else if (ch === 2) stderr.push(payload);
        else if (ch === 3) status = JSON.parse(payload.toString()) as Record<string, unknown>;
      });
      ws.on('error', reject);
      ws.on('close', () => {
        stdout.push(null);
        stderr.push(null);
        if (!status) return reject(new CellAgentError(0, `${what} stream closed without a status`));
        resolve({ exitCode: exitCodeOf(status), status });
      });
    });
    done.catch(() => undefined);
    return {
      stdout,
      stderr,
      done,
      write: (data) => sendFrame(Buffer.concat([Buffer.from([0]), Buffer.from(data)])),
      end: () => sendFrame(Buffer.from([255, 0])),
      resize: (width, height) =>
        sendFrame(
          Buffer.concat([Buffer.from([4]), Buffer.from(JSON.stringify({ Width: width, Height: height }))]),
        ),
      close: () => ws.close(),
    };
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

function exitCodeOf(status: Record<string, unknown>): number {
  if (status.status === 'Success') return 0;
  const causes =
    (status.details as { causes?: { reason?: string; message?: string }[] } | undefined)?.causes ?? [];
  const c = causes.find((x) => x.reason === 'ExitCode');
  return c?.message !== undefined ? Number(c.message) : 1;
}

function errorFrom(code: number, text: string): CellAgentError {
  try {
    const s = JSON.parse(text) as ApiStatus;
    if (s.kind === 'Status') return new CellAgentError(code, s.message, s);
  } catch {
    // not a Status body
  }
  return new CellAgentError(code, `cell agent answered ${code}: ${text.slice(0, 200)}`);
}
