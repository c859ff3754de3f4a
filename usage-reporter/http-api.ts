import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../lib/log.ts';
import { metricsHandler } from '../lib/metrics.ts';
import { UnavailableError, type Pipeline } from './pipeline.ts';
import { ReportError } from './report.ts';

export interface HttpApiOptions {
  pipeline: Pipeline;
  registry: Registry;
  log: Logger;
  port: number;
}

/**
 * ubbagent's local API: `POST /report`, `GET /status`, plus `/metrics` and `/healthz`. Refused
 * reports answer 400 with `{"error": "<message naming the field>"}` (ubbagent answers 500).
 */
export async function startHttpApi(opts: HttpApiOptions): Promise<{ server: Server; port: number }> {
  const { pipeline, log } = opts;
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json({ limit: '64kb', strict: false, type: () => true }));

  app.post('/report', async (req, res) => {
    try {
      await pipeline.accept(req.body);
      res.json({});
    } catch (e) {
      if (e instanceof ReportError) {
        log.debug({ err: e.message }, 'report refused');
        res.status(400).json({ error: e.message });
      } else if (e instanceof UnavailableError) {
        res.status(503).json({ error: e.message });
      } else {
        log.error({ err: e }, 'report failed');
        res.status(500).json({ error: (e as Error).message });
      }
    }
  });
  app.get('/status', (_req, res) => {
    res.json(pipeline.status());
  });
  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/metrics', metricsHandler(opts.registry));
  app.use((_req, res) => {
    res.status(404).json({ error: 'no such path; the API is POST /report and GET /status' });
  });
  app.use(
    (err: Error & { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
      const status = err.status && err.status >= 400 && err.status < 500 ? err.status : 500;
      const message =
        err.type === 'entity.parse.failed' ? `body is not valid JSON: ${err.message}` : err.message;
      res.status(status).json({ error: message });
    },
  );

  const server: Server = await new Promise((resolve, reject) => {
    // Loopback only: only containers in the same pod may report usage.
    const s = app.listen(opts.port, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  server.keepAliveTimeout = 30_000;
  return { server, port: (server.address() as AddressInfo).port };
}
