import express, { type Express, type Request, type Response } from 'express';
import { ConfigError, validateConfig } from '../../../lib/config-file.ts';
import type { CallStats } from '../call-stats.ts';
import {
  delaysPatchSchema,
  faultsPatchSchema,
  quotasPatchSchema,
  type Delays,
  type Faults,
  type Quotas,
} from '../config.ts';
import { GceError, notFound } from '../errors.ts';
import { preempt } from '../instance-lifecycle.ts';
import type { EmulatorContext } from '../state.ts';

function fail(res: Response, e: unknown): void {
  if (e instanceof ConfigError) {
    res.status(400).json({ error: { code: 400, message: e.message, field: e.field } });
  } else if (e instanceof GceError) {
    res.status(e.httpStatus).json(e.body());
  } else {
    res.status(500).json({ error: { code: 500, message: (e as Error).message } });
  }
}

const handle = (fn: (req: Request) => unknown) => async (req: Request, res: Response) => {
  try {
    res.json(await fn(req));
  } catch (e) {
    fail(res, e);
  }
};

/** Instances by status. */
export function statusCounts(ctx: EmulatorContext): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of ctx.instances.values()) out[r.res.status] = (out[r.res.status] ?? 0) + 1;
  return out;
}

/**
 * The admin endpoint (not part of the Compute API, never counted or faulted): change faults,
 * quotas and delays at run time, read call counters, preempt Spot VMs, find a cell's files.
 */
export function adminRoutes(app: Express, ctx: EmulatorContext, stats: CallStats): void {
  const r = express.Router();
  r.use(express.json({ strict: false }));

  r.get(
    '/state',
    handle(() => ({
      project: ctx.project,
      region: ctx.region,
      zones: ctx.cfg.zones,
      hypervisor: ctx.hypervisor.kind,
      network: {
        block: ctx.hypervisor.block.cidr,
        gateway: ctx.hypervisor.block.gateway,
        bridge: ctx.hypervisor.bridge ?? null,
      },
      stateDir: ctx.stateDir,
      instances: statusCounts(ctx),
      pendingOperations: ctx.ops.pending(),
      faults: ctx.cfg.faults,
      delays: ctx.cfg.delays,
      quotas: { ...ctx.cfg.quotas, usage: ctx.quota.rows() },
    })),
  );

  r.get(
    '/calls',
    handle(() => stats.snapshot()),
  );
  r.post(
    '/calls/reset',
    handle(() => {
      stats.reset();
      return stats.snapshot();
    }),
  );

  r.patch(
    '/faults',
    handle((req) => {
      const patch = validateConfig<Partial<Faults>>(req.body ?? {}, faultsPatchSchema, 'faults');
      Object.assign(ctx.cfg.faults, patch);
      return ctx.cfg.faults;
    }),
  );
  r.patch(
    '/quotas',
    handle((req) => {
      const patch = validateConfig<Partial<Quotas>>(req.body ?? {}, quotasPatchSchema, 'quotas');
      const { limits, ...rest } = patch;
      Object.assign(ctx.cfg.quotas, rest);
      if (limits) Object.assign(ctx.cfg.quotas.limits, limits);
      return { ...ctx.cfg.quotas, usage: ctx.quota.rows() };
    }),
  );
  r.patch(
    '/delays',
    handle((req) => {
      const patch = validateConfig<Partial<Delays>>(req.body ?? {}, delaysPatchSchema, 'delays');
      Object.assign(ctx.cfg.delays, patch);
      return ctx.cfg.delays;
    }),
  );

  const instance = (req: Request) => {
    const rec = ctx.instances.get(`${req.params.zone as string}/${req.params.name as string}`);
    if (!rec)
      throw notFound(
        `projects/${ctx.project}/zones/${req.params.zone as string}/instances/${req.params.name as string}`,
      );
    return rec;
  };
  r.get(
    '/instances/:zone/:name',
    handle((req) => {
      const rec = instance(req);
      const boot = rec.res.disks.find((d) => d.boot === true);
      const disk = boot ? ctx.disks.get(`${rec.zone}/${String(boot.source).split('/').pop()}`) : undefined;
      return {
        instance: rec.res,
        cell: ctx.hypervisor.info(rec.zone, rec.res.name) ?? null,
        dataDir: disk?.dir ?? null,
      };
    }),
  );
  r.post(
    '/instances/:zone/:name/preempt',
    handle(async (req) => {
      const rec = instance(req);
      const s = rec.res.scheduling as { provisioningModel?: string; preemptible?: boolean };
      if (s.provisioningModel !== 'SPOT' && !s.preemptible) {
        throw new GceError(400, 'invalid', `Instance '${rec.res.name}' is not a Spot or preemptible VM.`);
      }
      return { result: await preempt(ctx, rec) };
    }),
  );
  r.get(
    '/disks/:zone/:name',
    handle((req) => {
      const d = ctx.disks.get(`${req.params.zone as string}/${req.params.name as string}`);
      if (!d)
        throw notFound(
          `projects/${ctx.project}/zones/${req.params.zone as string}/disks/${req.params.name as string}`,
        );
      return { disk: d.res, dir: d.dir };
    }),
  );
  r.use((req: Request, res: Response) =>
    res.status(404).json({ error: { code: 404, message: `no admin route ${req.method} ${req.path}` } }),
  );
  app.use('/admin', r);
}
