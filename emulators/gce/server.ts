import express, { type NextFunction, type Request, type Response } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../../lib/log.ts';
import { metricsHandler } from '../../lib/metrics.ts';
import { ApiRouter } from './api-router.ts';
import { CallStats, instanceStatusGauge } from './call-stats.ts';
import { GceError, parseError } from './errors.ts';
import { RequestGate } from './request-gate.ts';
import { adminRoutes, statusCounts } from './routes/admin.ts';
import { catalogRoutes, stableId } from './routes/catalog.ts';
import { diskRoutes } from './routes/disks.ts';
import { firewallRoutes } from './routes/firewalls.ts';
import { instanceRoutes } from './routes/instances.ts';
import { operationRoutes } from './routes/operations.ts';
import type { EmulatorContext } from './state.ts';

/** Builds the HTTP app: the Compute v1 API, `/admin/...` and `/metrics`. */
export function createApp(ctx: EmulatorContext, registry: Registry, log: Logger) {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  const stats = new CallStats(registry);
  instanceStatusGauge(registry, () => statusCounts(ctx));
  const gate = new RequestGate(
    () => ctx.cfg.quotas,
    () => ctx.cfg.faults,
    stableId(`project/${ctx.project}`).slice(0, 12),
  );

  app.get('/metrics', metricsHandler(registry));
  adminRoutes(app, ctx, stats);

  // The client sends `""` as the body of bodiless POSTs (operations.wait), hence strict: false.
  app.use('/compute/v1', express.json({ strict: false, limit: '2mb' }));
  app.use('/compute/v1', (err: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (!err) return next();
    const e = err as { type?: string; message?: string; status?: number };
    const ge =
      e.type === 'entity.too.large'
        ? new GceError(413, 'invalid', 'Request payload size exceeds the limit.')
        : parseError(e.message ?? 'malformed JSON');
    res.status(ge.httpStatus).json(ge.body());
  });

  const api = new ApiRouter(app, ctx, gate, stats, log);
  catalogRoutes(api, ctx);
  instanceRoutes(api, ctx);
  operationRoutes(api, ctx);
  firewallRoutes(api, ctx);
  diskRoutes(api, ctx);

  app.use((req: Request, res: Response) => {
    res
      .status(404)
      .json(
        new GceError(
          404,
          'notFound',
          `The requested URL ${req.method} ${req.path} was not found on this server.`,
        ).body(),
      );
  });
  return { app, stats };
}
