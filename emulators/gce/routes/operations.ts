import type { Request } from 'express';
import type { ApiRouter } from '../api-router.ts';
import { notFound } from '../errors.ts';
import type { OperationScope } from '../operations.ts';
import type { EmulatorContext } from '../state.ts';
import { requireZone } from './catalog.ts';

/** zoneOperations, regionOperations and globalOperations: get and wait (wait blocks until DONE or ~2 min). */
export function operationRoutes(api: ApiRouter, ctx: EmulatorContext): void {
  const scopes: {
    path: string;
    collection: string;
    scope: (req: Request) => OperationScope;
    where: (req: Request) => string;
  }[] = [
    {
      path: '/projects/:project/zones/:zone/operations',
      collection: 'zoneOperations',
      scope: (req) => {
        requireZone(ctx, req.params.zone as string);
        return { kind: 'zone', zone: req.params.zone as string };
      },
      where: (req) => `zones/${req.params.zone as string}`,
    },
    {
      path: '/projects/:project/regions/:region/operations',
      collection: 'regionOperations',
      scope: (req) => {
        if (req.params.region !== ctx.region)
          throw notFound(`projects/${ctx.project}/regions/${req.params.region as string}`);
        return { kind: 'region', region: req.params.region as string };
      },
      where: (req) => `regions/${req.params.region as string}`,
    },
    {
      path: '/projects/:project/global/operations',
      collection: 'globalOperations',
      scope: () => ({ kind: 'global' }),
      where: () => 'global',
    },
  ];
  for (const s of scopes) {
    const missing = (req: Request) =>
      notFound(`projects/${ctx.project}/${s.where(req)}/operations/${req.params.operation as string}`);
    api.get(`${s.path}/:operation`, `compute.${s.collection}.get`, (req) => {
      const op = ctx.ops.get(s.scope(req), req.params.operation as string);
      if (!op) throw missing(req);
      return op;
    });
    api.post(
      `${s.path}/:operation/wait`,
      `compute.${s.collection}.wait`,
      async (req) => {
        const op = await ctx.ops.wait(s.scope(req), req.params.operation as string, ctx.cfg.delays.waitMaxMs);
        if (!op) throw missing(req);
        return op;
      },
      { kind: 'read' },
    );
  }
}
