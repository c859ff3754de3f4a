import type { Request } from 'express';
import { idempotent, type ApiRouter } from '../api-router.ts';
import { diskTypeName } from '../disk-store.ts';
import {
  alreadyExists,
  conditionNotMet,
  GceError,
  invalidField,
  notFound,
  required,
  resourceInUse,
} from '../errors.ts';
import { runDelete, runInsert, type PendingDisk } from '../instance-lifecycle.ts';
import { validateLabels, validateMetadataItems } from '../labels.ts';
import {
  globalPath,
  link,
  NAME_RE,
  NAME_RULE,
  newFingerprint,
  newId,
  parseRef,
  regionPath,
  timestamp,
  zonePath,
} from '../links.ts';
import { aggregatedPage, listPage, type ListQuery } from '../list-pages.ts';
import { cpuQuotaMetric, type MachineTypeSpec } from '../machine-catalog.ts';
import type { EmulatorContext, InstanceRecord } from '../state.ts';
import { findMachineType, requireZone } from './catalog.ts';

type Body = Record<string, unknown>;

function bodyOf(req: Request): Body {
  if (!req.body || typeof req.body !== 'object' || Array.isArray(req.body)) throw required('resource');
  return req.body as Body;
}

export function instanceOf(ctx: EmulatorContext, zone: string, name: string): InstanceRecord {
  requireZone(ctx, zone);
  const rec = ctx.instances.get(`${zone}/${name}`);
  if (!rec) throw notFound(`projects/${ctx.project}/zones/${zone}/instances/${name}`);
  return rec;
}

function machineTypeOf(ctx: EmulatorContext, zone: string, given: unknown): MachineTypeSpec {
  if (typeof given !== 'string' || given === '') throw required('resource.machineType');
  const ref = parseRef(given, 'machineTypes');
  if (!ref)
    throw invalidField(
      'resource.machineType',
      given,
      'Must be a URL to a valid Compute resource of the correct type.',
    );
  if (ref.zone && ref.zone !== zone) {
    throw invalidField(
      'resource.machineType',
      given,
      `Machine type zone '${ref.zone}' does not match instance zone '${zone}'.`,
    );
  }
  const m = findMachineType(ctx, zone, ref.name, 'resource.machineType', given);
  if (!m)
    throw invalidField(
      'resource.machineType',
      given,
      `Machine type with name '${ref.name}' does not exist in zone '${zone}'.`,
    );
  return m;
}

interface Scheduling {
  onHostMaintenance: string;
  automaticRestart: boolean;
  preemptible: boolean;
  provisioningModel: string;
  instanceTerminationAction?: string;
}

function schedulingOf(raw: unknown, hasGpu: boolean): Scheduling {
  const s = (raw ?? {}) as Record<string, unknown>;
  const model = (s.provisioningModel as string | undefined) ?? 'STANDARD';
  if (!['STANDARD', 'SPOT'].includes(model)) {
    throw invalidField('resource.scheduling.provisioningModel', model, "Must be one of 'STANDARD', 'SPOT'.");
  }
  const spot = model === 'SPOT' || s.preemptible === true;
  const restart =
    s.automaticRestart === undefined ? !spot : s.automaticRestart === true || s.automaticRestart === 'true';
  if (spot && restart) {
    throw invalidField(
      'resource.scheduling.automaticRestart',
      'true',
      'Automatic restart must be false for Spot and preemptible VMs.',
    );
  }
  const host = (s.onHostMaintenance as string | undefined) ?? (spot ? 'TERMINATE' : 'MIGRATE');
  if (!['MIGRATE', 'TERMINATE'].includes(host)) {
    throw invalidField(
      'resource.scheduling.onHostMaintenance',
      host,
      "Must be one of 'MIGRATE', 'TERMINATE'.",
    );
  }
  if (spot && host !== 'TERMINATE') {
    throw invalidField(
      'resource.scheduling.onHostMaintenance',
      host,
      'Spot and preemptible VMs must use TERMINATE.',
    );
  }
  if (hasGpu && host !== 'TERMINATE') {
    throw invalidField(
      'resource.scheduling.onHostMaintenance',
      host,
      'Instances with guest accelerators do not support live migration.',
    );
  }
  const out: Scheduling = {
    onHostMaintenance: host,
    automaticRestart: restart,
    preemptible: s.preemptible === true,
    provisioningModel: model,
  };
  const action = s.instanceTerminationAction as string | undefined;
  if (action !== undefined) {
    if (!['STOP', 'DELETE'].includes(action)) {
      throw invalidField(
        'resource.scheduling.instanceTerminationAction',
        action,
        "Must be one of 'STOP', 'DELETE'.",
      );
    }
    out.instanceTerminationAction = action;
  } else if (spot) {
    out.instanceTerminationAction = 'STOP';
  }
  return out;
}

/** guestAccelerators checked against the zone's accelerator types and the machine family. */
function acceleratorsOf(ctx: EmulatorContext, zone: string, mt: MachineTypeSpec, raw: unknown) {
  const given = (Array.isArray(raw) ? raw : []) as {
    acceleratorType?: string;
    acceleratorCount?: number | string;
  }[];
  const parsed = given.map((g, i) => {
    const field = `resource.guestAccelerators[${i}]`;
    const ref =
      typeof g.acceleratorType === 'string'
        ? (parseRef(g.acceleratorType, 'acceleratorTypes') ?? { name: g.acceleratorType })
        : undefined;
    if (!ref) throw required(`${field}.acceleratorType`);
    const spec = ctx.catalog.acceleratorType(zone, ref.name);
    if (!spec) {
      throw invalidField(
        `${field}.acceleratorType`,
        g.acceleratorType,
        `Accelerator type '${ref.name}' does not exist in zone '${zone}'.`,
      );
    }
    const count = Number(g.acceleratorCount ?? 1);
    return { spec, count, field };
  });
  const builtIn = mt.accelerators ?? [];
  if (builtIn.length > 0) {
    const matches =
      parsed.length === 0 ||
      (parsed.length === builtIn.length &&
        parsed.every(
          (p, i) =>
            p.spec.name === builtIn[i]!.guestAcceleratorType && p.count === builtIn[i]!.guestAcceleratorCount,
        ));
    if (!matches) {
      const b = builtIn[0]!;
      throw invalidField(
        'resource.guestAccelerators',
        parsed.map((p) => `${p.count} x ${p.spec.name}`).join(', '),
        `Machine type '${mt.name}' comes with ${b.guestAcceleratorCount} ${b.guestAcceleratorType}; leave guestAccelerators empty or match it.`,
      );
    }
    const spec = ctx.catalog.acceleratorType(zone, builtIn[0]!.guestAcceleratorType)!;
    return builtIn.map((b) => ({ spec, count: b.guestAcceleratorCount }));
  }
  for (const p of parsed) {
    if (!p.spec.attachableTo.includes(mt.family)) {
      throw invalidField(
        `${p.field}.acceleratorType`,
        p.spec.name,
        `Accelerator type '${p.spec.name}' cannot be attached to machine type '${mt.name}'.`,
      );
    }
    const max = p.spec.maxVcpusByCount?.[p.count];
    if (max === undefined) {
      const allowed = Object.keys(p.spec.maxVcpusByCount ?? {}).join(', ');
      throw invalidField(
        `${p.field}.acceleratorCount`,
        p.count,
        `The number of ${p.spec.name} cards must be one of ${allowed}.`,
      );
    }
    if (mt.guestCpus > max) {
      throw invalidField(
        `${p.field}.acceleratorCount`,
        p.count,
        `At most ${max} vCPUs can be used along with ${p.count} accelerator cards in an instance.`,
      );
    }
  }
  return parsed.map((p) => ({ spec: p.spec, count: p.count }));
}

function imageOf(ctx: EmulatorContext, given: string) {
  const path = given.replace(/^https?:\/\/[^/]+\/compute\/v1\//, '');
  const m = /^(?:projects\/([^/]+)\/)?global\/images\/(family\/)?([^/]+)$/.exec(path);
  if (!m)
    throw invalidField(
      'resource.disks[0].initializeParams.sourceImage',
      given,
      'Must be a URL to a valid Compute resource of the correct type.',
    );
  const project = m[1] ?? ctx.project;
  const candidates = ctx.cfg.images.filter(
    (i) => i.project === project && (m[2] ? i.family === m[3] : i.name === m[3]),
  );
  const image = candidates.sort((a, b) => b.name.localeCompare(a.name))[0];
  if (!image) throw notFound(`projects/${project}/global/images/${m[2] ?? ''}${m[3]}`);
  return image;
}

function disksOf(ctx: EmulatorContext, zone: string, name: string, raw: unknown) {
  const given = (Array.isArray(raw) ? raw : []) as Body[];
  if (!given.some((d) => d.boot === true))
    throw invalidField('resource.disks', '', 'Exactly one boot disk must be specified.');
  if (given.filter((d) => d.boot === true).length > 1)
    throw invalidField('resource.disks', '', 'Only one boot disk can be specified.');
  const attached: Body[] = [];
  const create: PendingDisk[] = [];
  const existing: string[] = [];
  given.forEach((d, i) => {
    const field = `resource.disks[${i}]`;
    const boot = d.boot === true;
    const deviceName =
      (d.deviceName as string | undefined) ?? (boot ? 'persistent-disk-0' : `persistent-disk-${i}`);
    if (d.source) {
      const ref = parseRef(String(d.source), 'disks');
      const diskName = ref?.name;
      const disk = diskName ? ctx.disks.get(`${ref?.zone ?? zone}/${diskName}`) : undefined;
      if (!disk || (ref?.zone && ref.zone !== zone))
        throw notFound(
          `projects/${ctx.project}/zones/${ref?.zone ?? zone}/disks/${diskName ?? String(d.source)}`,
        );
      if (disk.res.users?.length) {
        throw resourceInUse(
          `The disk resource '${zonePath(ctx.project, zone)}/disks/${diskName}' is already being used by '${disk.res.users[0]!.replace(/^.*\/compute\/v1\//, '')}'`,
        );
      }
      existing.push(`${zone}/${diskName}`);
      attached.push({
        boot,
        source: disk.res.selfLink,
        autoDelete: d.autoDelete === true,
        deviceName,
        diskSizeGb: disk.res.sizeGb,
        index: i,
      });
      return;
    }
    const p = (d.initializeParams ?? {}) as Body;
    const diskName = (p.diskName as string | undefined) ?? (boot ? name : `${name}-${i}`);
    if (!NAME_RE.test(diskName))
      throw invalidField(`${field}.initializeParams.diskName`, diskName, NAME_RULE);
    if (ctx.disks.has(`${zone}/${diskName}`))
      throw alreadyExists(`projects/${ctx.project}/zones/${zone}/disks/${diskName}`);
    const type = diskTypeName(p.diskType, `${field}.initializeParams.diskType`);
    let sizeGb = p.diskSizeGb === undefined ? undefined : Number(p.diskSizeGb);
    let image: ReturnType<typeof imageOf> | undefined;
    let snapshot;
    if (p.sourceImage) image = imageOf(ctx, String(p.sourceImage));
    else if (p.sourceSnapshot) {
      const snapName = String(p.sourceSnapshot).split('/').pop()!;
      snapshot = ctx.snapshots.get(snapName);
      if (!snapshot) throw notFound(`projects/${ctx.project}/global/snapshots/${snapName}`);
    } else if (boot) {
      throw invalidField(
        `${field}.initializeParams.sourceImage`,
        '',
        'A boot disk needs a source image or snapshot.',
      );
    }
    const minGb = image?.diskSizeGb ?? (snapshot ? Number(snapshot.res.diskSizeGb) : 1);
    sizeGb ??= Math.max(minGb, 10);
    if (!Number.isInteger(sizeGb) || sizeGb < minGb) {
      throw invalidField(
        `${field}.initializeParams.diskSizeGb`,
        p.diskSizeGb,
        `Requested disk size cannot be smaller than the ${image ? 'image' : 'snapshot'} size (${minGb} GB).`,
      );
    }
    create.push({
      zone,
      name: diskName,
      sizeGb,
      type,
      labels: validateLabels(p.labels, `${field}.initializeParams.labels`),
      ...(image
        ? { sourceImage: link(`${globalPath(image.project)}/images/${image.name}`), sourceImageId: newId() }
        : {}),
      ...(snapshot ? { snapshot } : {}),
      attachIndex: i,
    });
    attached.push({
      boot,
      source: link(`${zonePath(ctx.project, zone)}/disks/${diskName}`),
      autoDelete: d.autoDelete === undefined ? true : d.autoDelete === true,
      deviceName,
      diskSizeGb: String(sizeGb),
      index: i,
    });
  });
  const disks = attached.map((a) => ({
    kind: 'compute#attachedDisk',
    type: 'PERSISTENT',
    mode: 'READ_WRITE',
    interface: 'SCSI',
    architecture: 'X86_64',
    ...a,
  }));
  return { disks, create, existing };
}

function networkInterfacesOf(ctx: EmulatorContext, raw: unknown, ip: string) {
  const given = (Array.isArray(raw) && raw.length > 0 ? raw : [{}]) as Body[];
  if (given.length > 1)
    throw invalidField(
      'resource.networkInterfaces',
      `${given.length} interfaces`,
      'The emulator supports one network interface per instance.',
    );
  const nic = given[0]!;
  const network = nic.network ? String(nic.network) : 'global/networks/default';
  if (network.split('/').pop() !== 'default')
    throw notFound(`projects/${ctx.project}/global/networks/${network.split('/').pop()}`);
  if (nic.subnetwork && String(nic.subnetwork).split('/').pop() !== 'default') {
    throw notFound(
      `projects/${ctx.project}/regions/${ctx.region}/subnetworks/${String(nic.subnetwork).split('/').pop()}`,
    );
  }
  if (nic.networkIP) {
    throw invalidField(
      'resource.networkInterfaces[0].networkIP',
      nic.networkIP,
      'Static internal addresses are not offered by this emulator; omit networkIP.',
    );
  }
  const access = (Array.isArray(nic.accessConfigs) ? nic.accessConfigs : []) as Body[];
  let external = 0;
  const accessConfigs = access.map((a) => {
    external++;
    const last = ip.split('.').map(Number);
    return {
      kind: 'compute#accessConfig',
      type: 'ONE_TO_ONE_NAT',
      name: (a.name as string | undefined) ?? 'External NAT',
      natIP: `203.0.113.${((last[2]! * 7 + last[3]!) % 254) + 1}`,
      networkTier: (a.networkTier as string | undefined) ?? 'PREMIUM',
    };
  });
  return {
    external,
    nics: [
      {
        kind: 'compute#networkInterface',
        name: 'nic0',
        network: link(`${globalPath(ctx.project)}/networks/default`),
        subnetwork: link(`${regionPath(ctx.project, ctx.region)}/subnetworks/default`),
        networkIP: ip,
        fingerprint: newFingerprint(),
        stackType: 'IPV4_ONLY',
        ...(accessConfigs.length ? { accessConfigs } : {}),
        ...(Array.isArray(nic.aliasIpRanges) ? { aliasIpRanges: nic.aliasIpRanges } : {}),
      },
    ],
  };
}

function insert(ctx: EmulatorContext, req: Request) {
  const zone = req.params.zone as string;
  requireZone(ctx, zone);
  const body = bodyOf(req);
  const name = body.name;
  if (typeof name !== 'string' || name === '') throw required('resource.name');
  if (!NAME_RE.test(name)) throw invalidField('resource.name', name, NAME_RULE);
  if (ctx.instances.has(`${zone}/${name}`))
    throw alreadyExists(`projects/${ctx.project}/zones/${zone}/instances/${name}`);
  const mt = machineTypeOf(ctx, zone, body.machineType);
  const gpus = acceleratorsOf(ctx, zone, mt, body.guestAccelerators);
  const scheduling = schedulingOf(body.scheduling, gpus.length > 0);
  const labels = validateLabels(body.labels, 'resource.labels');
  const metaIn = (body.metadata ?? {}) as Body;
  const items = validateMetadataItems(metaIn.items, 'resource.metadata.items');
  const { disks, create, existing } = disksOf(ctx, zone, name, body.disks);
  const ip = ctx.hypervisor.pool.allocate();
  let nics;
  try {
    nics = networkInterfacesOf(ctx, body.networkInterfaces, ip);
  } catch (e) {
    ctx.hypervisor.pool.release(ip);
    throw e;
  }
  const selfLink = link(`${zonePath(ctx.project, zone)}/instances/${name}`);
  for (const key of existing) ctx.disks.get(key)!.res.users = [selfLink];
  const demand: Record<string, number> = { [cpuQuotaMetric(mt.family)]: mt.guestCpus, INSTANCES: 1 };
  for (const g of gpus) demand[g.spec.quotaMetric] = (demand[g.spec.quotaMetric] ?? 0) + g.count;
  if (nics.external) demand.IN_USE_ADDRESSES = nics.external;
  const tags = (body.tags ?? {}) as { items?: string[] };
  const rec: InstanceRecord = {
    zone,
    family: mt.family,
    demand,
    ip,
    admitted: false,
    res: {
      kind: 'compute#instance',
      id: newId(),
      creationTimestamp: timestamp(),
      name,
      ...(body.description ? { description: String(body.description) } : {}),
      tags: { ...(tags.items?.length ? { items: tags.items } : {}), fingerprint: newFingerprint() },
      machineType: link(`${zonePath(ctx.project, zone)}/machineTypes/${mt.name}`),
      status: 'PROVISIONING',
      zone: link(zonePath(ctx.project, zone)),
      canIpForward: body.canIpForward === true,
      networkInterfaces: nics.nics,
      disks,
      metadata: {
        kind: 'compute#metadata',
        fingerprint: newFingerprint(),
        ...(items.length ? { items } : {}),
      },
      ...(Array.isArray(body.serviceAccounts) ? { serviceAccounts: body.serviceAccounts } : {}),
      selfLink,
      scheduling,
      cpuPlatform: mt.family === 'n2d' || mt.family === 't2d' ? 'AMD Milan' : 'Intel Cascade Lake',
      labels,
      labelFingerprint: newFingerprint(),
      startRestricted: false,
      deletionProtection: body.deletionProtection === true,
      ...(gpus.length
        ? {
            guestAccelerators: gpus.map((g) => ({
              acceleratorType: link(`${zonePath(ctx.project, zone)}/acceleratorTypes/${g.spec.name}`),
              acceleratorCount: g.count,
            })),
          }
        : {}),
      fingerprint: newFingerprint(),
    },
  };
  ctx.instances.set(`${zone}/${name}`, rec);
  return ctx.ops.start({ kind: 'zone', zone }, 'insert', { link: selfLink, id: rec.res.id }, async () => {
    try {
      await runInsert(ctx, rec, create);
    } catch (e) {
      for (const key of existing) delete ctx.disks.get(key)?.res.users;
      throw e;
    }
  });
}

const q = (req: Request) => req.query as ListQuery;

export function instanceRoutes(api: ApiRouter, ctx: EmulatorContext): void {
  const Z = '/projects/:project/zones/:zone/instances';

  api.post(Z, 'compute.instances.insert', (req) => idempotent(ctx, req, () => insert(ctx, req)));

  api.get(Z, 'compute.instances.list', (req) => {
    const zone = req.params.zone as string;
    requireZone(ctx, zone);
    const all = [...ctx.instances.values()].filter((r) => r.zone === zone).map((r) => r.res);
    return listPage(all, q(req), 'compute#instanceList', link(`${zonePath(ctx.project, zone)}/instances`));
  });

  api.get('/projects/:project/aggregated/instances', 'compute.instances.aggregatedList', (req) => {
    const byScope = new Map(ctx.cfg.zones.map((z) => [`zones/${z}`, [] as InstanceRecord['res'][]]));
    for (const r of ctx.instances.values()) byScope.get(`zones/${r.zone}`)?.push(r.res);
    return aggregatedPage(
      byScope,
      'instances',
      q(req),
      'compute#instanceAggregatedList',
      link(`projects/${ctx.project}/aggregated/instances`),
    );
  });

  api.get(
    `${Z}/:instance`,
    'compute.instances.get',
    (req) => instanceOf(ctx, req.params.zone as string, req.params.instance as string).res,
  );

  api.delete(`${Z}/:instance`, 'compute.instances.delete', (req) =>
    idempotent(ctx, req, () => {
      const rec = instanceOf(ctx, req.params.zone as string, req.params.instance as string);
      if (rec.res.deletionProtection === true) {
        throw new GceError(
          400,
          'resourceIsProtected',
          "Invalid resource usage: 'Resource cannot be deleted if it's protected against deletion.'.",
        );
      }
      return ctx.ops.start(
        { kind: 'zone', zone: rec.zone },
        'delete',
        { link: rec.res.selfLink, id: rec.res.id },
        () => runDelete(ctx, rec),
      );
    }),
  );

  api.post(`${Z}/:instance/setLabels`, 'compute.instances.setLabels', (req) =>
    idempotent(ctx, req, () => {
      const rec = instanceOf(ctx, req.params.zone as string, req.params.instance as string);
      const body = bodyOf(req);
      if (body.labelFingerprint !== rec.res.labelFingerprint) {
        throw conditionNotMet('Labels fingerprint either invalid or resource labels have changed');
      }
      rec.res.labels = validateLabels(body.labels, 'labels');
      rec.res.labelFingerprint = newFingerprint();
      return ctx.ops.start(
        { kind: 'zone', zone: rec.zone },
        'setLabels',
        { link: rec.res.selfLink, id: rec.res.id },
        () => ctx.ops.sleep(ctx.cfg.delays.otherMs),
      );
    }),
  );

  api.post(`${Z}/:instance/setMetadata`, 'compute.instances.setMetadata', (req) =>
    idempotent(ctx, req, () => {
      const rec = instanceOf(ctx, req.params.zone as string, req.params.instance as string);
      const body = bodyOf(req);
      if (body.fingerprint !== rec.res.metadata.fingerprint) {
        throw conditionNotMet('Supplied fingerprint does not match current metadata fingerprint.');
      }
      const items = validateMetadataItems(body.items, 'metadata.items');
      rec.res.metadata = {
        kind: 'compute#metadata',
        fingerprint: newFingerprint(),
        ...(items.length ? { items } : {}),
      };
      return ctx.ops.start(
        { kind: 'zone', zone: rec.zone },
        'setMetadata',
        { link: rec.res.selfLink, id: rec.res.id },
        () => ctx.ops.sleep(ctx.cfg.delays.otherMs),
      );
    }),
  );
}
