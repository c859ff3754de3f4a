/**
 * The cell simulator: one process serving the real cell agent API (lib/cell-agent-api.ts) over
 * mutual TLS for every cell of a Compute Engine emulator running the `none` hypervisor. Each
 * cell is told apart by the TLS server name the provider sends (the cell's VM name); its
 * certificate, client CA and address come from the instance's `kip-cell-agent-config` metadata,
 * read through the emulator's admin endpoint (not counted as Compute API calls). Pods turn
 * Running without containers, so a benchmark measures the provider's own cost.
 */
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, type Registry } from 'prom-client';
import { parse } from 'yaml';
import type { PutPodRequest } from '../../lib/cell-agent-api.ts';
import { CELL_AGENT_API_VERSION, HttpError, statusBody } from '../../lib/cell-agent-api.ts';
import type { Logger } from '../../lib/log.ts';
import { splitHostPort } from '../../lib/listen-address.ts';
import { createMetricsRegistry } from '../../lib/metrics.ts';
import { SimulatedPod } from './cell-state.ts';

export const CELL_CONFIG_METADATA_KEY = 'kip-cell-agent-config';

export interface CellSimulatorOptions {
  /** `host:port`; port 0 picks a free one. */
  listen: string;
  /** The Compute Engine emulator's admin base URL (`http://127.0.0.1:PORT/admin`). */
  computeAdmin: string;
  /** Zones to look a cell up in. */
  zones: string[];
  log: Logger;
  /** PUT → Running (default 0). */
  startDelayMs?: number;
  /** Upper bound of a status long-poll (default 300 s, as the agent). */
  maxWaitSeconds?: number;
}

interface SimCell {
  name: string;
  podIP: string;
  context: SecureContext;
  clientCa: X509Certificate;
  pod?: SimulatedPod;
}

export interface CellSimulator {
  host: string;
  port: number;
  registry: Registry;
  /** Cells seen so far. */
  cellCount(): number;
  close(): Promise<void>;
}

interface CellConfig {
  podIP?: string;
  tls?: { certPem?: string; keyPem?: string; clientCaPem?: string };
}

export async function startCellSimulator(opts: CellSimulatorOptions): Promise<CellSimulator> {
  const cells = new Map<string, SimCell>();
  const lookups = new Map<string, Promise<SimCell | undefined>>();
  const registry = createMetricsRegistry('kip_cell_sim');
  const requests = new Counter({
    name: 'kip_cell_sim_requests_total',
    help: 'Agent API requests by route and status code',
    labelNames: ['route', 'code'],
    registers: [registry],
  });
  new Gauge({
    name: 'kip_cell_sim_cells',
    help: 'Cells known to the simulator',
    registers: [registry],
    collect() {
      this.set(cells.size);
    },
  });
  const maxWait = opts.maxWaitSeconds ?? 300;

  async function lookup(name: string): Promise<SimCell | undefined> {
    for (const zone of opts.zones) {
      const res = await fetch(`${opts.computeAdmin}/instances/${zone}/${encodeURIComponent(name)}`);
      if (res.status === 404) {
        await res.arrayBuffer();
        continue;
      }
      if (!res.ok) throw new Error(`admin instance ${zone}/${name}: ${res.status} ${await res.text()}`);
      const body = (await res.json()) as {
        instance: {
          status: string;
          metadata?: { items?: { key: string; value: string }[] };
          networkInterfaces?: { networkIP?: string }[];
        };
      };
      const item = body.instance.metadata?.items?.find((i) => i.key === CELL_CONFIG_METADATA_KEY);
      if (!item) return undefined;
      const cfg = parse(item.value) as CellConfig;
      const tls = cfg.tls ?? {};
      if (!tls.certPem || !tls.keyPem || !tls.clientCaPem) return undefined;
      const cell: SimCell = {
        name,
        podIP: cfg.podIP ?? body.instance.networkInterfaces?.[0]?.networkIP ?? '',
        context: createSecureContext({ cert: tls.certPem, key: tls.keyPem, ca: tls.clientCaPem }),
        clientCa: new X509Certificate(tls.clientCaPem),
      };
      cells.set(name, cell);
      return cell;
    }
    return undefined;
  }

  function cellFor(name: string): Promise<SimCell | undefined> {
    const known = cells.get(name);
    if (known) return Promise.resolve(known);
    let p = lookups.get(name);
    if (!p) {
      p = lookup(name).finally(() => lookups.delete(name));
      lookups.set(name, p);
    }
    return p;
  }

  function send(res: ServerResponse, route: string, code: number, body: unknown): void {
    sendText(res, route, code, 'application/json', JSON.stringify(body));
  }

  function sendText(res: ServerResponse, route: string, code: number, type: string, text: string): void {
    requests.inc({ route, code: String(code) });
    res.writeHead(code, { 'content-type': type });
    res.end(text);
  }

  function podOf(cell: SimCell): SimulatedPod {
    if (!cell.pod) throw new HttpError(404, 'NotFound', 'no pod on this cell');
    return cell.pod;
  }

  function fail(res: ServerResponse, route: string, e: HttpError): void {
    send(res, route, e.code, statusBody(e.code, e.reason, e.message, e.field));
  }

  async function body(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      throw new HttpError(400, 'BadRequest', 'request body is not JSON');
    }
  }

  /** The caller must present a client certificate issued by the cell's client CA. */
  function authenticate(sock: TLSSocket, cell: SimCell): void {
    const peer = sock.getPeerX509Certificate();
    const now = Date.now();
    if (
      !peer ||
      !peer.checkIssued(cell.clientCa) ||
      !peer.verify(cell.clientCa.publicKey) ||
      Date.parse(peer.validFrom) > now ||
      Date.parse(peer.validTo) < now
    )
      throw new HttpError(401, 'BadRequest', 'a client certificate from the cell client CA is required');
  }

  async function handle(req: IncomingMessage, res: ServerResponse, route: { name: string }): Promise<void> {
    const sock = req.socket as TLSSocket;
    const name = (sock as TLSSocket & { servername?: string }).servername || '';
    const cell = cells.get(name);
    if (!cell) throw new HttpError(404, 'NotFound', `no cell named "${name}"`);
    authenticate(sock, cell);
    const url = new URL(req.url ?? '/', 'https://cell');
    const p = url.pathname;
    const m = req.method ?? 'GET';
    if (m === 'GET' && p === '/v1/healthz') {
      route.name = 'healthz';
      return send(res, route.name, 200, { version: CELL_AGENT_API_VERSION });
    }
    if (p === '/v1/pod' && m === 'PUT') {
      route.name = 'put_pod';
      const r = (await body(req)) as PutPodRequest;
      const uid = r?.pod?.metadata?.uid;
      if (!uid) throw new HttpError(400, 'Invalid', 'pod.metadata.uid is required', 'pod.metadata.uid');
      if (!Array.isArray(r.pod.spec?.containers) || r.pod.spec.containers.length === 0)
        throw new HttpError(400, 'Invalid', 'pod.spec.containers must not be empty', 'pod.spec.containers');
      if (cell.pod && cell.pod.status.uid === uid)
        return send(res, route.name, 202, { uid, unchanged: true });
      if (cell.pod && !['Succeeded', 'Failed'].includes(cell.pod.status.phase))
        throw new HttpError(409, 'Conflict', `pod ${cell.pod.status.uid} is running on this cell`);
      cell.pod?.close();
      cell.pod = new SimulatedPod(r.pod, cell.podIP, opts.startDelayMs ?? 0);
      return send(res, route.name, 202, { uid, unchanged: false });
    }
    if (p === '/v1/pod/status' && m === 'GET') {
      route.name = 'status';
      const after = Number(url.searchParams.get('after') ?? '-1');
      const wait = Math.min(Number(url.searchParams.get('wait') ?? '0'), maxWait);
      if (!Number.isFinite(after)) throw new HttpError(400, 'BadRequest', 'after must be a number', 'after');
      if (!Number.isFinite(wait) || wait < 0)
        throw new HttpError(400, 'BadRequest', 'wait must be >= 0', 'wait');
      const pod = podOf(cell);
      const ac = new AbortController();
      res.once('close', () => ac.abort());
      await pod.waitAfter(after, wait * 1000, ac.signal);
      return send(res, route.name, 200, pod.status);
    }
    if (p === '/v1/pod' && m === 'DELETE') {
      route.name = 'delete_pod';
      const pod = podOf(cell);
      pod.delete();
      return send(res, route.name, 202, pod.status);
    }
    if (p === '/v1/stats/summary' && m === 'GET') {
      route.name = 'stats';
      const pod = podOf(cell);
      const time = new Date().toISOString();
      const cpu = { time, usageNanoCores: 0, usageCoreNanoSeconds: 0 };
      const memory = {
        time,
        usageBytes: 0,
        workingSetBytes: 0,
        rssBytes: 0,
        pageFaults: 0,
        majorPageFaults: 0,
      };
      const meta = pod.pod.metadata!;
      return send(res, route.name, 200, {
        podRef: { name: meta.name, namespace: meta.namespace, uid: meta.uid },
        startTime: pod.status.startTime,
        containers: (pod.pod.spec?.containers ?? []).map((c) => ({
          name: c.name,
          startTime: pod.status.startTime,
          cpu,
          memory,
        })),
        cpu,
        memory,
      });
    }
    const logs = /^\/v1\/pod\/containers\/([^/]+)\/logs$/.exec(p);
    if (logs && m === 'GET') {
      route.name = 'logs';
      podOf(cell);
      return sendText(res, route.name, 200, 'text/plain', '');
    }
    if (p === '/metrics' && m === 'GET') {
      route.name = 'metrics';
      return sendText(res, route.name, 200, 'text/plain; version=0.0.4', '');
    }
    throw new HttpError(404, 'NotFound', `${m} ${p} is not served`);
  }

  const server: Server = createServer(
    {
      requestCert: true,
      // Verified per cell in authenticate(): each cell names its own client CA.
      rejectUnauthorized: false,
      SNICallback: (servername, cb) => {
        cellFor(servername).then(
          (cell) => (cell ? cb(null, cell.context) : cb(new Error(`no cell named "${servername}"`))),
          (err: unknown) => cb(err as Error),
        );
      },
    },
    (req, res) => {
      const route = { name: 'unknown' };
      handle(req, res, route).catch((e: unknown) => {
        if (res.headersSent) return res.destroy();
        if (e instanceof HttpError) return fail(res, route.name, e);
        opts.log.error({ err: (e as Error).message, url: req.url }, 'request failed');
        fail(res, route.name, new HttpError(500, 'InternalError', (e as Error).message));
      });
    },
  );
  server.on('tlsClientError', (err) => opts.log.debug({ err: err.message }, 'TLS handshake failed'));
  server.keepAliveTimeout = 60_000;
  const listenAt = splitHostPort(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenAt.port, listenAt.host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    host: listenAt.host,
    port,
    registry,
    cellCount: () => cells.size,
    async close() {
      for (const c of cells.values()) c.pod?.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
