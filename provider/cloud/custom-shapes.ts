import type { MachineShape } from './cloud-provider.ts';

/**
 * GCE's custom machine type rules for the series Kip builds custom shapes in: E2, N2, N2D and
 * N1. Memory is set in 256 MiB steps within a per-vCPU band; N2, N2D and N1 sell memory beyond
 * the band as "extended memory" at a higher rate, E2 does not.
 */
export interface CustomRules {
  family: string;
  /** The machine type name prefix: `e2-custom`, `n2-custom`, `n2d-custom`, `custom` (N1). */
  prefix: string;
  vcpuCounts: number[];
  minGiBPerVcpu: number;
  maxGiBPerVcpu: number;
  /** Largest total memory, extended memory included. */
  maxMemoryGiB: number;
  extendedMemory: boolean;
}

const range = (from: number, to: number, step: number) =>
  Array.from({ length: Math.floor((to - from) / step) + 1 }, (_, i) => from + i * step);

export const CUSTOM_RULES: Record<string, CustomRules> = {
  e2: {
    family: 'e2',
    prefix: 'e2-custom',
    vcpuCounts: range(2, 32, 2),
    minGiBPerVcpu: 0.5,
    maxGiBPerVcpu: 8,
    maxMemoryGiB: 128,
    extendedMemory: false,
  },
  n2: {
    family: 'n2',
    prefix: 'n2-custom',
    vcpuCounts: [...range(2, 32, 2), ...range(36, 128, 4)],
    minGiBPerVcpu: 0.5,
    maxGiBPerVcpu: 8,
    maxMemoryGiB: 624,
    extendedMemory: true,
  },
  n2d: {
    family: 'n2d',
    prefix: 'n2d-custom',
    vcpuCounts: [2, 4, 8, 16, 32, 48, 64, 80, 96],
    minGiBPerVcpu: 0.5,
    maxGiBPerVcpu: 8,
    maxMemoryGiB: 768,
    extendedMemory: true,
  },
  n1: {
    family: 'n1',
    prefix: 'custom',
    vcpuCounts: [1, ...range(2, 96, 2)],
    minGiBPerVcpu: 0.9,
    maxGiBPerVcpu: 6.5,
    maxMemoryGiB: 624,
    extendedMemory: true,
  },
};

/** Shared-core E2 custom shapes: a fraction of 2 vCPUs with memory in a fixed band. */
export const E2_SHARED_CUSTOM: Record<string, { baselineVcpus: number; minGiB: number; maxGiB: number }> = {
  micro: { baselineVcpus: 0.25, minGiB: 1, maxGiB: 2 },
  small: { baselineVcpus: 0.5, minGiB: 2, maxGiB: 4 },
  medium: { baselineVcpus: 1, minGiB: 4, maxGiB: 8 },
};

export const MEMORY_STEP_MIB = 256;

/** Rounds MiB up to GCE's 256 MiB step. */
export function roundMemoryMiB(mib: number): number {
  return Math.ceil(mib / MEMORY_STEP_MIB) * MEMORY_STEP_MIB;
}

/** A shape outside GCE's custom rules; the message states the rule broken. */
export class CustomShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CustomShapeError';
  }
}

/**
 * Builds a custom shape, checking GCE's rules; throws CustomShapeError naming the rule.
 * Memory above the per-vCPU maximum becomes extended memory where the series allows it.
 */
export function customShape(family: string, vcpus: number, memoryMiB: number): MachineShape {
  const r = CUSTOM_RULES[family];
  if (!r)
    throw new CustomShapeError(`series ${family} has no custom machine types (custom: e2, n2, n2d, n1)`);
  if (!r.vcpuCounts.includes(vcpus)) {
    throw new CustomShapeError(
      `${family} custom vCPUs must be one of ${describeCounts(r.vcpuCounts)}; got ${vcpus}`,
    );
  }
  if (memoryMiB % MEMORY_STEP_MIB !== 0) {
    throw new CustomShapeError(`custom memory must be a multiple of 256 MiB; got ${memoryMiB} MiB`);
  }
  const minMiB = Math.ceil((r.minGiBPerVcpu * vcpus * 1024) / MEMORY_STEP_MIB) * MEMORY_STEP_MIB;
  if (memoryMiB < minMiB) {
    throw new CustomShapeError(
      `${family} custom memory must be at least ${r.minGiBPerVcpu} GiB per vCPU (${minMiB} MiB for ${vcpus}); got ${memoryMiB} MiB`,
    );
  }
  if (memoryMiB > r.maxMemoryGiB * 1024) {
    throw new CustomShapeError(
      `${family} custom memory is at most ${r.maxMemoryGiB} GiB; got ${memoryMiB} MiB`,
    );
  }
  const bandMiB = Math.floor((r.maxGiBPerVcpu * vcpus * 1024) / MEMORY_STEP_MIB) * MEMORY_STEP_MIB;
  const extended = Math.max(0, memoryMiB - bandMiB);
  if (extended > 0 && !r.extendedMemory) {
    throw new CustomShapeError(
      `${family} custom memory is at most ${r.maxGiBPerVcpu} GiB per vCPU (${bandMiB} MiB for ${vcpus}) and ${family} has no extended memory; got ${memoryMiB} MiB`,
    );
  }
  return {
    name: `${r.prefix}-${vcpus}-${memoryMiB}${extended > 0 ? '-ext' : ''}`,
    family,
    vcpus,
    memoryMiB,
    custom: true,
    ...(extended > 0 ? { extendedMemoryMiB: extended } : {}),
  };
}

/** Builds a shared-core E2 custom shape (`e2-custom-small-3072`); throws CustomShapeError. */
export function sharedCustomShape(size: string, memoryMiB: number): MachineShape {
  const s = E2_SHARED_CUSTOM[size];
  if (!s) throw new CustomShapeError(`shared-core custom sizes are micro, small and medium; got ${size}`);
  if (memoryMiB % MEMORY_STEP_MIB !== 0) {
    throw new CustomShapeError(`custom memory must be a multiple of 256 MiB; got ${memoryMiB} MiB`);
  }
  if (memoryMiB < s.minGiB * 1024 || memoryMiB > s.maxGiB * 1024) {
    throw new CustomShapeError(
      `e2-custom-${size} memory must be ${s.minGiB}-${s.maxGiB} GiB; got ${memoryMiB} MiB`,
    );
  }
  return {
    name: `e2-custom-${size}-${memoryMiB}`,
    family: 'e2',
    vcpus: 2,
    memoryMiB,
    custom: true,
    baselineVcpus: s.baselineVcpus,
  };
}

const NAME = /^(?:(e2|n2|n2d)-)?custom-(?:(micro|small|medium)-)?(\d+)(?:-(\d+))?(-ext)?$/;

/**
 * Reads a custom machine type name back into a checked shape; undefined when the name is not a
 * custom name at all, CustomShapeError when it is one that breaks GCE's rules.
 */
export function parseCustomName(name: string): MachineShape | undefined {
  const m = NAME.exec(name);
  if (!m) return undefined;
  const family = m[1] ?? 'n1';
  if (m[2]) {
    if (family !== 'e2' || m[4] !== undefined || m[5])
      throw new CustomShapeError(`malformed custom name ${name}`);
    return sharedCustomShape(m[2], Number(m[3]));
  }
  if (m[4] === undefined) throw new CustomShapeError(`custom name ${name} lacks the memory in MiB`);
  const shape = customShape(family, Number(m[3]), Number(m[4]));
  if (Boolean(m[5]) !== (shape.extendedMemoryMiB !== undefined)) {
    throw new CustomShapeError(
      m[5]
        ? `${name}: -ext is only for memory beyond ${CUSTOM_RULES[family]!.maxGiBPerVcpu} GiB per vCPU`
        : `${name}: memory beyond ${CUSTOM_RULES[family]!.maxGiBPerVcpu} GiB per vCPU needs the -ext suffix`,
    );
  }
  return shape;
}

/**
 * Every valid custom shape of a series that holds `vcpus` and `memoryMiB`, smallest memory per
 * vCPU count: the candidates a right-sizer prices. Includes shared-core E2 customs when the
 * CPU need is within their baseline.
 */
export function fittingCustomShapes(family: string, vcpus: number, memoryMiB: number): MachineShape[] {
  const r = CUSTOM_RULES[family];
  if (!r) return [];
  const out: MachineShape[] = [];
  const need = roundMemoryMiB(memoryMiB);
  if (family === 'e2') {
    for (const [size, s] of Object.entries(E2_SHARED_CUSTOM)) {
      if (s.baselineVcpus < vcpus) continue;
      const mem = Math.max(need, s.minGiB * 1024);
      if (mem <= s.maxGiB * 1024) out.push(sharedCustomShape(size, mem));
    }
  }
  for (const n of r.vcpuCounts) {
    if (n < vcpus) continue;
    const minMiB = Math.ceil((r.minGiBPerVcpu * n * 1024) / MEMORY_STEP_MIB) * MEMORY_STEP_MIB;
    const mem = Math.max(need, minMiB);
    try {
      out.push(customShape(family, n, mem));
    } catch {
      // This vCPU count cannot hold that memory (no extended memory, or over the total): try more vCPUs.
    }
  }
  return out;
}

function describeCounts(counts: number[]): string {
  if (counts.length <= 10) return counts.join(', ');
  return `${counts.slice(0, 4).join(', ')}, ..., ${counts.slice(-2).join(', ')}`;
}
