import type { MachineTypeSpec } from './machine-catalog.ts';

/** GCE's custom-shape rules for one family. Memory figures are MiB. */
interface CustomRules {
  family: string;
  vcpuRule: string;
  vcpuOk: (n: number) => boolean;
  minMbPerVcpu: number;
  maxMbPerVcpu: number;
  /** Total memory allowed with the `-ext` suffix; absent where extended memory does not exist. */
  extendedMaxMb?: number;
  /** Total memory without extended memory (E2: 128 GB). */
  maxMb?: number;
}

const GIB = 1024;

const RULES: Record<string, CustomRules> = {
  n1: {
    family: 'n1',
    vcpuRule: '1 or an even number up to 96',
    vcpuOk: (n) => n === 1 || (n % 2 === 0 && n >= 2 && n <= 96),
    minMbPerVcpu: 0.9 * GIB,
    maxMbPerVcpu: 6.5 * GIB,
    extendedMaxMb: 624 * GIB,
  },
  e2: {
    family: 'e2',
    vcpuRule: 'an even number between 2 and 32',
    vcpuOk: (n) => n % 2 === 0 && n >= 2 && n <= 32,
    minMbPerVcpu: 0.5 * GIB,
    maxMbPerVcpu: 8 * GIB,
    maxMb: 128 * GIB,
  },
  n2: {
    family: 'n2',
    vcpuRule: 'an even number between 2 and 32, or a multiple of 4 between 36 and 128',
    vcpuOk: (n) => (n % 2 === 0 && n >= 2 && n <= 32) || (n % 4 === 0 && n >= 36 && n <= 128),
    minMbPerVcpu: 0.5 * GIB,
    maxMbPerVcpu: 8 * GIB,
    extendedMaxMb: 624 * GIB,
  },
  n2d: {
    family: 'n2d',
    vcpuRule: 'one of 2, 4, 8, 16, 32, 48, 64, 80, 96',
    vcpuOk: (n) => [2, 4, 8, 16, 32, 48, 64, 80, 96].includes(n),
    minMbPerVcpu: 0.5 * GIB,
    maxMbPerVcpu: 8 * GIB,
    extendedMaxMb: 768 * GIB,
  },
};

/** E2 shared-core custom shapes: fixed fractional vCPU, memory within a band. */
const E2_SHARED: Record<string, { minMb: number; maxMb: number; share: string }> = {
  micro: { minMb: 1 * GIB, maxMb: 2 * GIB, share: '1/4' },
  small: { minMb: 2 * GIB, maxMb: 4 * GIB, share: '1/2' },
  medium: { minMb: 4 * GIB, maxMb: 8 * GIB, share: '1' },
};

/** The outcome of reading a machine type name that may be custom. */
export type CustomParse =
  | { kind: 'not-custom' }
  | { kind: 'invalid'; reason: string }
  | { kind: 'unknown' }
  | { kind: 'ok'; spec: MachineTypeSpec };

const NAME = /^(?:(n1|e2|n2|n2d|[a-z][a-z0-9]*)-)?custom-(?:(micro|small|medium)-(\d+)|(\d+)-(\d+))(-ext)?$/;

function custom(
  name: string,
  family: string,
  guestCpus: number,
  memoryMb: number,
  shared: boolean,
): MachineTypeSpec {
  return {
    name,
    family,
    guestCpus,
    memoryMb,
    isSharedCpu: shared,
    description: 'Custom created machine type.',
  };
}

/**
 * Parses and validates a custom machine type name (`custom-2-4096`, `n2-custom-4-8192-ext`,
 * `e2-custom-small-3072`) by GCE's rules. `unknown` means GCE has no such custom family (t2d has
 * none); `invalid` carries the reason GCE gives after "Invalid value for field ...".
 */
export function parseCustomMachineType(name: string): CustomParse {
  if (!name.includes('custom-')) return { kind: 'not-custom' };
  const m = NAME.exec(name);
  if (!m) return { kind: 'unknown' };
  const [, prefix, sharedKind, sharedMem, cpuText, memText, ext] = m;
  const family = prefix ?? 'n1';
  const rules = RULES[family];
  if (!rules) return { kind: 'unknown' };
  const memoryMb = Number(sharedMem ?? memText);
  if (memoryMb % 256 !== 0) {
    return {
      kind: 'invalid',
      reason: `Memory should be a multiple of 256MiB, while ${memoryMb}MiB is requested.`,
    };
  }
  if (sharedKind) {
    const band = E2_SHARED[sharedKind]!;
    if (family !== 'e2' || ext) return { kind: 'unknown' };
    if (memoryMb < band.minMb || memoryMb > band.maxMb) {
      return {
        kind: 'invalid',
        reason: `Memory should be between ${band.minMb}MiB and ${band.maxMb}MiB for e2-custom-${sharedKind}, while ${memoryMb}MiB is requested.`,
      };
    }
    return { kind: 'ok', spec: custom(name, 'e2', 2, memoryMb, true) };
  }
  const vcpus = Number(cpuText);
  if (!rules.vcpuOk(vcpus)) {
    return {
      kind: 'invalid',
      reason: `Number of vCPUs should be ${rules.vcpuRule} for ${family} custom machine types, while ${vcpus} is requested.`,
    };
  }
  const minMb = Math.ceil((vcpus * rules.minMbPerVcpu) / 256) * 256;
  const maxMb = Math.min(Math.floor((vcpus * rules.maxMbPerVcpu) / 256) * 256, rules.maxMb ?? Infinity);
  if (ext && rules.extendedMaxMb === undefined) {
    return {
      kind: 'invalid',
      reason: `Extended memory is not available for ${family} custom machine types.`,
    };
  }
  if (memoryMb < minMb) {
    return {
      kind: 'invalid',
      reason: `Memory should be at least ${minMb}MiB for ${vcpus} vCPUs (${rules.minMbPerVcpu / GIB} GB per vCPU), while ${memoryMb}MiB is requested.`,
    };
  }
  if (ext) {
    if (memoryMb > rules.extendedMaxMb!) {
      return {
        kind: 'invalid',
        reason: `Memory should be at most ${rules.extendedMaxMb}MiB with extended memory, while ${memoryMb}MiB is requested.`,
      };
    }
  } else if (memoryMb > maxMb) {
    const hint = rules.extendedMaxMb !== undefined ? ' Use extended memory (the -ext suffix) for more.' : '';
    return {
      kind: 'invalid',
      reason: `Memory should be at most ${maxMb}MiB for ${vcpus} vCPUs, while ${memoryMb}MiB is requested.${hint}`,
    };
  }
  return { kind: 'ok', spec: custom(name, family, vcpus, memoryMb, false) };
}
