/**
 * `pods/log`: proxied to the kubelet of the pod's node, at
 * `https://<node address>:<status.daemonEndpoints.kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<container>`
 * with the client's query passed through, and streamed back (follow included). The kubelet's
 * certificate is not verified, like an API server started without a kubelet CA.
 */
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, badRequest, internalError, notFound } from './api-errors.ts';
import { getPath, type KObject } from './object.ts';

const ADDRESS_PREFERENCE = ['InternalIP', 'ExternalIP', 'Hostname', 'InternalDNS', 'ExternalDNS'];
const INTEGER_PARAMS = ['tailLines', 'sinceSeconds', 'limitBytes'];

/** Where the kubelet serving this pod's logs listens, or a 400 naming what is missing. */
export function kubeletLogUrl(pod: KObject, node: KObject | undefined, query: URLSearchParams): URL {
  const container = requestedContainer(pod, query, true);
  for (const p of INTEGER_PARAMS) {
    const v = query.get(p);
    if (v !== null && !/^-?\d+$/.test(v)) throw badRequest(`${p}: Invalid value: "${v}": must be an integer`);
  }
  const url = kubeletBase(pod, node);
  url.pathname = `/containerLogs/${pod.metadata.namespace}/${pod.metadata.name}/${container}`;
  for (const [k, v] of query) if (k !== 'container') url.searchParams.append(k, v);
  return url;
}

/**
 * The container a request names (`?container=`), or the pod's only one; a 400 otherwise. Init
 * containers count only where `withInits` (logs, not exec or attach).
 */
export function requestedContainer(pod: KObject, query: URLSearchParams, withInits: boolean): string {
  const name = pod.metadata.name!;
  const names = (path: string) => ((getPath(pod, path) ?? []) as { name: string }[]).map((c) => c.name);
  const containers = names('spec.containers');
  const inits = withInits ? names('spec.initContainers') : [];
  const container = query.get('container');
  if (!container) {
    if (containers.length !== 1) {
      throw badRequest(
        `a container name must be specified for pod ${name}, choose one of: [${containers.join(' ')}]${inits.length ? ` or one of the init containers: [${inits.join(' ')}]` : ''}`,
      );
    }
    return containers[0]!;
  }
  if (!containers.includes(container) && !inits.includes(container))
    throw badRequest(`container ${container} is not valid for pod ${name}`);
  return container;
}

/** `https://<node address>:<kubelet port>` for the node `pod` is bound to, or a 4xx naming what is missing. */
export function kubeletBase(pod: KObject, node: KObject | undefined): URL {
  const name = pod.metadata.name!;
  const nodeName = getPath(pod, 'spec.nodeName') as string | undefined;
  if (!nodeName) throw badRequest(`pod ${name} does not have a host assigned`);
  if (!node) throw notFound('nodes', '', nodeName);
  const addrs = (getPath(node, 'status.addresses') ?? []) as { type?: string; address?: string }[];
  let host: string | undefined;
  for (const t of ADDRESS_PREFERENCE) {
    host = addrs.find((a) => a.type === t && a.address)?.address;
    if (host) break;
  }
  if (!host) throw badRequest(`node ${nodeName} has no address the API server can reach`);
  const port = Number(getPath(node, 'status.daemonEndpoints.kubeletEndpoint.Port') ?? 10250);
  return new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`);
}

/** Streams the kubelet's answer to the client; kubelet errors come back as Status bodies. */
export function proxyLogs(
  target: URL,
  req: IncomingMessage,
  res: ServerResponse,
  onError: (err: ApiError) => void,
): void {
  const upstream = https.get(target, { rejectUnauthorized: false, timeout: 10_000 }, (up) => {
    if (up.statusCode !== 200) {
      let body = '';
      up.setEncoding('utf8');
      up.on('data', (d: string) => (body = (body + d).slice(0, 4096)));
      up.on('end', () => {
        const code = up.statusCode ?? 500;
        const reason =
          code === 404
            ? 'NotFound'
            : code === 400
              ? 'BadRequest'
              : code === 403
                ? 'Forbidden'
                : 'InternalError';
        onError(new ApiError(code, reason, body.trim() || `the kubelet answered ${code}`));
      });
      return;
    }
    upstream.setTimeout(0);
    res.writeHead(200, {
      'Content-Type': up.headers['content-type'] ?? 'text/plain',
      'Cache-Control': 'no-cache, private',
    });
    res.flushHeaders();
    up.pipe(res);
  });
  upstream.on('timeout', () =>
    upstream.destroy(new Error(`Get "${target.href}": timeout awaiting response headers`)),
  );
  upstream.on('error', (e) => {
    if (!res.headersSent) onError(internalError(`Get "${target.href}": ${e.message}`));
    else res.destroy();
  });
  const abort = () => {
    if (!res.writableFinished) upstream.destroy();
  };
  req.on('close', abort);
  res.on('close', abort);
}
