/**
 * The narrow cloud interface the cell manager uses, and the instance-type model it speaks in:
 * machine shapes carrying priced offerings (zone × capacity type), in the manner of Karpenter.
 */

export type CapacityType = 'spot' | 'on-demand';

/** One way to buy a machine shape: in a zone, as spot or on-demand, at a list price. */
export interface Offering {
  zone: string;
  capacityType: CapacityType;
  /** US dollars per hour, list price (no discounts). */
  price: number;
  /** False while a recent capacity or quota failure is remembered for this zone and family. */
  available: boolean;
}

/** Which offerings a request accepts; an absent field accepts anything. */
export interface OfferingRequirements {
  zones?: string[];
  capacityTypes?: CapacityType[];
}

/** A list of offerings with the filters the selector needs. */
export class Offerings {
  constructor(readonly items: readonly Offering[]) {}

  /** Offerings not currently marked unavailable. */
  available(): Offerings {
    return new Offerings(this.items.filter((o) => o.available));
  }

  /** Offerings in the requested zones and capacity types. */
  compatible(req: OfferingRequirements): Offerings {
    return new Offerings(
      this.items.filter(
        (o) =>
          (!req.zones || req.zones.includes(o.zone)) &&
          (!req.capacityTypes || req.capacityTypes.includes(o.capacityType)),
      ),
    );
  }

  /** The lowest-priced offering, or undefined when the list is empty. Ties keep list order. */
  cheapest(): Offering | undefined {
    let best: Offering | undefined;
    for (const o of this.items) if (!best || o.price < best.price) best = o;
    return best;
  }

  get length(): number {
    return this.items.length;
  }
}

/** GPUs on a machine: built into the type (G2, A2) or attached to it (N1). */
export interface GpuSpec {
  /** Accelerator type as GCE and GKE name it, e.g. `nvidia-tesla-t4`. */
  type: string;
  count: number;
  attached: boolean;
}

/** A machine shape: a predefined GCE machine type or a custom shape. */
export interface MachineShape {
  /** The GCE machine type name (`e2-standard-4`, `n2-custom-4-10240`, `custom-2-4096-ext`). */
  name: string;
  /** Series: e2, n2, n2d, t2d, n1, g2, a2. */
  family: string;
  /** Guest vCPUs. */
  vcpus: number;
  memoryMiB: number;
  custom: boolean;
  /** Shared-core E2: the vCPU share the VM sustains; billing and right-sizing use it. */
  baselineVcpus?: number;
  /** Custom shapes only: memory beyond the family's per-vCPU maximum, billed at the extended rate. */
  extendedMemoryMiB?: number;
  gpus?: GpuSpec;
}

/** A shape with its priced offerings. */
export interface InstanceType extends MachineShape {
  offerings: Offerings;
}

/** What a pod needs of its machine, after the kubelet's rule and the annotations. */
export interface ShapeRequest {
  /** The pod's effective CPU request in millicores (without the agent's overhead). */
  cpuMillis: number;
  /** The pod's effective memory request in bytes (without the agent's overhead). */
  memoryBytes: number;
  /** `nvidia.com/gpu` limit. */
  gpus: number;
  /** Accelerator type (nodeSelector `cloud.google.com/gke-accelerator`). */
  accelerator?: string;
  /** `pod.elotl.co/instance-type`: an exact machine type or a glob (`n2-*`). */
  instanceType?: string;
  /** `pod.elotl.co/launch-type: spot`. */
  spot: boolean;
}

/** How the VM is put on the network and what it runs as, from the pod's annotations. */
export interface CellPlacement {
  /** No external IP (`pod.elotl.co/private-ip-only`); undefined keeps the provider default. */
  privateIpOnly?: boolean;
  /** Boot disk size in GB (`pod.elotl.co/volume-size`); undefined keeps the provider default. */
  volumeSizeGb?: number;
  /** Extra network tags (`pod.elotl.co/security-groups`). */
  networkTags: string[];
  /** Service account e-mail for the VM (`pod.elotl.co/instance-profile`). */
  serviceAccount?: string;
}

/** The pod a cell is for. */
export interface PodIdentity {
  namespace: string;
  name: string;
  uid: string;
}

/** Everything needed to create a cell VM. */
export interface CellSpec {
  /** The caller's cell record id (stored as a label; the orphan collector asks about it). */
  cellId: string;
  pod: PodIdentity;
  request: ShapeRequest;
  placement: CellPlacement;
  /** The cell agent's configuration document, passed through as the `kip-cell-agent-config` metadata value. */
  bootstrap: string;
  /** Incremented when a pod is restarted on a new cell; 0 for the first. Part of the VM name. */
  generation?: number;
  /**
   * A standby cell: the VM gets this name and standby labels (no pod labels); `pod` is ignored.
   * `request.instanceType` names its machine type and `request.spot` its capacity type.
   */
  standby?: { name: string };
}

/** One acceptable offering for a request, best first (what `create` would try, in order). */
export interface PlannedOffering {
  machineType: string;
  zone: string;
  capacityType: CapacityType;
}

/** Where a VM is: enough to delete it. */
export interface CellRef {
  name: string;
  zone: string;
}

/** A cell VM as the cloud reports it. */
export interface CellInstance extends CellRef {
  machineType: string;
  capacityType: CapacityType;
  /** GCE status: PROVISIONING, STAGING, RUNNING, STOPPING, TERMINATED, ... */
  status: string;
  /** Known once the VM has been listed (not on the insert's reply). */
  internalIp?: string;
  externalIp?: string;
  cellId?: string;
  pod?: PodIdentity;
  labels: Record<string, string>;
  /** List price of the chosen offering, when this process created the VM. */
  hourlyPriceUSD?: number;
  createdAt?: string;
}

/**
 * The cloud as the cell manager sees it. Every method is safe to call again after a crash:
 * create with the same spec never makes a second VM; delete of a missing VM succeeds.
 */
export interface CloudProvider {
  /**
   * Creates the cell's VM on the cheapest available offering that fits, falling back across
   * zones, then machine families, then spot to on-demand. Resolves once GCE reports the insert
   * done. Throws InvalidRequestError, InsufficientCapacityError, QuotaExceededError or
   * RateLimitedError.
   */
  create(cell: CellSpec): Promise<CellInstance>;
  /** Deletes the VM. Idempotent: a VM that is already gone counts as deleted. */
  delete(ref: CellRef): Promise<void>;
  /** Every VM this cluster owns, from one listing call (not one call per VM). */
  list(): Promise<CellInstance[]>;
  /** Creates or repairs the firewall rule letting the provider reach the cells' agent port. */
  ensureFirewall(): Promise<void>;
  /** The predefined machine types with priced offerings in the configured zones. */
  instanceTypes(): Promise<InstanceType[]>;
  /** The offerings `create` would try for a request, best first (the same selection). */
  plan?(request: ShapeRequest): Promise<PlannedOffering[]>;
  /** Replaces a VM's labels (a standby cell handed to a pod gets the pod's labels). */
  setLabels?(ref: CellRef, labels: Record<string, string>): Promise<void>;
}
