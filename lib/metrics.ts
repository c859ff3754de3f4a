import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Request, Response } from 'express';

/** A Prometheus registry with the process's default metrics, one per server. */
export function createMetricsRegistry(prefix: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: `${prefix}_` });
  return registry;
}

/** An express handler serving `registry` in the Prometheus text format. */
export function metricsHandler(registry: Registry) {
  return async (_req: Request, res: Response) => {
    res.setHeader('Content-Type', registry.contentType);
    res.end(await registry.metrics());
  };
}
