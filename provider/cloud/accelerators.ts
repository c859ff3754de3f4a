/**
 * GPUs on Compute Engine: which series take which accelerator, and in what counts. N1 takes
 * attached GPUs with per-count vCPU and memory ceilings; G2 (L4) and A2 (A100) have them built in.
 */

/** Limits of an attachable accelerator for each allowed count. */
export interface AttachRule {
  /** count → [max vCPUs, max memory GiB] of the VM it is attached to. */
  limits: Record<number, [number, number]>;
  families: string[];
}

export const ATTACHABLE: Record<string, AttachRule> = {
  'nvidia-tesla-t4': { families: ['n1'], limits: { 1: [48, 312], 2: [48, 312], 4: [96, 624] } },
  'nvidia-tesla-p4': { families: ['n1'], limits: { 1: [24, 156], 2: [48, 312], 4: [96, 624] } },
  'nvidia-tesla-p100': { families: ['n1'], limits: { 1: [16, 104], 2: [32, 208], 4: [64, 208] } },
  'nvidia-tesla-v100': {
    families: ['n1'],
    limits: { 1: [12, 78], 2: [24, 156], 4: [48, 312], 8: [96, 624] },
  },
};

/** Accelerators built into machine types, by series. */
export const BUILT_IN: Record<string, string> = { g2: 'nvidia-l4', a2: 'nvidia-tesla-a100' };

/**
 * The smallest allowed count of `type` that is at least `wanted` and whose ceilings hold the VM,
 * or undefined when no count does.
 */
export function attachCount(
  type: string,
  wanted: number,
  vcpus: number,
  memoryMiB: number,
): number | undefined {
  const rule = ATTACHABLE[type];
  if (!rule) return undefined;
  for (const [count, [maxCpu, maxGiB]] of Object.entries(rule.limits)
    .map(([c, l]) => [Number(c), l] as const)
    .sort((a, b) => a[0] - b[0])) {
    if (count >= wanted && vcpus <= maxCpu && memoryMiB <= maxGiB * 1024) return count;
  }
  return undefined;
}
