import https from 'node:https';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Registry } from 'prom-client';
import { CELL_AGENT_API_VERSION, type HealthReply } from '../lib/cell-agent-api.ts';
import type { Logger } from '../lib/log.ts';
import { splitHostPort } from '../lib/listen-address.ts';
import { metricsHandler } from '../lib/metrics.ts';
import { attachUpgradeHandler } from './api-attach.ts';
import { execUpgradeHandler } from './api-exec.ts';
import { logRoutes } from './api-logs.ts';
import { podRoutes } from './api-pod.ts';
import { statsRoutes } from './api-stats.ts';
import { volumeRoutes } from './api-volumes.ts';
import type { Cell } from './cell.ts';
import type { TlsMaterial } from './config.ts';
import { statusBody } from '../lib/cell-agent-api.ts';
import { errorHandler } from './http-errors.ts';
import type { Runc } from './runc.ts';
import type { StatsCollector } from './stats.ts';

export interface ServerDeps {
  cell: Cell;
  runc: Runc;
  stats: StatsCollector;
  log: Logger;
  metrics: Registry;
  tls: TlsMaterial;
  maxStatusWaitSeconds: number;
}

/**
 * The agent's HTTPS server. TLS is mutual: a client without a certificate signed by the client CA
 * is refused during the handshake, before any request is read.
 */
export function createServer(deps: ServerDeps): https.Server {
  const app = express();
  app.disable('x-powered-by');
  app.get('/v1/healthz', (_req, res) => {
    const reply: HealthReply = { version: CELL_AGENT_API_VERSION };
    res.json(reply);
  });
  app.get('/metrics', metricsHandler(deps.metrics));
  app.use(podRoutes(deps.cell, deps.maxStatusWaitSeconds));
  app.use(logRoutes(deps.cell));
  app.use(statsRoutes(deps.cell, deps.stats));
  app.use(volumeRoutes(deps.cell));
  app.use((req, res) => {
    res.status(404).json(statusBody(404, 'NotFound', `no endpoint ${req.method} ${req.path}`));
  });
  app.use(errorHandler(deps.log));
  const server = https.createServer(
    { cert: deps.tls.cert, key: deps.tls.key, ca: deps.tls.ca, requestCert: true, rejectUnauthorized: true },
    app,
  );
  server.on(
    'upgrade',
    attachUpgradeHandler(
      deps.cell,
      deps.log,
      execUpgradeHandler(deps.cell, deps.runc, deps.log),
      deps.metrics,
    ),
  );
  server.on('tlsClientError', (err) => deps.log.info({ err: err.message }, 'TLS handshake refused'));
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0;
  return server;
}

/** Listens on "host:port" and resolves with the bound address. */
export function listen(server: https.Server, listenAddr: string): Promise<AddressInfo> {
  const { host, port } = splitHostPort(listenAddr);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server.address() as AddressInfo));
  });
}
