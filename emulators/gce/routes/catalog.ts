import { createHash } from 'node:crypto';
import type { Request } from 'express';
import type { ApiRouter } from '../api-router.ts';
import { parseCustomMachineType } from '../custom-machine-type.ts';
import { invalidField, notFound } from '../errors.ts';
import { globalPath, link, regionPath, zonePath } from '../links.ts';
import { aggregatedPage, listPage, type ListQuery } from '../list-pages.ts';
import type { AcceleratorSpec, MachineTypeSpec } from '../machine-catalog.ts';
import type { EmulatorContext } from '../state.ts';

const CREATED = '1969-12-31T16:00:00.000-08:00';

/** A stable numeric id for catalog entries, so they look the same across restarts. */
export function stableId(key: string): string {
  const h = BigInt(`0x${createHash('sha1').update(key).digest('hex').slice(0, 15)}`);
  return (BigInt('1000000000000000000') + h).toString();
}

export function renderMachineType(
  ctx: EmulatorContext,
  zone: string,
  m: MachineTypeSpec,
): Record<string, unknown> {
  return {
    kind: 'compute#machineType',
    id: stableId(`mt/${zone}/${m.name}`),
    creationTimestamp: CREATED,
    name: m.name,
    description: m.description,
    guestCpus: m.guestCpus,
    memoryMb: m.memoryMb,
    imageSpaceGb: 0,
    maximumPersistentDisks: m.isSharedCpu ? 16 : 128,
    maximumPersistentDisksSizeGb: m.isSharedCpu ? '3072' : '263168',
    zone,
    selfLink: link(`${zonePath(ctx.project, zone)}/machineTypes/${m.name}`),
    isSharedCpu: m.isSharedCpu,
    ...(m.accelerators ? { accelerators: m.accelerators } : {}),
    architecture: 'X86_64',
  };
}

function renderAccelerator(ctx: EmulatorContext, zone: string, a: AcceleratorSpec): Record<string, unknown> {
  return {
    kind: 'compute#acceleratorType',
    id: stableId(`acc/${zone}/${a.name}`),
    creationTimestamp: CREATED,
    name: a.name,
    description: a.description,
    zone: link(zonePath(ctx.project, zone)),
    selfLink: link(`${zonePath(ctx.project, zone)}/acceleratorTypes/${a.name}`),
    maximumCardsPerInstance: a.maximumCardsPerInstance,
  };
}

export function renderImage(spec: { project: string; name: string; family?: string; diskSizeGb: number }) {
  return {
    kind: 'compute#image',
    id: stableId(`image/${spec.project}/${spec.name}`),
    creationTimestamp: '2025-06-10T00:00:00.000-07:00',
    name: spec.name,
    ...(spec.family ? { family: spec.family } : {}),
    sourceType: 'RAW',
    status: 'READY',
    archiveSizeBytes: String(spec.diskSizeGb * 64 * 1024 * 1024),
    diskSizeGb: String(spec.diskSizeGb),
    selfLink: link(`${globalPath(spec.project)}/images/${spec.name}`),
    labels: {},
    architecture: 'X86_64',
  };
}

function renderZone(ctx: EmulatorContext, zone: string) {
  return {
    kind: 'compute#zone',
    id: stableId(`zone/${zone}`),
    creationTimestamp: CREATED,
    name: zone,
    description: zone,
    status: 'UP',
    region: link(regionPath(ctx.project, ctx.region)),
    selfLink: link(zonePath(ctx.project, zone)),
    availableCpuPlatforms: [
      'Intel Cascade Lake',
      'Intel Ice Lake',
      'AMD Milan',
      'AMD Rome',
      'Intel Broadwell',
    ],
    supportsPzs: false,
  };
}

function renderRegion(ctx: EmulatorContext) {
  return {
    kind: 'compute#region',
    id: stableId(`region/${ctx.region}`),
    creationTimestamp: CREATED,
    name: ctx.region,
    description: ctx.region,
    status: 'UP',
    zones: ctx.cfg.zones.map((z) => link(zonePath(ctx.project, z))),
    quotas: ctx.quota.rows(),
    selfLink: link(regionPath(ctx.project, ctx.region)),
    supportsPzs: false,
  };
}

export function requireZone(ctx: EmulatorContext, zone: string): void {
  if (!ctx.catalog.hasZone(zone)) throw notFound(`projects/${ctx.project}/zones/${zone}`);
}

/** A predefined or valid custom machine type of `zone`, or undefined. Invalid custom shapes throw. */
export function findMachineType(
  ctx: EmulatorContext,
  zone: string,
  name: string,
  field?: string,
  given?: string,
) {
  const predefined = ctx.catalog.machineType(zone, name);
  if (predefined) return predefined;
  const custom = parseCustomMachineType(name);
  if (custom.kind === 'ok') return custom.spec;
  if (custom.kind === 'invalid' && field) throw invalidField(field, given ?? name, custom.reason);
  return undefined;
}

const q = (req: Request) => req.query as ListQuery;

export function catalogRoutes(api: ApiRouter, ctx: EmulatorContext): void {
  const P = '/projects/:project';

  api.get(`${P}/zones`, 'compute.zones.list', (req) =>
    listPage(
      ctx.cfg.zones.map((z) => renderZone(ctx, z)),
      q(req),
      'compute#zoneList',
      link(`projects/${ctx.project}/zones`),
    ),
  );
  api.get(`${P}/zones/:zone`, 'compute.zones.get', (req) => {
    requireZone(ctx, req.params.zone as string);
    return renderZone(ctx, req.params.zone as string);
  });
  api.get(`${P}/regions`, 'compute.regions.list', (req) =>
    listPage([renderRegion(ctx)], q(req), 'compute#regionList', link(`projects/${ctx.project}/regions`)),
  );
  api.get(`${P}/regions/:region`, 'compute.regions.get', (req) => {
    if (req.params.region !== ctx.region)
      throw notFound(`projects/${ctx.project}/regions/${req.params.region as string}`);
    return renderRegion(ctx);
  });

  api.get(`${P}/zones/:zone/machineTypes`, 'compute.machineTypes.list', (req) => {
    const zone = req.params.zone as string;
    requireZone(ctx, zone);
    const all = ctx.catalog.machineTypes(zone).map((m) => renderMachineType(ctx, zone, m));
    return listPage(
      all as never[],
      q(req),
      'compute#machineTypeList',
      link(`${zonePath(ctx.project, zone)}/machineTypes`),
    );
  });
  api.get(`${P}/zones/:zone/machineTypes/:machineType`, 'compute.machineTypes.get', (req) => {
    const zone = req.params.zone as string;
    const name = req.params.machineType as string;
    requireZone(ctx, zone);
    const m = findMachineType(ctx, zone, name);
    if (!m) throw notFound(`projects/${ctx.project}/zones/${zone}/machineTypes/${name}`);
    return renderMachineType(ctx, zone, m);
  });
  api.get(`${P}/aggregated/machineTypes`, 'compute.machineTypes.aggregatedList', (req) => {
    const byScope = new Map(
      ctx.cfg.zones.map((z) => [
        `zones/${z}`,
        ctx.catalog.machineTypes(z).map((m) => renderMachineType(ctx, z, m)),
      ]),
    );
    return aggregatedPage(
      byScope as never,
      'machineTypes',
      q(req),
      'compute#machineTypeAggregatedList',
      link(`projects/${ctx.project}/aggregated/machineTypes`),
    );
  });

  api.get(`${P}/zones/:zone/acceleratorTypes`, 'compute.acceleratorTypes.list', (req) => {
    const zone = req.params.zone as string;
    requireZone(ctx, zone);
    const all = ctx.catalog.acceleratorTypes(zone).map((a) => renderAccelerator(ctx, zone, a));
    return listPage(
      all as never[],
      q(req),
      'compute#acceleratorTypeList',
      link(`${zonePath(ctx.project, zone)}/acceleratorTypes`),
    );
  });
  api.get(`${P}/zones/:zone/acceleratorTypes/:acceleratorType`, 'compute.acceleratorTypes.get', (req) => {
    const zone = req.params.zone as string;
    requireZone(ctx, zone);
    const a = ctx.catalog.acceleratorType(zone, req.params.acceleratorType as string);
    if (!a)
      throw notFound(
        `projects/${ctx.project}/zones/${zone}/acceleratorTypes/${req.params.acceleratorType as string}`,
      );
    return renderAccelerator(ctx, zone, a);
  });
  api.get(`${P}/aggregated/acceleratorTypes`, 'compute.acceleratorTypes.aggregatedList', (req) => {
    const byScope = new Map(
      ctx.cfg.zones.map((z) => [
        `zones/${z}`,
        ctx.catalog.acceleratorTypes(z).map((a) => renderAccelerator(ctx, z, a)),
      ]),
    );
    return aggregatedPage(
      byScope as never,
      'acceleratorTypes',
      q(req),
      'compute#acceleratorTypeAggregatedList',
      link(`projects/${ctx.project}/aggregated/acceleratorTypes`),
    );
  });

  const images = (project: string) => ctx.cfg.images.filter((i) => i.project === project);
  api.get(
    `${P}/global/images`,
    'compute.images.list',
    (req) =>
      listPage(
        images(req.params.project as string).map(renderImage),
        q(req),
        'compute#imageList',
        link(`${globalPath(req.params.project as string)}/images`),
      ),
    { anyProject: true },
  );
  api.get(
    `${P}/global/images/family/:family`,
    'compute.images.getFromFamily',
    (req) => {
      const project = req.params.project as string;
      const family = req.params.family as string;
      const newest = images(project)
        .filter((i) => i.family === family)
        .sort((a, b) => b.name.localeCompare(a.name))[0];
      if (!newest) throw notFound(`projects/${project}/global/images/family/${family}`);
      return renderImage(newest);
    },
    { anyProject: true },
  );
  api.get(
    `${P}/global/images/:image`,
    'compute.images.get',
    (req) => {
      const project = req.params.project as string;
      const image = images(project).find((i) => i.name === req.params.image);
      if (!image) throw notFound(`projects/${project}/global/images/${req.params.image as string}`);
      return renderImage(image);
    },
    { anyProject: true },
  );

  const network = () => ({
    kind: 'compute#network',
    id: stableId(`net/${ctx.project}/default`),
    creationTimestamp: CREATED,
    name: 'default',
    description: 'Default network for the project',
    selfLink: link(`${globalPath(ctx.project)}/networks/default`),
    autoCreateSubnetworks: false,
    subnetworks: [link(`${regionPath(ctx.project, ctx.region)}/subnetworks/default`)],
    routingConfig: { routingMode: 'REGIONAL' },
    networkFirewallPolicyEnforcementOrder: 'AFTER_CLASSIC_FIREWALL',
  });
  const subnetwork = () => ({
    kind: 'compute#subnetwork',
    id: stableId(`subnet/${ctx.project}/default`),
    creationTimestamp: CREATED,
    name: 'default',
    network: link(`${globalPath(ctx.project)}/networks/default`),
    ipCidrRange: ctx.hypervisor.block.cidr,
    gatewayAddress: ctx.hypervisor.block.gateway,
    region: link(regionPath(ctx.project, ctx.region)),
    selfLink: link(`${regionPath(ctx.project, ctx.region)}/subnetworks/default`),
    privateIpGoogleAccess: true,
    stackType: 'IPV4_ONLY',
    purpose: 'PRIVATE',
    fingerprint: 'ZGVmYXVsdA==',
  });
  api.get(`${P}/global/networks`, 'compute.networks.list', (req) =>
    listPage([network()], q(req), 'compute#networkList', link(`${globalPath(ctx.project)}/networks`)),
  );
  api.get(`${P}/global/networks/:network`, 'compute.networks.get', (req) => {
    if (req.params.network !== 'default')
      throw notFound(`projects/${ctx.project}/global/networks/${req.params.network as string}`);
    return network();
  });
  api.get(`${P}/regions/:region/subnetworks`, 'compute.subnetworks.list', (req) => {
    if (req.params.region !== ctx.region)
      throw notFound(`projects/${ctx.project}/regions/${req.params.region as string}`);
    return listPage(
      [subnetwork()],
      q(req),
      'compute#subnetworkList',
      link(`${regionPath(ctx.project, ctx.region)}/subnetworks`),
    );
  });
  api.get(`${P}/regions/:region/subnetworks/:subnetwork`, 'compute.subnetworks.get', (req) => {
    if (req.params.region !== ctx.region || req.params.subnetwork !== 'default') {
      throw notFound(
        `projects/${ctx.project}/regions/${req.params.region as string}/subnetworks/${req.params.subnetwork as string}`,
      );
    }
    return subnetwork();
  });
}
