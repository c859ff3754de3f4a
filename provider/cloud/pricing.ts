import { readFileSync } from 'node:fs';
import { validateConfig } from '../../lib/config-file.ts';
import type { CapacityType, MachineShape } from './cloud-provider.ts';
import shippedPrices from './data/prices-us-central1.json' with { type: 'json' };

/** Hourly rates of one machine series. Custom and extended-memory rates exist only where GCE sells them. */
export interface FamilyRates {
  vcpu: number;
  memoryGiB: number;
  customVcpu?: number;
  customMemoryGiB?: number;
  extendedMemoryGiB?: number;
  spotVcpu?: number;
  spotMemoryGiB?: number;
}

/** The price table file (`provider/cloud/data/prices-<region>.json`). */
export interface PriceData {
  region: string;
  currency: string;
  unit?: string;
  /** The date the rates were read from the catalog (YYYY-MM-DD). */
  asOf: string;
  source: string;
  provenance?: Record<string, string>;
  families: Record<string, FamilyRates>;
  gpus: Record<string, { onDemand: number; spot?: number }>;
}

const rate = { type: 'number', minimum: 0 };
const priceSchema = {
  type: 'object',
  required: ['region', 'currency', 'asOf', 'source', 'families', 'gpus'],
  properties: {
    region: { type: 'string', minLength: 1 },
    currency: { const: 'USD' },
    unit: { type: 'string' },
    asOf: { type: 'string', pattern: '^\\d{4}-\\d{2}-\\d{2}$' },
    source: { type: 'string' },
    provenance: { type: 'object', additionalProperties: { type: 'string' } },
    families: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        required: ['vcpu', 'memoryGiB'],
        additionalProperties: false,
        properties: {
          vcpu: rate,
          memoryGiB: rate,
          customVcpu: rate,
          customMemoryGiB: rate,
          extendedMemoryGiB: rate,
          spotVcpu: rate,
          spotMemoryGiB: rate,
        },
      },
    },
    gpus: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        required: ['onDemand'],
        additionalProperties: false,
        properties: { onDemand: rate, spot: rate },
      },
    },
  },
  additionalProperties: false,
};

/** Where the price table shipped with Kip lives. */
export const DEFAULT_PRICE_FILE = new URL('./data/prices-us-central1.json', import.meta.url);

/** Checks a parsed price document; throws ConfigError naming the bad field. */
export function validatePriceData(doc: unknown, source = 'price table'): PriceData {
  return validateConfig<PriceData>(doc, priceSchema, source);
}

/** List prices of machine shapes, from the price table. */
export class PriceTable {
  constructor(readonly data: PriceData) {}

  /**
   * Reads and validates a price file; without a path, the us-central1 table shipped with Kip
   * (imported as a module so the build carries it into dist/).
   */
  static load(path?: string | URL): PriceTable {
    if (path === undefined) {
      return new PriceTable(
        validatePriceData(structuredClone(shippedPrices), `price table ${String(DEFAULT_PRICE_FILE)}`),
      );
    }
    const text = readFileSync(path, 'utf8');
    return new PriceTable(validatePriceData(JSON.parse(text), `price table ${String(path)}`));
  }

  get asOf(): string {
    return this.data.asOf;
  }

  /** Whether the series can be bought as spot. */
  sellsSpot(family: string): boolean {
    const f = this.data.families[family];
    return f?.spotVcpu !== undefined && f.spotMemoryGiB !== undefined;
  }

  /** Whether the table has custom rates for the series. */
  sellsCustom(family: string): boolean {
    const f = this.data.families[family];
    return f?.customVcpu !== undefined && f.customMemoryGiB !== undefined;
  }

  /**
   * The hourly list price of a shape, or undefined when the table cannot price it (unknown
   * series, no spot or custom rate, unknown GPU). Shared-core E2 is billed for its baseline share
   * of a vCPU, as GCE bills it; spot custom shapes scale the spot rate by the custom premium.
   */
  price(shape: MachineShape, capacityType: CapacityType): number | undefined {
    const f = this.data.families[shape.family];
    if (!f) return undefined;
    let vcpuRate = f.vcpu;
    let memRate = f.memoryGiB;
    if (shape.custom) {
      if (f.customVcpu === undefined || f.customMemoryGiB === undefined) return undefined;
      vcpuRate = f.customVcpu;
      memRate = f.customMemoryGiB;
    }
    let extRate = f.extendedMemoryGiB;
    if (capacityType === 'spot') {
      if (f.spotVcpu === undefined || f.spotMemoryGiB === undefined) return undefined;
      const cpuFactor = f.spotVcpu / f.vcpu;
      const memFactor = f.spotMemoryGiB / f.memoryGiB;
      vcpuRate *= cpuFactor;
      memRate *= memFactor;
      if (extRate !== undefined) extRate *= memFactor;
    }
    const extendedMiB = shape.extendedMemoryMiB ?? 0;
    if (extendedMiB > 0 && extRate === undefined) return undefined;
    const billedVcpus = shape.baselineVcpus ?? shape.vcpus;
    let total =
      billedVcpus * vcpuRate +
      ((shape.memoryMiB - extendedMiB) / 1024) * memRate +
      (extendedMiB / 1024) * (extRate ?? 0);
    if (shape.gpus) {
      const g = this.data.gpus[shape.gpus.type];
      if (!g) return undefined;
      const gpuRate = capacityType === 'spot' ? g.spot : g.onDemand;
      if (gpuRate === undefined) return undefined;
      total += gpuRate * shape.gpus.count;
    }
    return Math.round(total * 1e6) / 1e6;
  }
}
