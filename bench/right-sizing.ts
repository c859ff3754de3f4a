/**
 * Right-sizing cost: for a fixed mix of 1000 pod shapes, the total $/hour of the shapes Kip
 * picks, against (a) a lower bound no real shape can beat — every pod's request plus the agent's
 * overhead billed per fractional vCPU and GiB at the cheapest series' predefined rates — and
 * (b) the same selection restricted to predefined machine types.
 *
 *   npx tsx bench/right-sizing.ts [--seed N]
 */
import { ATTACHABLE, BUILT_IN } from '../provider/cloud/accelerators.ts';
import type { ShapeRequest } from '../provider/cloud/cloud-provider.ts';
import { DEFAULT_OVERHEAD, InstanceSelector } from '../provider/cloud/instance-selector.ts';
import { MachineCatalog } from '../provider/cloud/machine-catalog.ts';
import { PriceTable } from '../provider/cloud/pricing.ts';

const seedArg = process.argv.indexOf('--seed');
let seed = seedArg > 0 ? Number(process.argv[seedArg + 1]) : 42;
// mulberry32: a small deterministic generator, so the mix is the same on every run.
function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const between = (lo: number, hi: number, step: number) =>
  lo + Math.floor(rand() * ((hi - lo) / step + 1)) * step;
const MiB = 2 ** 20;

/** The mix: share of pods, CPU range (millicores, step), memory range (MiB, step), GPUs. */
const MIX = [
  { name: 'small web/API', share: 0.4, cpu: [50, 500, 50], mem: [64, 1024, 64], gpus: 0 },
  { name: 'medium service', share: 0.25, cpu: [500, 2000, 250], mem: [512, 4096, 256], gpus: 0 },
  { name: 'memory-heavy', share: 0.15, cpu: [250, 4000, 250], mem: [4096, 32768, 1024], gpus: 0 },
  { name: 'CPU-heavy batch', share: 0.1, cpu: [2000, 16000, 1000], mem: [1024, 16384, 1024], gpus: 0 },
  { name: 'large', share: 0.07, cpu: [8000, 48000, 4000], mem: [16384, 196608, 8192], gpus: 0 },
  { name: 'GPU inference (1 T4)', share: 0.03, cpu: [1000, 8000, 1000], mem: [4096, 30720, 1024], gpus: 1 },
] as const;

const pods: Array<{ kind: string; req: ShapeRequest }> = [];
for (const m of MIX) {
  const n = Math.round(m.share * 1000);
  for (let i = 0; i < n; i++) {
    pods.push({
      kind: m.name,
      req: {
        cpuMillis: between(m.cpu[0], m.cpu[1], m.cpu[2]),
        memoryBytes: between(m.mem[0], m.mem[1], m.mem[2]) * MiB,
        gpus: m.gpus,
        spot: false,
      },
    });
  }
}

const prices = PriceTable.load();
const catalog = MachineCatalog.builtin(prices, ['us-central1-a', 'us-central1-b']);
const kip = new InstanceSelector({ catalog });
const predefinedOnly = new InstanceSelector({ catalog, allowCustom: false });

/** The lower bound: exact need at the cheapest per-unit predefined rates of a series that could run it. */
function lowerBound(req: ShapeRequest): number {
  const cpu = (req.cpuMillis + DEFAULT_OVERHEAD.cpuMillis) / 1000;
  const gib = (req.memoryBytes + DEFAULT_OVERHEAD.memoryBytes) / 2 ** 30;
  let best = Infinity;
  for (const [family, r] of Object.entries(prices.data.families)) {
    let gpu = 0;
    if (req.gpus > 0) {
      const accel = 'nvidia-tesla-t4';
      if (ATTACHABLE[accel]?.families.includes(family)) gpu = prices.data.gpus[accel]!.onDemand * req.gpus;
      else if (BUILT_IN[family] === accel) gpu = 0;
      else continue;
    } else if (BUILT_IN[family]) continue;
    best = Math.min(best, cpu * r.vcpu + gib * r.memoryGiB + gpu);
  }
  return best;
}

let chosen = 0;
let predefined = 0;
let bound = 0;
const byKind = new Map<
  string,
  { chosen: number; predefined: number; bound: number; custom: number; n: number }
>();
const t0 = performance.now();
for (const p of pods) {
  const a = kip.choose(p.req);
  const b = predefinedOnly.choose(p.req);
  const lb = lowerBound(p.req);
  chosen += a.hourlyPriceUSD;
  predefined += b.hourlyPriceUSD;
  bound += lb;
  const k = byKind.get(p.kind) ?? { chosen: 0, predefined: 0, bound: 0, custom: 0, n: 0 };
  k.chosen += a.hourlyPriceUSD;
  k.predefined += b.hourlyPriceUSD;
  k.bound += lb;
  k.custom += a.shape.custom ? 1 : 0;
  k.n++;
  byKind.set(p.kind, k);
}
const ms = performance.now() - t0;

const r = (x: number) => Math.round(x * 1000) / 1000;
console.log(
  `right-sizing: ${pods.length} pods, us-central1 on-demand list prices of ${prices.asOf}, agent overhead 100m/256Mi per cell`,
);
for (const [kind, k] of byKind) {
  console.log(
    `  ${kind.padEnd(22)} ${String(k.n).padStart(4)} pods  kip $${k.chosen.toFixed(2)}/h  predefined-only $${k.predefined.toFixed(2)}/h  bound $${k.bound.toFixed(2)}/h  custom shapes ${k.custom}`,
  );
}
console.log(
  `  total: kip $${chosen.toFixed(2)}/h, predefined-only $${predefined.toFixed(2)}/h, lower bound $${bound.toFixed(2)}/h`,
);
console.log(
  `  kip / lower bound = ${r(chosen / bound)}; kip / predefined-only = ${r(chosen / predefined)} (${r((1 - chosen / predefined) * 100)}% saved)`,
);
console.log(`  selection time: ${r((ms / pods.length) * 1000)} µs per pod (both selectors)`);
console.log(
  JSON.stringify({
    bench: 'right-sizing',
    pods: pods.length,
    pricesAsOf: prices.asOf,
    kipUSDPerHour: r(chosen),
    predefinedOnlyUSDPerHour: r(predefined),
    lowerBoundUSDPerHour: r(bound),
    ratioToLowerBound: r(chosen / bound),
    ratioToPredefinedOnly: r(chosen / predefined),
    microsPerPod: r((ms / pods.length) * 1000),
  }),
);
