/**
 * `pods/exec`, `pods/attach` and `pods/portforward`: the client's upgrade request (WebSocket or
 * SPDY, whichever kubectl tries) is replayed to the node's kubelet over TLS at
 * `/exec|attach/<ns>/<pod>/<container>` or `/portForward/<ns>/<pod>` with the query kept, and the
 * two connections are then spliced, as the real API server's upgrade-aware proxy does. The
 * kubelet's answer (101, or an error kubectl falls back from) reaches the client unchanged.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { ApiError } from './api-errors.ts';
import { badRequest, internalError } from './api-errors.ts';
import type { KObject } from './object.ts';
import { kubeletBase, requestedContainer } from './pod-log.ts';

export const STREAM_SUBRESOURCES = ['exec', 'attach', 'portforward'];

/** The kubelet URL for an exec/attach/portforward request on `pod`. */
export function kubeletStreamUrl(
  sub: string,
  pod: KObject,
  node: KObject | undefined,
  query: URLSearchParams,
): URL {
  const name = pod.metadata.name!;
  const base = kubeletBase(pod, node);
  if (sub === 'portforward') {
    base.pathname = `/portForward/${pod.metadata.namespace}/${name}`;
  } else {
    const container = requestedContainer(pod, query, false);
    if (sub === 'exec' && query.getAll('command').length === 0)
      throw badRequest('you must specify at least 1 command');
    base.pathname = `/${sub}/${pod.metadata.namespace}/${name}/${container}`;
  }
  for (const [k, v] of query) if (k !== 'container') base.searchParams.append(k, v);
  return base;
}

/** Writes a Status error as a plain HTTP response on a socket that has not been upgraded. */
export function rejectUpgrade(socket: Duplex, err: ApiError): void {
  const body = JSON.stringify(err.toStatus());
  const reason =
    { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed' }[err.code] ??
    'Internal Server Error';
  socket.end(
    `HTTP/1.1 ${err.code} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** Replays the upgrade request to the kubelet and splices the connections. */
export function proxyUpgrade(target: URL, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const upstream = tls.connect({
    host: target.hostname.replace(/^\[|\]$/g, ''),
    port: Number(target.port),
    rejectUnauthorized: false,
    ALPNProtocols: ['http/1.1'],
  });
  let spliced = false;
  upstream.setTimeout(10_000, () => upstream.destroy(new Error('timeout connecting to the kubelet')));
  upstream.once('secureConnect', () => {
    upstream.setTimeout(0);
    const lines = [`${req.method} ${target.pathname}${target.search} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      const k = req.rawHeaders[i]!;
      if (/^(host|authorization)$/i.test(k)) continue;
      lines.push(`${k}: ${req.rawHeaders[i + 1]}`);
    }
    lines.push(`Host: ${target.host}`);
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length) upstream.write(head);
    spliced = true;
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  upstream.on('error', (e) => {
    if (!spliced) rejectUpgrade(socket, internalError(`error dialing backend: ${e.message}`));
    else socket.destroy();
  });
  socket.on('error', () => upstream.destroy());
  socket.on('close', () => upstream.destroy());
  upstream.on('close', () => {
    if (spliced) socket.end();
  });
}
