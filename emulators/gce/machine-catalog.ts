/**
 * The machine catalog the emulator serves: predefined machine types and accelerator types of the
 * families Kip sizes cells from, with GCE's shapes (vCPUs, memory in MiB, built-in GPUs).
 */

/** A predefined machine type, before it is rendered for one zone. */
export interface MachineTypeSpec {
  name: string;
  family: string;
  guestCpus: number;
  memoryMb: number;
  isSharedCpu: boolean;
  description: string;
  /** GPUs that come with the machine type (A2, G2). */
  accelerators?: { guestAcceleratorType: string; guestAcceleratorCount: number }[];
}

export interface AcceleratorSpec {
  name: string;
  description: string;
  maximumCardsPerInstance: number;
  /** Regional quota metric the cards count against. */
  quotaMetric: string;
  /** Families where the card is attached with guestAccelerators (N1); others come built into a machine type. */
  attachableTo: string[];
  /** For attachable cards: the most vCPUs allowed per card count. */
  maxVcpusByCount?: Record<number, number>;
}

const GIB = 1024;

function sized(family: string, kind: string, sizes: number[], mbPerVcpu: number): MachineTypeSpec[] {
  return sizes.map((n) => {
    const memoryMb = Math.round(n * mbPerVcpu);
    const gb = Math.round((memoryMb / GIB) * 100) / 100;
    return {
      name: `${family}-${kind}-${n}`,
      family,
      guestCpus: n,
      memoryMb,
      isSharedCpu: false,
      description: `${n} vCPU${n === 1 ? '' : 's'}, ${gb} GB RAM`,
    };
  });
}

function gpu(
  name: string,
  family: string,
  guestCpus: number,
  memoryGb: number,
  card: string,
  cards: number,
): MachineTypeSpec {
  return {
    name,
    family,
    guestCpus,
    memoryMb: memoryGb * GIB,
    isSharedCpu: false,
    description: `${guestCpus} vCPUs, ${memoryGb} GB RAM, ${cards} ${card} GPU${cards === 1 ? '' : 's'}`,
    accelerators: [{ guestAcceleratorType: card, guestAcceleratorCount: cards }],
  };
}

const shared = (name: string, family: string, cpus: number, memoryMb: number, description: string) => ({
  name,
  family,
  guestCpus: cpus,
  memoryMb,
  isSharedCpu: true,
  description,
});

/** Every predefined machine type, in every zone unless its accelerator is missing there. */
export const MACHINE_TYPES: MachineTypeSpec[] = [
  shared('e2-micro', 'e2', 2, 1024, 'Efficient Instance, 2 vCPU (1/4 shared physical core) and 1 GB RAM'),
  shared('e2-small', 'e2', 2, 2048, 'Efficient Instance, 2 vCPU (1/2 shared physical core) and 2 GB RAM'),
  shared('e2-medium', 'e2', 2, 4096, 'Efficient Instance, 2 vCPU (1 shared physical core) and 4 GB RAM'),
  ...sized('e2', 'standard', [2, 4, 8, 16, 32], 4 * GIB),
  ...sized('e2', 'highmem', [2, 4, 8, 16], 8 * GIB),
  ...sized('e2', 'highcpu', [2, 4, 8, 16, 32], GIB),
  ...sized('n2', 'standard', [2, 4, 8, 16, 32, 48, 64, 80, 96, 128], 4 * GIB),
  ...sized('n2', 'highmem', [2, 4, 8, 16, 32, 48, 64, 80, 96, 128], 8 * GIB),
  ...sized('n2', 'highcpu', [2, 4, 8, 16, 32, 48, 64, 80, 96], GIB),
  ...sized('n2d', 'standard', [2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224], 4 * GIB),
  ...sized('n2d', 'highmem', [2, 4, 8, 16, 32, 48, 64, 80, 96], 8 * GIB),
  ...sized('n2d', 'highcpu', [2, 4, 8, 16, 32, 48, 64, 80, 96, 128, 224], GIB),
  ...sized('t2d', 'standard', [1, 2, 4, 8, 16, 32, 48, 60], 4 * GIB),
  shared('f1-micro', 'n1', 1, 614, '1 vCPU (shared physical core) and 0.6 GB RAM'),
  shared('g1-small', 'n1', 1, 1740, '1 vCPU (shared physical core) and 1.7 GB RAM'),
  ...sized('n1', 'standard', [1, 2, 4, 8, 16, 32, 64, 96], 3.75 * GIB),
  ...sized('n1', 'highmem', [2, 4, 8, 16, 32, 64, 96], 6.5 * GIB),
  ...sized('n1', 'highcpu', [2, 4, 8, 16, 32, 64, 96], 0.9 * GIB),
  gpu('a2-highgpu-1g', 'a2', 12, 85, 'nvidia-tesla-a100', 1),
  gpu('a2-highgpu-2g', 'a2', 24, 170, 'nvidia-tesla-a100', 2),
  gpu('a2-highgpu-4g', 'a2', 48, 340, 'nvidia-tesla-a100', 4),
  gpu('a2-highgpu-8g', 'a2', 96, 680, 'nvidia-tesla-a100', 8),
  gpu('a2-megagpu-16g', 'a2', 96, 1360, 'nvidia-tesla-a100', 16),
  gpu('a2-ultragpu-1g', 'a2', 12, 170, 'nvidia-a100-80gb', 1),
  gpu('a2-ultragpu-2g', 'a2', 24, 340, 'nvidia-a100-80gb', 2),
  gpu('a2-ultragpu-4g', 'a2', 48, 680, 'nvidia-a100-80gb', 4),
  gpu('a2-ultragpu-8g', 'a2', 96, 1360, 'nvidia-a100-80gb', 8),
  gpu('g2-standard-4', 'g2', 4, 16, 'nvidia-l4', 1),
  gpu('g2-standard-8', 'g2', 8, 32, 'nvidia-l4', 1),
  gpu('g2-standard-12', 'g2', 12, 48, 'nvidia-l4', 1),
  gpu('g2-standard-16', 'g2', 16, 64, 'nvidia-l4', 1),
  gpu('g2-standard-24', 'g2', 24, 96, 'nvidia-l4', 2),
  gpu('g2-standard-32', 'g2', 32, 128, 'nvidia-l4', 1),
  gpu('g2-standard-48', 'g2', 48, 192, 'nvidia-l4', 4),
  gpu('g2-standard-96', 'g2', 96, 384, 'nvidia-l4', 8),
];

export const ACCELERATOR_TYPES: AcceleratorSpec[] = [
  {
    name: 'nvidia-tesla-t4',
    description: 'NVIDIA T4',
    maximumCardsPerInstance: 4,
    quotaMetric: 'NVIDIA_T4_GPUS',
    attachableTo: ['n1'],
    maxVcpusByCount: { 1: 48, 2: 48, 4: 96 },
  },
  {
    name: 'nvidia-tesla-v100',
    description: 'NVIDIA V100',
    maximumCardsPerInstance: 8,
    quotaMetric: 'NVIDIA_V100_GPUS',
    attachableTo: ['n1'],
    maxVcpusByCount: { 1: 12, 2: 24, 4: 48, 8: 96 },
  },
  {
    name: 'nvidia-tesla-p4',
    description: 'NVIDIA Tesla P4',
    maximumCardsPerInstance: 4,
    quotaMetric: 'NVIDIA_P4_GPUS',
    attachableTo: ['n1'],
    maxVcpusByCount: { 1: 24, 2: 48, 4: 96 },
  },
  {
    name: 'nvidia-tesla-a100',
    description: 'NVIDIA A100 40GB',
    maximumCardsPerInstance: 16,
    quotaMetric: 'NVIDIA_A100_GPUS',
    attachableTo: [],
  },
  {
    name: 'nvidia-a100-80gb',
    description: 'NVIDIA A100 80GB',
    maximumCardsPerInstance: 8,
    quotaMetric: 'NVIDIA_A100_80GB_GPUS',
    attachableTo: [],
  },
  {
    name: 'nvidia-l4',
    description: 'NVIDIA L4',
    maximumCardsPerInstance: 8,
    quotaMetric: 'NVIDIA_L4_GPUS',
    attachableTo: [],
  },
];

/**
 * Accelerators offered per zone suffix. The second zone of a region lacks P4 and A100 80GB, so a
 * client meets real zone-to-zone differences (a2-ultragpu exists only in the first zone).
 */
const ZONE_ACCELERATORS: string[][] = [
  [
    'nvidia-tesla-t4',
    'nvidia-tesla-v100',
    'nvidia-tesla-p4',
    'nvidia-tesla-a100',
    'nvidia-a100-80gb',
    'nvidia-l4',
  ],
  ['nvidia-tesla-t4', 'nvidia-tesla-v100', 'nvidia-tesla-a100', 'nvidia-l4'],
];

/** Regional CPU quota metric of a machine family. */
export function cpuQuotaMetric(family: string): string {
  switch (family) {
    case 'n2':
      return 'N2_CPUS';
    case 'n2d':
      return 'N2D_CPUS';
    case 't2d':
      return 'T2D_CPUS';
    case 'a2':
      return 'A2_CPUS';
    case 'g2':
      return 'G2_CPUS';
    default:
      return 'CPUS';
  }
}

/** The catalog of one emulator: which types exist in which of its zones. */
export class MachineCatalog {
  private readonly acceleratorsByZone = new Map<string, Set<string>>();

  constructor(readonly zones: string[]) {
    zones.forEach((z, i) => this.acceleratorsByZone.set(z, new Set(ZONE_ACCELERATORS[i % 2])));
  }

  hasZone(zone: string): boolean {
    return this.acceleratorsByZone.has(zone);
  }

  acceleratorTypes(zone: string): AcceleratorSpec[] {
    const offered = this.acceleratorsByZone.get(zone);
    return offered ? ACCELERATOR_TYPES.filter((a) => offered.has(a.name)) : [];
  }

  acceleratorType(zone: string, name: string): AcceleratorSpec | undefined {
    return this.acceleratorTypes(zone).find((a) => a.name === name);
  }

  machineTypes(zone: string): MachineTypeSpec[] {
    const offered = this.acceleratorsByZone.get(zone);
    if (!offered) return [];
    return MACHINE_TYPES.filter((m) =>
      (m.accelerators ?? []).every((a) => offered.has(a.guestAcceleratorType)),
    );
  }

  machineType(zone: string, name: string): MachineTypeSpec | undefined {
    return this.machineTypes(zone).find((m) => m.name === name);
  }
}
