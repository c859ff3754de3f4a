import type { protos } from '@google-cloud/compute';
import {
  Offerings,
  type CapacityType,
  type InstanceType,
  type MachineShape,
  type Offering,
} from './cloud-provider.ts';
import { CUSTOM_RULES } from './custom-shapes.ts';
import type { PriceTable } from './pricing.ts';

/** The machine types and accelerators one zone offers. */
export interface ZoneOffer {
  zone: string;
  machineTypes: MachineShape[];
  accelerators: string[];
}

/** Answers whether a (zone, series, capacity type) recently failed; see UnavailableOfferings. */
export type UnavailableCheck = (zone: string, family: string, capacityType: CapacityType) => boolean;

/** The sustained vCPU share of GCE's shared-core types (the API reports only the burst vCPUs). */
export const SHARED_CORE_BASELINE: Record<string, number> = {
  'e2-micro': 0.25,
  'e2-small': 0.5,
  'e2-medium': 1,
};

const GiB = 1024;
const CAPACITY_TYPES: CapacityType[] = ['on-demand', 'spot'];

function series(family: string, kind: string, counts: number[], gibPerVcpu: number): MachineShape[] {
  return counts.map((n) => ({
    name: `${family}-${kind}-${n}`,
    family,
    vcpus: n,
    memoryMiB: Math.round(n * gibPerVcpu * GiB),
    custom: false,
  }));
}

/**
 * The predefined machine types of us-central1 that Kip prices, for use without an API (the
 * `kip shape` command, benchmarks). The GCE provider reads the live list from machineTypes.
 */
export function builtinMachineTypes(): MachineShape[] {
  const out: MachineShape[] = [
    { name: 'e2-micro', family: 'e2', vcpus: 2, memoryMiB: 1 * GiB, custom: false, baselineVcpus: 0.25 },
    { name: 'e2-small', family: 'e2', vcpus: 2, memoryMiB: 2 * GiB, custom: false, baselineVcpus: 0.5 },
    { name: 'e2-medium', family: 'e2', vcpus: 2, memoryMiB: 4 * GiB, custom: false, baselineVcpus: 1 },
    ...series('e2', 'standard', [2, 4, 8, 16, 32], 4),
    ...series('e2', 'highmem', [2, 4, 8, 16], 8),
    ...series('e2', 'highcpu', [2, 4, 8, 16, 32], 1),
    ...series('n2', 'standard', [2, 4, 8, 16, 32, 48, 64, 80, 96, 128], 4),
    ...series('n2', 'highmem', [2, 4, 8, 16, 32, 48, 64, 80, 96, 128], 8),
    ...series('n2', 'highcpu', [2, 4, 8, 16, 32, 48, 64, 80, 96], 1),
    ...series('n2d', 'standard', [2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224], 4),
    ...series('n2d', 'highmem', [2, 4, 8, 16, 32, 48, 64, 80, 96], 8),
    ...series('n2d', 'highcpu', [2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224], 1),
    ...series('t2d', 'standard', [1, 2, 4, 8, 16, 32, 48, 60], 4),
    ...series('n1', 'standard', [1, 2, 4, 8, 16, 32, 64, 96], 3.75),
    ...series('n1', 'highmem', [2, 4, 8, 16, 32, 64, 96], 6.5),
    ...series('n1', 'highcpu', [2, 4, 8, 16, 32, 64, 96], 0.9),
  ];
  for (const [n, gpus] of [
    [4, 1],
    [8, 1],
    [12, 1],
    [16, 1],
    [24, 2],
    [32, 1],
    [48, 4],
    [96, 8],
  ] as const) {
    out.push({
      name: `g2-standard-${n}`,
      family: 'g2',
      vcpus: n,
      memoryMiB: n * 4 * GiB,
      custom: false,
      gpus: { type: 'nvidia-l4', count: gpus, attached: false },
    });
  }
  for (const [name, n, gib, gpus] of [
    ['a2-highgpu-1g', 12, 85, 1],
    ['a2-highgpu-2g', 24, 170, 2],
    ['a2-highgpu-4g', 48, 340, 4],
    ['a2-highgpu-8g', 96, 680, 8],
    ['a2-megagpu-16g', 96, 1360, 16],
  ] as const) {
    out.push({
      name,
      family: 'a2',
      vcpus: n,
      memoryMiB: gib * GiB,
      custom: false,
      gpus: { type: 'nvidia-tesla-a100', count: gpus, attached: false },
    });
  }
  return out;
}

/** The accelerators Kip attaches or finds built in, offered in every built-in zone. */
export const BUILTIN_ACCELERATORS = [
  'nvidia-tesla-t4',
  'nvidia-tesla-p4',
  'nvidia-tesla-p100',
  'nvidia-tesla-v100',
  'nvidia-l4',
  'nvidia-tesla-a100',
];

/** Turns a machineTypes API item into a shape; undefined for items Kip does not run on. */
export function shapeFromApi(mt: protos.google.cloud.compute.v1.IMachineType): MachineShape | undefined {
  if (!mt.name || !mt.guestCpus || !mt.memoryMb) return undefined;
  const family = mt.name.split('-')[0]!;
  const shape: MachineShape = {
    name: mt.name,
    family,
    vcpus: Number(mt.guestCpus),
    memoryMiB: Number(mt.memoryMb),
    custom: false,
  };
  const baseline = SHARED_CORE_BASELINE[mt.name];
  if (baseline !== undefined) shape.baselineVcpus = baseline;
  else if (mt.isSharedCpu) return undefined; // f1/g1 shared-core: legacy, not priced
  const acc = mt.accelerators?.[0];
  if (acc?.guestAcceleratorType && acc.guestAcceleratorCount) {
    shape.gpus = {
      type: acc.guestAcceleratorType,
      count: Number(acc.guestAcceleratorCount),
      attached: false,
    };
  }
  return shape;
}

/**
 * The machine shapes on offer in the configured zones, priced from the price table. Custom
 * shapes are offered in a zone wherever that zone lists a predefined type of the same series.
 */
export class MachineCatalog {
  private readonly byName = new Map<string, MachineShape>();

  constructor(
    readonly prices: PriceTable,
    readonly zones: ZoneOffer[],
  ) {
    for (const z of zones)
      for (const mt of z.machineTypes) if (!this.byName.has(mt.name)) this.byName.set(mt.name, mt);
  }

  /** The built-in catalog in the given zones (all types and accelerators in every zone). */
  static builtin(prices: PriceTable, zones: string[]): MachineCatalog {
    const types = builtinMachineTypes();
    return new MachineCatalog(
      prices,
      zones.map((zone) => ({ zone, machineTypes: types, accelerators: BUILTIN_ACCELERATORS })),
    );
  }

  get zoneNames(): string[] {
    return this.zones.map((z) => z.zone);
  }

  /** Predefined types Kip can price, each once. */
  predefined(): MachineShape[] {
    return [...this.byName.values()].filter((s) => this.prices.price(s, 'on-demand') !== undefined);
  }

  /** A predefined type by name. */
  find(name: string): MachineShape | undefined {
    return this.byName.get(name);
  }

  /** Series that have at least one type in some zone. */
  families(): Set<string> {
    return new Set([...this.byName.values()].map((s) => s.family));
  }

  /** Accelerators offered in at least one zone. */
  accelerators(): Set<string> {
    return new Set(this.zones.flatMap((z) => z.accelerators));
  }

  /** Zones where a shape can be created. */
  zonesFor(shape: MachineShape): string[] {
    return this.zones
      .filter((z) => {
        const typeThere = shape.custom
          ? CUSTOM_RULES[shape.family] !== undefined && z.machineTypes.some((m) => m.family === shape.family)
          : z.machineTypes.some((m) => m.name === shape.name);
        // Attached GPUs must be offered in the zone; built-in ones come with the listed type.
        const gpuThere = !shape.gpus?.attached || z.accelerators.includes(shape.gpus.type);
        return typeThere && gpuThere;
      })
      .map((z) => z.zone);
  }

  /** A shape with its priced offerings: every zone it exists in × every capacity type priced. */
  instanceType(shape: MachineShape, unavailable: UnavailableCheck = () => false): InstanceType {
    const offerings: Offering[] = [];
    for (const capacityType of CAPACITY_TYPES) {
      const price = this.prices.price(shape, capacityType);
      if (price === undefined) continue;
      for (const zone of this.zonesFor(shape)) {
        offerings.push({
          zone,
          capacityType,
          price,
          available: !unavailable(zone, shape.family, capacityType),
        });
      }
    }
    return { ...shape, offerings: new Offerings(offerings) };
  }

  /** Every priced predefined type with its offerings. */
  instanceTypes(unavailable?: UnavailableCheck): InstanceType[] {
    return this.predefined()
      .map((s) => this.instanceType(s, unavailable))
      .filter((t) => t.offerings.length > 0);
  }
}
