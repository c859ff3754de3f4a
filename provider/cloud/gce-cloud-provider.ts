import type { protos } from '@google-cloud/compute';
import type { Logger } from '../../lib/log.ts';
import type { BackoffOptions } from './backoff.ts';
import type {
  CapacityType,
  CellInstance,
  CellRef,
  CellSpec,
  CloudProvider,
  InstanceType,
  MachineShape,
  PlannedOffering,
  ShapeRequest,
} from './cloud-provider.ts';
import {
  ComputeApi,
  NO_LIBRARY_RETRY,
  createGceClients,
  type ComputeEndpoint,
  type GceClients,
} from './compute-api.ts';
import {
  InsufficientCapacityError,
  InvalidRequestError,
  NotFoundError,
  QuotaExceededError,
  RateLimitedError,
} from './errors.ts';
import { CachedValue } from './cached-value.ts';
import { ensureAgentFirewall } from './firewall.ts';
import { classifyApiError, classifyOperation, type Failure } from './gce-errors.ts';
import {
  BOOTSTRAP_METADATA_KEY,
  LABELS,
  cellLabels,
  cellNetworkTag,
  clusterSlug,
  firewallName,
  insertRequestId,
  instanceName,
  labelValue,
  standbyLabels,
} from './instance-names.ts';
import { InstanceSelector, type Choice, type SelectorOptions } from './instance-selector.ts';
import { MachineCatalog, shapeFromApi, type ZoneOffer } from './machine-catalog.ts';
import { PriceTable } from './pricing.ts';
import { UnavailableOfferings } from './unavailable-offerings.ts';

type Instance = protos.google.cloud.compute.v1.IInstance;
type Operation = protos.google.cloud.compute.v1.IOperation;

export interface GceCloudProviderOptions {
  project: string;
  /** Zones cells may go to, in order of preference. */
  zones: string[];
  /** VPC network name (or URL). */
  network: string;
  /** Subnetwork name (or URL) in the zones' region; the network's auto subnet when absent. */
  subnetwork?: string;
  /** This cluster's id; every VM is labelled with a digest of it. */
  clusterId: string;
  /** A Compute API endpoint other than Google's (the lab's emulator); no credentials are sent. */
  endpoint?: ComputeEndpoint;
  /** Ready-made clients (tests); missing ones are created. */
  clients?: Partial<GceClients>;
  /** The cell boot image family. Default kip-cells/kip-cell. */
  image?: { project: string; family: string };
  /** Boot disk size in GB unless the pod's volume-size annotation asks for more. Default 10. */
  diskSizeGb?: number;
  /** Boot disk type. Default pd-balanced. */
  diskType?: string;
  /** No external IP unless a pod's private-ip-only annotation is false. Default true. */
  privateIpOnly?: boolean;
  /** The service account cells run as unless a pod's instance-profile annotation names one; none by default. */
  serviceAccount?: string;
  /** Network tags every cell gets besides the cluster's cell tag. */
  networkTags?: string[];
  /** The cell agent's port, opened to the provider by the firewall rule. Default 6421. */
  agentPort?: number;
  /** Source ranges the firewall rule admits to the agent port (the provider's pod range). Default 10.0.0.0/8. */
  providerSourceRanges?: string[];
  readRequestsPerMinute?: number;
  writeRequestsPerMinute?: number;
  /** Quota window; GCE's is 60 s. Shorter only in tests. */
  quotaWindowMs?: number;
  /** How long a capacity or quota failure keeps an offering out of the plan. Default 3 minutes. */
  unavailableTtlMs?: number;
  /** How long the machine catalog is reused before it is read again. Default 1 hour. */
  catalogTtlMs?: number;
  /** Right-sizing settings (overhead, default machine type, default accelerator, custom shapes). */
  selector?: Omit<SelectorOptions, 'catalog'>;
  prices?: PriceTable;
  backoff?: BackoffOptions;
  log?: Logger;
  /** Told of every Compute API attempt (method, HTTP status), e.g. to feed kip_cloud_api_calls_total. */
  onCall?: (method: string, code: string) => void;
}

const FULL_SCOPES = ['https://www.googleapis.com/auth/cloud-platform'];

/** Keeps the last segment of a GCE URL (`.../zones/us-central1-a` → `us-central1-a`). */
const last = (url: string | null | undefined) => (url ?? '').split('/').pop() ?? '';

/** A failure that should make create try the next offering. */
class OfferingFailure extends Error {
  constructor(readonly failure: Failure) {
    super(failure.message);
  }
}

/**
 * The cloud provider on Compute Engine. Every call is rate limited per quota bucket and retried
 * with backoff; VMs are found by label with one list per zone; inserts carry a requestId derived
 * from the cell, so repeating a create after a crash returns the VM already made.
 */
export class GceCloudProvider implements CloudProvider {
  readonly api: ComputeApi;
  readonly unavailable: UnavailableOfferings;
  readonly region: string;
  private readonly o: GceCloudProviderOptions;
  private readonly prices: PriceTable;
  private readonly slug: string;
  private readonly catalogCache: CachedValue<MachineCatalog>;
  /** The cell image's own disk size, so a pod's smaller volume-size never makes an invalid disk. */
  private readonly imageDiskGb: CachedValue<number>;
  /** The last listing by VM name, so a create after a restart finds a VM made before the crash. */
  private known = new Map<string, CellInstance>();
  private listed = false;
  private listing: Promise<CellInstance[]> | undefined;

  constructor(opts: GceCloudProviderOptions) {
    if (opts.zones.length === 0) throw new Error('GceCloudProvider: give at least one zone');
    this.o = opts;
    this.region = opts.zones[0]!.replace(/-[a-z]$/, '');
    this.slug = clusterSlug(opts.clusterId);
    this.prices = opts.prices ?? PriceTable.load();
    this.unavailable = new UnavailableOfferings({ ttlMs: opts.unavailableTtlMs ?? 180_000 });
    this.catalogCache = new CachedValue(opts.catalogTtlMs ?? 3_600_000, () => this.loadCatalog());
    this.imageDiskGb = new CachedValue(3_600_000, () => this.loadImageDiskGb());
    this.api = new ComputeApi({
      clients: createGceClients(opts.endpoint, opts.clients),
      readRequestsPerMinute: opts.readRequestsPerMinute,
      writeRequestsPerMinute: opts.writeRequestsPerMinute,
      quotaWindowMs: opts.quotaWindowMs,
      backoff: opts.backoff,
      log: opts.log,
      onCall: opts.onCall,
    });
  }

  private get project(): string {
    return this.o.project;
  }

  private networkUrl(): string {
    const n = this.o.network;
    return n.includes('/') ? n : `projects/${this.project}/global/networks/${n}`;
  }

  private subnetworkUrl(): string | undefined {
    const s = this.o.subnetwork;
    if (!s) return undefined;
    return s.includes('/') ? s : `projects/${this.project}/regions/${this.region}/subnetworks/${s}`;
  }

  /** The machine catalog of the configured zones, read from machineTypes and acceleratorTypes. */
  catalog(): Promise<MachineCatalog> {
    return this.catalogCache.get();
  }

  private async loadCatalog(): Promise<MachineCatalog> {
    const c = this.api.clients;
    const zones: ZoneOffer[] = [];
    for (const zone of this.o.zones) {
      const types: MachineShape[] = [];
      for (const mt of await this.listAll('machineTypes.list', (pageToken) =>
        c.machineTypes.list(
          { project: this.project, zone, maxResults: 500, pageToken },
          {
            ...NO_LIBRARY_RETRY,
            autoPaginate: false,
          },
        ),
      )) {
        const s = shapeFromApi(mt);
        if (s) types.push(s);
      }
      const accels = await this.listAll('acceleratorTypes.list', (pageToken) =>
        c.acceleratorTypes.list(
          { project: this.project, zone, maxResults: 500, pageToken },
          {
            ...NO_LIBRARY_RETRY,
            autoPaginate: false,
          },
        ),
      );
      zones.push({
        zone,
        machineTypes: types,
        accelerators: accels.map((a) => a.name ?? '').filter(Boolean),
      });
    }
    return new MachineCatalog(this.prices, zones);
  }

  /** Reads every page of a list, one rate-limited call per page. */
  private async listAll<T>(
    method: string,
    page: (
      token: string | undefined,
    ) => Promise<[T[], unknown, { nextPageToken?: string | null } | null | undefined]>,
  ): Promise<T[]> {
    const out: T[] = [];
    let token: string | undefined;
    do {
      const [items, , raw] = await this.api.call('read', method, () => page(token));
      out.push(...items);
      token = raw?.nextPageToken || undefined;
    } while (token);
    return out;
  }

  /** The right-sizer over the current catalog. */
  async selector(): Promise<InstanceSelector> {
    return new InstanceSelector({ ...this.o.selector, catalog: await this.catalog() });
  }

  async instanceTypes(): Promise<InstanceType[]> {
    return (await this.catalog()).instanceTypes(this.unavailable.isUnavailable);
  }

  private async loadImageDiskGb(): Promise<number> {
    const img = this.o.image ?? { project: 'kip-cells', family: 'kip-cell' };
    try {
      const [image] = await this.api.call('read', 'images.getFromFamily', () =>
        this.api.clients.images.getFromFamily({ project: img.project, family: img.family }, NO_LIBRARY_RETRY),
      );
      return Number(image.diskSizeGb ?? 10);
    } catch (e) {
      if (classifyApiError(e).kind === 'notFound') {
        throw new InvalidRequestError(
          `cell image family ${img.project}/${img.family} does not exist`,
          'image',
        );
      }
      throw e;
    }
  }

  /** The offerings create would try for a request, best first, from the same selector. */
  async plan(request: ShapeRequest): Promise<PlannedOffering[]> {
    return (await this.selector())
      .plan(request, this.unavailable.isUnavailable)
      .map((c) => ({ machineType: c.machineType, zone: c.zone, capacityType: c.capacityType }));
  }

  /** Replaces a VM's labels: reads its label fingerprint, sets, and waits for the operation. */
  async setLabels(ref: CellRef, labels: Record<string, string>): Promise<void> {
    const [inst] = await this.api.call('read', 'instances.get', () =>
      this.api.clients.instances.get(
        { project: this.project, zone: ref.zone, instance: ref.name },
        NO_LIBRARY_RETRY,
      ),
    );
    const [lro] = await this.api.call('write', 'instances.setLabels', () =>
      this.api.clients.instances.setLabels(
        {
          project: this.project,
          zone: ref.zone,
          instance: ref.name,
          instancesSetLabelsRequestResource: { labels, labelFingerprint: inst.labelFingerprint ?? null },
        },
        NO_LIBRARY_RETRY,
      ),
    );
    const op = await this.api.waitZoneOperation(this.project, ref.zone, lro.latestResponse as Operation);
    const failure = classifyOperation(op);
    if (failure) throw new Error(`setting the labels of ${ref.name} failed: ${failure.message}`);
    const known = this.known.get(ref.name);
    if (known) known.labels = labels;
  }

  async create(cell: CellSpec): Promise<CellInstance> {
    const name = cell.standby?.name ?? instanceName(this.o.clusterId, cell.pod.uid, cell.generation ?? 0);
    // A process that has not listed yet may be a restart after a crash: the VM may exist in a
    // zone this attempt would not try first, where the same name would make a second VM.
    if (!this.listed) {
      this.listing ??= this.list().finally(() => (this.listing = undefined));
      await this.listing;
    }
    const existing = this.known.get(name);
    if (existing) return existing;
    if (Buffer.byteLength(cell.bootstrap) > 256 * 1024) {
      throw new InvalidRequestError(
        "the cell bootstrap document is over GCE's 256 KB metadata value limit",
        'bootstrap',
      );
    }
    const plan = (await this.selector()).plan(cell.request, this.unavailable.isUnavailable);
    const minDisk = await this.imageDiskGb.get();
    const tried: string[] = [];
    let quota: Failure | undefined;
    let capacity = false;
    for (const choice of plan) {
      const fam = choice.shape.family;
      if (this.unavailable.isUnavailable(choice.zone, fam, choice.capacityType)) continue;
      try {
        return await this.insert(cell, name, choice, minDisk);
      } catch (e) {
        if (!(e instanceof OfferingFailure)) throw e;
        const f = e.failure;
        tried.push(`${choice.machineType}/${choice.zone}/${choice.capacityType}: ${f.code ?? f.kind}`);
        this.o.log?.info(
          {
            cell: cell.cellId,
            machineType: choice.machineType,
            zone: choice.zone,
            capacityType: choice.capacityType,
            error: f.message,
          },
          'offering failed; trying the next',
        );
        if (f.kind === 'capacity') {
          capacity = true;
          this.unavailable.mark(choice.zone, fam, choice.capacityType, f.code ?? f.message);
        } else {
          // A regional quota is the same in every zone of the region.
          quota = f;
          for (const z of this.o.zones)
            this.unavailable.mark(z, fam, choice.capacityType, f.code ?? f.message);
        }
      }
    }
    if (quota && !capacity)
      throw new QuotaExceededError(`no quota left for the pod's cell: ${quota.message}`, quota.code);
    throw new InsufficientCapacityError(
      `no capacity for the pod's cell in ${this.o.zones.join(', ')}: ${tried.join('; ')}`,
      tried,
      this.o.unavailableTtlMs ?? 180_000,
    );
  }

  /** The Instance resource of a cell on a chosen offering. */
  instanceResource(cell: CellSpec, name: string, choice: Choice, minDiskGb: number): Instance {
    const { zone, shape } = choice;
    const spot = choice.capacityType === 'spot';
    const p = cell.placement;
    const privateOnly = p.privateIpOnly ?? this.o.privateIpOnly ?? true;
    const diskGb = Math.max(p.volumeSizeGb ?? this.o.diskSizeGb ?? 10, minDiskGb, 10);
    const image = this.o.image ?? { project: 'kip-cells', family: 'kip-cell' };
    const account = p.serviceAccount ?? this.o.serviceAccount;
    const nic: protos.google.cloud.compute.v1.INetworkInterface = { network: this.networkUrl() };
    const sub = this.subnetworkUrl();
    if (sub) nic.subnetwork = sub;
    if (!privateOnly)
      nic.accessConfigs = [{ type: 'ONE_TO_ONE_NAT', name: 'External NAT', networkTier: 'STANDARD' }];
    const gpu = shape.gpus;
    const scheduling: protos.google.cloud.compute.v1.IScheduling = spot
      ? // Spot VMs cannot live-migrate; when GCE reclaims one it is deleted, and the pod is rescheduled.
        {
          provisioningModel: 'SPOT',
          instanceTerminationAction: 'DELETE',
          automaticRestart: false,
          onHostMaintenance: 'TERMINATE',
        }
      : gpu
        ? // GPU VMs cannot live-migrate either.
          { provisioningModel: 'STANDARD', onHostMaintenance: 'TERMINATE', automaticRestart: true }
        : { provisioningModel: 'STANDARD', onHostMaintenance: 'MIGRATE', automaticRestart: true };
    const tags = [
      ...new Set([cellNetworkTag(this.o.clusterId), ...(this.o.networkTags ?? []), ...p.networkTags]),
    ];
    const inst: Instance = {
      name,
      machineType: `zones/${zone}/machineTypes/${shape.name}`,
      labels: cell.standby
        ? standbyLabels(this.o.clusterId, cell.cellId)
        : cellLabels(this.o.clusterId, cell.cellId, cell.pod),
      tags: { items: tags },
      disks: [
        {
          boot: true,
          autoDelete: true,
          initializeParams: {
            sourceImage: `projects/${image.project}/global/images/family/${image.family}`,
            diskSizeGb: String(diskGb),
            diskType: `zones/${zone}/diskTypes/${this.o.diskType ?? 'pd-balanced'}`,
          },
        },
      ],
      networkInterfaces: [nic],
      metadata: { items: [{ key: BOOTSTRAP_METADATA_KEY, value: cell.bootstrap }] },
      scheduling,
    };
    if (gpu?.attached) {
      inst.guestAccelerators = [
        { acceleratorType: `zones/${zone}/acceleratorTypes/${gpu.type}`, acceleratorCount: gpu.count },
      ];
    }
    if (account) inst.serviceAccounts = [{ email: account, scopes: FULL_SCOPES }];
    return inst;
  }

  private async insert(
    cell: CellSpec,
    name: string,
    choice: Choice,
    minDiskGb: number,
  ): Promise<CellInstance> {
    const { zone } = choice;
    const resource = this.instanceResource(cell, name, choice, minDiskGb);
    const requestId = insertRequestId([
      this.o.clusterId,
      name,
      zone,
      choice.machineType,
      choice.capacityType,
    ]);
    let op: Operation;
    try {
      const [lro] = await this.api.call('write', 'instances.insert', () =>
        this.api.clients.instances.insert(
          { project: this.project, zone, instanceResource: resource, requestId },
          NO_LIBRARY_RETRY,
        ),
      );
      op = lro.latestResponse as Operation;
      op = await this.api.waitZoneOperation(this.project, zone, op);
    } catch (e) {
      if (e instanceof RateLimitedError) throw e;
      this.raise(classifyApiError(e), cell, name, choice);
      return this.adopt(cell, name, zone); // the name exists: the VM from an earlier attempt
    }
    const failure = classifyOperation(op);
    if (failure) {
      this.raise(failure, cell, name, choice);
      return this.adopt(cell, name, zone);
    }
    const made: CellInstance = {
      name,
      zone,
      machineType: choice.machineType,
      capacityType: choice.capacityType,
      // The insert operation is done once GCE has placed the VM; it boots from here.
      status: 'STAGING',
      cellId: cell.cellId,
      ...(cell.standby ? {} : { pod: cell.pod }),
      labels: resource.labels as Record<string, string>,
      hourlyPriceUSD: choice.hourlyPriceUSD,
    };
    this.known.set(name, made);
    return made;
  }

  /** Throws the error a failure maps to; returns only for alreadyExists. */
  private raise(f: Failure, cell: CellSpec, name: string, choice: Choice): void {
    switch (f.kind) {
      case 'alreadyExists':
        return;
      case 'capacity':
      case 'quota':
        throw new OfferingFailure(f);
      case 'invalid':
        throw new InvalidRequestError(
          `GCE refused ${choice.machineType} in ${choice.zone} for cell ${cell.cellId}: ${f.message}`,
          'machineType',
        );
      default:
        throw new Error(`creating ${name} (${choice.machineType} in ${choice.zone}) failed: ${f.message}`);
    }
  }

  /** A VM of this name already exists: it is the cell's if its labels say so. */
  private async adopt(cell: CellSpec, name: string, zone: string): Promise<CellInstance> {
    const [inst] = await this.api.call('read', 'instances.get', () =>
      this.api.clients.instances.get({ project: this.project, zone, instance: name }, NO_LIBRARY_RETRY),
    );
    const found = this.toCell(inst, zone);
    const mine = cell.standby
      ? found.labels[LABELS.cell] === labelValue(cell.cellId)
      : found.pod?.uid === cell.pod.uid.toLowerCase();
    if (found.labels[LABELS.cluster] !== this.slug || !mine) {
      throw new InvalidRequestError(
        `a VM named ${name} in ${zone} exists and belongs to another cluster or pod`,
        'name',
      );
    }
    this.known.set(name, found);
    return found;
  }

  async delete(ref: CellRef): Promise<void> {
    try {
      // Not awaiting the delete operation keeps a cell lifecycle at three calls; the next listing
      // shows the VM going, and a failed delete is retried by the orphan collector.
      await this.api.call('write', 'instances.delete', () =>
        this.api.clients.instances.delete(
          { project: this.project, zone: ref.zone, instance: ref.name },
          NO_LIBRARY_RETRY,
        ),
      );
    } catch (e) {
      if (classifyApiError(e).kind !== 'notFound') throw e;
    }
    this.known.delete(ref.name);
  }

  /** Reads one VM; for diagnostics, never in a loop (list() serves observation). */
  async get(ref: CellRef): Promise<CellInstance> {
    try {
      const [inst] = await this.api.call('read', 'instances.get', () =>
        this.api.clients.instances.get(
          { project: this.project, zone: ref.zone, instance: ref.name },
          NO_LIBRARY_RETRY,
        ),
      );
      return this.toCell(inst, ref.zone);
    } catch (e) {
      if (classifyApiError(e).kind === 'notFound')
        throw new NotFoundError(`VM ${ref.name} in ${ref.zone} does not exist`);
      throw e;
    }
  }

  async list(): Promise<CellInstance[]> {
    const out: CellInstance[] = [];
    const filter = `labels.${LABELS.cluster} = "${this.slug}"`;
    for (const zone of this.o.zones) {
      const items = await this.listAll('instances.list', (pageToken) =>
        this.api.clients.instances.list(
          { project: this.project, zone, filter, maxResults: 500, pageToken },
          {
            ...NO_LIBRARY_RETRY,
            autoPaginate: false,
          },
        ),
      );
      // The filter runs server-side; checking again keeps another cluster's VMs out whatever the server does.
      for (const inst of items)
        if (inst.labels?.[LABELS.cluster] === this.slug) out.push(this.toCell(inst, zone));
    }
    this.known = new Map(
      out.filter((c) => c.status !== 'STOPPING' && c.status !== 'TERMINATED').map((c) => [c.name, c]),
    );
    this.listed = true;
    return out;
  }

  private toCell(inst: Instance, zone: string): CellInstance {
    const labels = (inst.labels ?? {}) as Record<string, string>;
    const nic = inst.networkInterfaces?.[0];
    const cell: CellInstance = {
      name: inst.name ?? '',
      zone: last(inst.zone) || zone,
      machineType: last(inst.machineType),
      capacityType: inst.scheduling?.provisioningModel === 'SPOT' ? 'spot' : ('on-demand' as CapacityType),
      status: inst.status ?? 'UNKNOWN',
      labels,
    };
    if (nic?.networkIP) cell.internalIp = nic.networkIP;
    const ext = nic?.accessConfigs?.[0]?.natIP;
    if (ext) cell.externalIp = ext;
    if (labels[LABELS.cell]) cell.cellId = labels[LABELS.cell];
    if (labels[LABELS.podUid]) {
      cell.pod = {
        namespace: labels[LABELS.podNamespace] ?? '',
        name: labels[LABELS.podName] ?? '',
        uid: labels[LABELS.podUid],
      };
    }
    if (inst.creationTimestamp) cell.createdAt = inst.creationTimestamp;
    return cell;
  }

  async ensureFirewall(): Promise<void> {
    const result = await ensureAgentFirewall(this.api, {
      project: this.project,
      name: firewallName(this.o.clusterId),
      network: this.networkUrl(),
      targetTag: cellNetworkTag(this.o.clusterId),
      agentPort: this.o.agentPort ?? 6421,
      sourceRanges: this.o.providerSourceRanges ?? ['10.0.0.0/8'],
    });
    this.o.log?.info({ firewall: firewallName(this.o.clusterId), result }, 'agent firewall rule');
  }

  async close(): Promise<void> {
    await this.api.close();
  }
}
