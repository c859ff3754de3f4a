import { cpSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Request } from 'express';
import { idempotent, type ApiRouter } from '../api-router.ts';
import { createDisk, destroyDisk, diskQuota, diskTypeName } from '../disk-store.ts';
import { alreadyExists, invalidField, notFound, required, resourceInUse } from '../errors.ts';
import { validateLabels } from '../labels.ts';
import {
  globalPath,
  link,
  NAME_RE,
  NAME_RULE,
  newFingerprint,
  newId,
  timestamp,
  zonePath,
} from '../links.ts';
import { aggregatedPage, listPage, type ListQuery } from '../list-pages.ts';
import type { DiskRecord, EmulatorContext, SnapshotRecord } from '../state.ts';
import { requireZone } from './catalog.ts';

type Body = Record<string, unknown>;

function bytesIn(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}

/** Disks (with restore from a snapshot) and snapshots (disks.createSnapshot), for backup and restore. */
export function diskRoutes(api: ApiRouter, ctx: EmulatorContext): void {
  const Z = '/projects/:project/zones/:zone/disks';
  const S = '/projects/:project/global/snapshots';
  const pendingDisks = new Set<string>();
  const pendingSnapshots = new Set<string>();
  const q = (req: Request) => req.query as ListQuery;

  const diskOf = (req: Request): DiskRecord => {
    const zone = req.params.zone as string;
    requireZone(ctx, zone);
    const d = ctx.disks.get(`${zone}/${req.params.disk as string}`);
    if (!d) throw notFound(`projects/${ctx.project}/zones/${zone}/disks/${req.params.disk as string}`);
    return d;
  };
  const snapshotOf = (name: string): SnapshotRecord => {
    const s = ctx.snapshots.get(name);
    if (!s) throw notFound(`projects/${ctx.project}/global/snapshots/${name}`);
    return s;
  };

  api.post(Z, 'compute.disks.insert', (req) =>
    idempotent(ctx, req, () => {
      const zone = req.params.zone as string;
      requireZone(ctx, zone);
      const body = (req.body ?? {}) as Body;
      const name = body.name;
      if (typeof name !== 'string' || !name) throw required('resource.name');
      if (!NAME_RE.test(name)) throw invalidField('resource.name', name, NAME_RULE);
      const key = `${zone}/${name}`;
      if (ctx.disks.has(key) || pendingDisks.has(key))
        throw alreadyExists(`projects/${ctx.project}/zones/${zone}/disks/${name}`);
      const type = diskTypeName(body.type, 'resource.type');
      const sourceImage =
        (req.query.sourceImage as string | undefined) ?? (body.sourceImage as string | undefined);
      if (sourceImage)
        throw invalidField(
          'sourceImage',
          sourceImage,
          'The emulator creates disks from snapshots or blank; boot disks from images are made by instances.insert.',
        );
      const snapshot = body.sourceSnapshot
        ? snapshotOf(String(body.sourceSnapshot).split('/').pop()!)
        : undefined;
      const minGb = snapshot ? Number(snapshot.res.diskSizeGb) : 1;
      const sizeGb =
        body.sizeGb === undefined ? Math.max(minGb, snapshot ? minGb : 500) : Number(body.sizeGb);
      if (!Number.isInteger(sizeGb) || sizeGb < minGb || sizeGb > 65536) {
        throw invalidField(
          'resource.sizeGb',
          body.sizeGb,
          `Disk size must be a whole number of GB between ${minGb} and 65536${snapshot ? ' (at least the snapshot size)' : ''}.`,
        );
      }
      const labels = validateLabels(body.labels, 'resource.labels');
      pendingDisks.add(key);
      return ctx.ops.start(
        { kind: 'zone', zone },
        'insert',
        { link: link(`${zonePath(ctx.project, zone)}/disks/${name}`), id: newId() },
        async () => {
          try {
            await ctx.ops.sleep(ctx.cfg.delays.otherMs);
            ctx.quota.reserve(diskQuota(type, sizeGb));
            createDisk(ctx, {
              zone,
              name,
              sizeGb,
              type,
              labels,
              ...(snapshot ? { snapshot } : {}),
              description: body.description as string | undefined,
            });
          } finally {
            pendingDisks.delete(key);
          }
        },
      );
    }),
  );
  api.get(Z, 'compute.disks.list', (req) => {
    const zone = req.params.zone as string;
    requireZone(ctx, zone);
    const all = [...ctx.disks.values()].filter((d) => d.zone === zone).map((d) => d.res);
    return listPage(all, q(req), 'compute#diskList', link(`${zonePath(ctx.project, zone)}/disks`));
  });
  api.get('/projects/:project/aggregated/disks', 'compute.disks.aggregatedList', (req) => {
    const byScope = new Map(ctx.cfg.zones.map((z) => [`zones/${z}`, [] as DiskRecord['res'][]]));
    for (const d of ctx.disks.values()) byScope.get(`zones/${d.zone}`)?.push(d.res);
    return aggregatedPage(
      byScope,
      'disks',
      q(req),
      'compute#diskAggregatedList',
      link(`projects/${ctx.project}/aggregated/disks`),
    );
  });
  api.get(`${Z}/:disk`, 'compute.disks.get', (req) => diskOf(req).res);
  api.delete(`${Z}/:disk`, 'compute.disks.delete', (req) =>
    idempotent(ctx, req, () => {
      const d = diskOf(req);
      if (d.res.users?.length) {
        throw resourceInUse(
          `The disk resource '${zonePath(ctx.project, d.zone)}/disks/${d.res.name}' is already being used by '${d.res.users[0]!.replace(/^.*\/compute\/v1\//, '')}'`,
        );
      }
      d.res.status = 'DELETING';
      return ctx.ops.start(
        { kind: 'zone', zone: d.zone },
        'delete',
        { link: d.res.selfLink, id: d.res.id },
        async () => {
          await ctx.ops.sleep(ctx.cfg.delays.otherMs);
          destroyDisk(ctx, d);
        },
      );
    }),
  );

  api.post(`${Z}/:disk/createSnapshot`, 'compute.disks.createSnapshot', (req) =>
    idempotent(ctx, req, () => {
      const d = diskOf(req);
      const body = (req.body ?? {}) as Body;
      const name = body.name;
      if (typeof name !== 'string' || !name) throw required('resource.name');
      if (!NAME_RE.test(name)) throw invalidField('resource.name', name, NAME_RULE);
      if (ctx.snapshots.has(name) || pendingSnapshots.has(name))
        throw alreadyExists(`projects/${ctx.project}/global/snapshots/${name}`);
      const labels = validateLabels(body.labels, 'resource.labels');
      pendingSnapshots.add(name);
      return ctx.ops.start(
        { kind: 'zone', zone: d.zone },
        'createSnapshot',
        { link: d.res.selfLink, id: d.res.id },
        async () => {
          try {
            const dir = join(ctx.stateDir, 'snapshots', name);
            rmSync(dir, { recursive: true, force: true });
            cpSync(d.dir, dir, { recursive: true });
            await ctx.ops.sleep(ctx.cfg.delays.otherMs);
            ctx.snapshots.set(name, {
              dir,
              res: {
                kind: 'compute#snapshot',
                id: newId(),
                creationTimestamp: timestamp(),
                name,
                ...(body.description ? { description: String(body.description) } : {}),
                status: 'READY',
                sourceDisk: d.res.selfLink,
                sourceDiskId: d.res.id,
                diskSizeGb: d.res.sizeGb,
                storageBytes: String(bytesIn(dir)),
                storageBytesStatus: 'UP_TO_DATE',
                labels,
                labelFingerprint: newFingerprint(),
                selfLink: link(`${globalPath(ctx.project)}/snapshots/${name}`),
                storageLocations: [ctx.region.replace(/-.*$/, '')],
                snapshotType: 'STANDARD',
                architecture: 'X86_64',
              },
            });
          } finally {
            pendingSnapshots.delete(name);
          }
        },
      );
    }),
  );

  api.get(S, 'compute.snapshots.list', (req) =>
    listPage(
      [...ctx.snapshots.values()].map((s) => s.res),
      q(req),
      'compute#snapshotList',
      link(`${globalPath(ctx.project)}/snapshots`),
    ),
  );
  api.get(`${S}/:snapshot`, 'compute.snapshots.get', (req) => snapshotOf(req.params.snapshot as string).res);
  api.delete(`${S}/:snapshot`, 'compute.snapshots.delete', (req) =>
    idempotent(ctx, req, () => {
      const s = snapshotOf(req.params.snapshot as string);
      s.res.status = 'DELETING';
      return ctx.ops.start({ kind: 'global' }, 'delete', { link: s.res.selfLink, id: s.res.id }, async () => {
        await ctx.ops.sleep(ctx.cfg.delays.otherMs);
        ctx.snapshots.delete(s.res.name);
        rmSync(s.dir, { recursive: true, force: true });
      });
    }),
  );
}
