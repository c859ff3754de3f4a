import type { FamilyRates, PriceData } from './pricing.ts';

/** One SKU of the Cloud Billing Catalog API (`services/6F81-5844-456A/skus`), the fields Kip reads. */
export interface BillingSku {
  description: string;
  serviceRegions?: string[];
  category?: { usageType?: string };
  pricingInfo?: Array<{
    pricingExpression?: {
      usageUnit?: string;
      tieredRates?: Array<{
        startUsageAmount?: number;
        unitPrice?: { units?: string | number; nanos?: number };
      }>;
    };
  }>;
}

type FamilyField = keyof FamilyRates;

/** SKU description patterns → where the rate goes. `{spot}` marks the spot variants. */
const FAMILY_SKUS: Array<[RegExp, string, FamilyField]> = [];
const families: Array<[string, string]> = [
  ['e2', 'E2'],
  ['n2', 'N2'],
  ['n2d', 'N2D AMD'],
  ['t2d', 'T2D AMD'],
  ['g2', 'G2'],
  ['a2', 'A2'],
];
for (const [fam, label] of families) {
  FAMILY_SKUS.push(
    [new RegExp(`^${label} Instance Core running in`, 'i'), fam, 'vcpu'],
    [new RegExp(`^${label} Instance Ram running in`, 'i'), fam, 'memoryGiB'],
    [new RegExp(`^${label} Custom Instance Core running in`, 'i'), fam, 'customVcpu'],
    [new RegExp(`^${label} Custom Instance Ram running in`, 'i'), fam, 'customMemoryGiB'],
    [new RegExp(`^${label} Custom Extended Instance Ram running in`, 'i'), fam, 'extendedMemoryGiB'],
    [new RegExp(`^Spot Preemptible ${label} Instance Core running in`, 'i'), fam, 'spotVcpu'],
    [new RegExp(`^Spot Preemptible ${label} Instance Ram running in`, 'i'), fam, 'spotMemoryGiB'],
  );
}
FAMILY_SKUS.push(
  [/^N1 Predefined Instance Core running in/i, 'n1', 'vcpu'],
  [/^N1 Predefined Instance Ram running in/i, 'n1', 'memoryGiB'],
  [/^Custom Instance Core running in/i, 'n1', 'customVcpu'],
  [/^Custom Instance Ram running in/i, 'n1', 'customMemoryGiB'],
  [/^Custom Extended Instance Ram running in/i, 'n1', 'extendedMemoryGiB'],
  [/^Spot Preemptible N1 Predefined Instance Core running in/i, 'n1', 'spotVcpu'],
  [/^Spot Preemptible N1 Predefined Instance Ram running in/i, 'n1', 'spotMemoryGiB'],
);

const GPU_SKUS: Array<[RegExp, string]> = [
  [/Tesla T4 GPU/i, 'nvidia-tesla-t4'],
  [/Tesla P4 GPU/i, 'nvidia-tesla-p4'],
  [/Tesla P100 GPU/i, 'nvidia-tesla-p100'],
  [/Tesla V100 GPU/i, 'nvidia-tesla-v100'],
  [/\bL4 GPU/i, 'nvidia-l4'],
  [/Tesla A100 GPU/i, 'nvidia-tesla-a100'],
];

function unitPrice(sku: BillingSku): number | undefined {
  const rates = sku.pricingInfo?.[0]?.pricingExpression?.tieredRates ?? [];
  // The paid tier: the last one (a free first tier, if any, starts at 0 with price 0).
  const r = rates[rates.length - 1];
  if (!r?.unitPrice) return undefined;
  return Number(r.unitPrice.units ?? 0) + (r.unitPrice.nanos ?? 0) / 1e9;
}

export interface RefreshResult {
  data: PriceData;
  changes: Array<{ field: string; from: number | undefined; to: number }>;
  /** Rates in the table no SKU in the export matched; they keep their old values. */
  unmatched: string[];
}

/**
 * Applies a Cloud Billing Catalog SKU export to a price table for one region: every rate whose
 * SKU is found (served in `region`, priced per hour or per GiB-hour) is replaced; the rest keep
 * their old values and are reported. Throws when the export matches nothing at all.
 */
export function applySkus(old: PriceData, skus: BillingSku[], region: string, asOf: string): RefreshResult {
  const data: PriceData = structuredClone(old);
  data.region = region;
  data.asOf = asOf;
  const changes: RefreshResult['changes'] = [];
  const seen = new Set<string>();
  const set = (field: string, get: () => number | undefined, put: (v: number) => void, v: number) => {
    seen.add(field);
    const from = get();
    if (from !== v) changes.push({ field, from, to: v });
    put(v);
  };
  for (const sku of skus) {
    if (sku.serviceRegions && !sku.serviceRegions.includes(region)) continue;
    const unit = sku.pricingInfo?.[0]?.pricingExpression?.usageUnit;
    if (unit !== 'h' && unit !== 'GiBy.h') continue;
    const price = unitPrice(sku);
    if (price === undefined) continue;
    const d = sku.description;
    const fam = FAMILY_SKUS.find(([re]) => re.test(d));
    if (fam) {
      const [, family, field] = fam;
      const rates = (data.families[family] ??= { vcpu: 0, memoryGiB: 0 });
      set(
        `families.${family}.${field}`,
        () => rates[field],
        (v) => (rates[field] = v),
        price,
      );
      continue;
    }
    const gpu = GPU_SKUS.find(([re]) => re.test(d) && /running in/i.test(d));
    if (gpu && !/commitment|reserved|DWS|calendar/i.test(d)) {
      const spot = /Spot|Preemptible/i.test(d);
      const g = (data.gpus[gpu[1]] ??= { onDemand: 0 });
      const key = spot ? 'spot' : 'onDemand';
      set(
        `gpus.${gpu[1]}.${key}`,
        () => g[key],
        (v) => (g[key] = v),
        price,
      );
    }
  }
  if (seen.size === 0) throw new Error(`no SKU in the export prices a Compute Engine machine in ${region}`);
  const unmatched: string[] = [];
  for (const [fam, rates] of Object.entries(data.families)) {
    for (const k of Object.keys(rates))
      if (!seen.has(`families.${fam}.${k}`)) unmatched.push(`families.${fam}.${k}`);
  }
  for (const [g, r] of Object.entries(data.gpus)) {
    for (const k of Object.keys(r)) if (!seen.has(`gpus.${g}.${k}`)) unmatched.push(`gpus.${g}.${k}`);
  }
  return { data, changes, unmatched };
}
