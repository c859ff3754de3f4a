import { once } from 'node:events';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { Counter } from 'prom-client';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Logger } from '../../lib/log.ts';
import { splitHostPort } from '../../lib/listen-address.ts';
import { prepareAttach } from './attach.ts';
import { AuthError, type KubeletAuth } from './auth.ts';
import { serveContainerLogs } from './container-logs.ts';
import { prepareExec } from './exec.ts';
import { serveHealthz } from './healthz.ts';
import { serveResourceMetrics } from './metrics-resource.ts';
import { servePods } from './pods.ts';
import { serveStatsSummary } from './stats.ts';
import { pickSpdyProtocol, runSpdySession } from './spdy-session.ts';
import { pickSubprotocol, runSession } from './stream-protocol.ts';
import {
  InvalidInputError,
  NotFoundError,
  type ContainerRef,
  type KubeletApiHandlers,
  type SessionStreams,
} from './types.ts';

export interface KubeletApiServerOptions {
  /** `host:port`; port 0 picks a free one. */
  listen: string;
  /** The serving certificate, and the CA whose client certificates authenticate callers. */
  tls: { certPem: string; keyPem: string; clientCAPem?: string };
  /** Authentication and authorization; null serves everyone (the lab's `authentication: none`). */
  auth: KubeletAuth | null;
  handlers: KubeletApiHandlers;
  log: Logger;
  /** Requests by route and code. */
  requests?: Counter<'route' | 'code'>;
}

export interface KubeletApiServer {
  port: number;
  host: string;
  /** Stops accepting, ends open sessions and closes. */
  close(): Promise<void>;
}

type Route =
  | { name: 'healthz' }
  | { name: 'pods' }
  | { name: 'stats' }
  | { name: 'metrics-resource' }
  | { name: 'containerLogs'; target: ContainerRef }
  | { name: 'exec' | 'attach'; target: ContainerRef };

/** Matches a kubelet API path; null when it is not one this server has. */
export function matchRoute(path: string): Route | null {
  const p = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  if (p === '/healthz') return { name: 'healthz' };
  if (p === '/pods') return { name: 'pods' };
  if (p === '/stats/summary') return { name: 'stats' };
  if (p === '/metrics/resource') return { name: 'metrics-resource' };
  let parts: string[];
  try {
    parts = p.split('/').slice(1).map(decodeURIComponent);
  } catch {
    return null;
  }
  if (parts.some((s) => s === '')) return null;
  const [kind, namespace, pod] = parts;
  if (kind === 'containerLogs' && parts.length === 4) {
    return { name: 'containerLogs', target: { namespace: namespace!, pod: pod!, container: parts[3]! } };
  }
  if ((kind === 'exec' || kind === 'attach') && (parts.length === 4 || parts.length === 5)) {
    const target: ContainerRef =
      parts.length === 4
        ? { namespace: namespace!, pod: pod!, container: parts[3]! }
        : { namespace: namespace!, pod: pod!, podUid: parts[3]!, container: parts[4]! };
    return { name: kind, target };
  }
  return null;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function statusOf(err: unknown): number {
  if (err instanceof HttpError || err instanceof AuthError) return err.status;
  if (err instanceof NotFoundError) return 404;
  if (err instanceof InvalidInputError) return 400;
  return 500;
}

/**
 * The kubelet API on HTTPS: every request but /healthz is authenticated (client certificate or
 * bearer token) and authorized on the node before its route's handler runs. exec and attach are
 * WebSocket upgrades speaking the Kubernetes channel protocol.
 */
export async function startKubeletApiServer(opts: KubeletApiServerOptions): Promise<KubeletApiServer> {
  const { handlers, log } = opts;
  const sessions = new Set<WebSocket>();
  const spdySockets = new Set<Socket>();
  const wss = new WebSocketServer({
    noServer: true,
    handleProtocols: (offered) => pickSubprotocol(offered) ?? false,
  });

  const count = (route: string, code: number) => opts.requests?.inc({ route, code: String(code) });
  const missing = (what: string) => new HttpError(501, `${what} is not implemented on this node`);

  async function check(req: IncomingMessage, path: string): Promise<void> {
    if (opts.auth) await opts.auth.check(req, path);
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://kubelet');
    const route = matchRoute(url.pathname);
    const name = route?.name ?? 'unknown';
    try {
      if (route?.name === 'healthz') {
        serveHealthz(res);
        count(name, 200);
        return;
      }
      await check(req, url.pathname);
      if (!route) throw new HttpError(404, `404 page not found: ${url.pathname}`);
      if (req.method !== 'GET' && req.method !== 'HEAD' && route.name !== 'exec' && route.name !== 'attach') {
        throw new HttpError(405, `method ${req.method} is not allowed on ${url.pathname}`);
      }
      const abort = new AbortController();
      res.once('close', () => abort.abort());
      switch (route.name) {
        case 'pods':
          if (!handlers.pods) throw missing('/pods');
          await servePods(handlers.pods, res);
          break;
        case 'stats':
          if (!handlers.stats) throw missing('/stats/summary');
          await serveStatsSummary(handlers.stats, url.searchParams, abort.signal, res);
          break;
        case 'metrics-resource':
          if (!handlers.stats) throw missing('/metrics/resource');
          await serveResourceMetrics(handlers.stats, abort.signal, res);
          break;
        case 'containerLogs':
          if (!handlers.containerLogs) throw missing('/containerLogs');
          await serveContainerLogs(handlers.containerLogs, route.target, url.searchParams, res);
          break;
        case 'exec':
        case 'attach':
          throw new HttpError(
            400,
            `${route.name} needs an upgrade to WebSocket (v5.channel.k8s.io, v4.channel.k8s.io) or SPDY/3.1`,
          );
      }
      count(name, res.statusCode);
    } catch (err) {
      const status = statusOf(err);
      count(name, status);
      if (status >= 500 && status !== 501)
        log.error({ err, path: url.pathname }, 'kubelet API request failed');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      res.writeHead(status, {
        'Content-Type': 'text/plain; charset=utf-8',
        'X-Content-Type-Options': 'nosniff',
      });
      res.end(`${(err as Error).message}\n`);
    }
  }

  function refuseUpgrade(socket: Socket, status: number, message: string): void {
    const reason = STATUS_CODES[status] ?? 'Error';
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(message) + 1}\r\nConnection: close\r\n\r\n${message}\n`,
    );
  }

  async function onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://kubelet');
    const route = matchRoute(url.pathname);
    const name = route?.name ?? 'unknown';
    socket.on('error', () => {});
    try {
      await check(req, url.pathname);
      if (!route || (route.name !== 'exec' && route.name !== 'attach')) {
        throw new HttpError(404, `404 page not found: ${url.pathname}`);
      }
      const upgrade = (req.headers.upgrade ?? '').toLowerCase();
      if (upgrade !== 'websocket' && upgrade !== 'spdy/3.1') {
        throw new HttpError(400, `unsupported upgrade "${req.headers.upgrade}": use WebSocket or SPDY/3.1`);
      }
      const handler = route.name === 'exec' ? handlers.exec : handlers.attach;
      if (!handler) throw missing(`/${route.name}`);
      const { command, opts } =
        route.name === 'exec' ? prepareExec(url.searchParams) : prepareAttach(url.searchParams);
      const target = route.target;
      const session = (streams: SessionStreams) =>
        route.name === 'exec'
          ? handlers.exec!.exec(target, command, opts, streams)
          : handlers.attach!.attach(target, opts, streams);
      let run: Promise<void>;
      if (upgrade === 'spdy/3.1') {
        const protocol = pickSpdyProtocol(req);
        count(name, 101);
        spdySockets.add(socket);
        socket.once('close', () => spdySockets.delete(socket));
        run = runSpdySession(socket, head, protocol, opts, command, session);
      } else {
        const offered = new Set(
          (req.headers['sec-websocket-protocol'] ?? '')
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        );
        if (!pickSubprotocol(offered)) {
          throw new HttpError(
            400,
            `no supported WebSocket subprotocol offered; use v5.channel.k8s.io or v4.channel.k8s.io`,
          );
        }
        const ws = await new Promise<WebSocket>((resolve) => wss.handleUpgrade(req, socket, head, resolve));
        count(name, 101);
        sessions.add(ws);
        ws.once('close', () => sessions.delete(ws));
        run = runSession(ws, opts, command, session);
      }
      await run.catch((err: unknown) => log.error({ err, path: url.pathname }, 'session failed'));
    } catch (err) {
      const status = statusOf(err);
      count(name, status);
      if (status >= 500 && status !== 501)
        log.error({ err, path: url.pathname }, 'kubelet API upgrade failed');
      refuseUpgrade(socket, status, (err as Error).message);
    }
  }

  const server: Server = createServer(
    {
      cert: opts.tls.certPem,
      key: opts.tls.keyPem,
      ca: opts.tls.clientCAPem,
      // Ask for a certificate but accept requests without one: those authenticate by token.
      requestCert: Boolean(opts.tls.clientCAPem),
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    },
    (req, res) => void onRequest(req, res),
  );
  server.on(
    'upgrade',
    (req: IncomingMessage, socket: Socket, head: Buffer) => void onUpgrade(req, socket, head),
  );
  server.on('tlsClientError', (err) => log.debug({ err: err.message }, 'TLS handshake failed'));

  const { host, port: wanted } = splitHostPort(opts.listen);
  server.listen(wanted, host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  log.info({ host, port }, 'kubelet API listening');

  return {
    port,
    host,
    async close() {
      for (const ws of sessions) ws.terminate();
      for (const s of spdySockets) s.destroy();
      const closed = new Promise((r) => server.close(r));
      server.closeAllConnections();
      await closed;
      wss.close();
    },
  };
}
