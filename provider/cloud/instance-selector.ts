import { ATTACHABLE, attachCount } from './accelerators.ts';
import type { CapacityType, MachineShape, ShapeRequest } from './cloud-provider.ts';
import { CUSTOM_RULES, CustomShapeError, fittingCustomShapes, parseCustomName } from './custom-shapes.ts';
import { InsufficientCapacityError, InvalidRequestError } from './errors.ts';
import type { MachineCatalog, UnavailableCheck } from './machine-catalog.ts';

/** What the cell agent and the guest OS need beside the pod, reserved on every cell. */
export interface AgentOverhead {
  cpuMillis: number;
  memoryBytes: number;
}

export const DEFAULT_OVERHEAD: AgentOverhead = { cpuMillis: 100, memoryBytes: 256 * 2 ** 20 };

export interface SelectorOptions {
  catalog: MachineCatalog;
  /** Added to every pod's request. Default 100m CPU, 256 MiB. */
  overhead?: AgentOverhead;
  /** The machine type of a pod that requests nothing. Default e2-small (Kip's default). */
  defaultMachineType?: string;
  /** The accelerator when a pod asks for GPUs without a gke-accelerator nodeSelector. Default nvidia-tesla-t4. */
  defaultAccelerator?: string;
  /** Consider custom shapes (default true); false gives predefined-types-only selection. */
  allowCustom?: boolean;
  /** Series right-sizing may pick when the pod names no instance type. Default: all priced. */
  families?: string[];
  /** A spot pod falls back to on-demand when no spot capacity is left (default true). */
  spotFallback?: boolean;
}

/** One place to create the cell, with its price and why it was chosen. */
export interface Choice {
  machineType: string;
  shape: MachineShape;
  zone: string;
  capacityType: CapacityType;
  hourlyPriceUSD: number;
  reason: string;
}

const MiB = 2 ** 20;
const fmt = (n: number) => String(Math.round(n * 1000) / 1000);
const globToRegExp = (g: string) =>
  new RegExp(
    `^${g
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );

/**
 * Right-sizing: the cheapest predefined or custom shape that holds a pod's effective request plus
 * the agent's overhead, ranked into the order `create` tries them when capacity fails: zones
 * first, then the next-cheapest series, then (for spot pods) on-demand.
 */
export class InstanceSelector {
  readonly overhead: AgentOverhead;
  readonly defaultMachineType: string;
  readonly defaultAccelerator: string;
  private readonly allowCustom: boolean;
  private readonly spotFallback: boolean;

  constructor(private readonly opts: SelectorOptions) {
    this.overhead = opts.overhead ?? DEFAULT_OVERHEAD;
    this.defaultMachineType = opts.defaultMachineType ?? 'e2-small';
    this.defaultAccelerator = opts.defaultAccelerator ?? 'nvidia-tesla-t4';
    this.allowCustom = opts.allowCustom ?? true;
    this.spotFallback = opts.spotFallback ?? true;
  }

  get catalog(): MachineCatalog {
    return this.opts.catalog;
  }

  /** The cheapest choice; throws like plan(). */
  choose(req: ShapeRequest, unavailable?: UnavailableCheck): Choice {
    return this.plan(req, unavailable)[0]!;
  }

  /**
   * Every acceptable (shape, zone, capacity type), best first. Throws InvalidRequestError when no
   * shape can ever hold the pod, InsufficientCapacityError when all that could are marked unavailable.
   */
  plan(req: ShapeRequest, unavailable: UnavailableCheck = () => false): Choice[] {
    const { shapes, why } = this.candidates(req);
    const caps: CapacityType[] = req.spot
      ? this.spotFallback
        ? ['spot', 'on-demand']
        : ['spot']
      : ['on-demand'];
    const out: Choice[] = [];
    const skipped: string[] = [];
    for (const cap of caps) {
      const bestByFamily = new Map<string, { shape: MachineShape; price: number }>();
      for (const shape of shapes) {
        const price = this.catalog.prices.price(shape, cap);
        if (price === undefined) continue;
        const cur = bestByFamily.get(shape.family);
        if (!cur || price < cur.price) bestByFamily.set(shape.family, { shape, price });
      }
      const ranked = [...bestByFamily.values()].sort((a, b) => a.price - b.price);
      for (const { shape, price } of ranked) {
        for (const zone of this.catalog.zonesFor(shape)) {
          if (unavailable(zone, shape.family, cap)) {
            skipped.push(`${shape.name}/${zone}/${cap}`);
            continue;
          }
          out.push({
            machineType: shape.name,
            shape,
            zone,
            capacityType: cap,
            hourlyPriceUSD: price,
            reason: '',
          });
        }
      }
    }
    if (out.length === 0) {
      if (skipped.length > 0) {
        throw new InsufficientCapacityError(
          `no capacity left for the pod: every fitting offering failed recently (${skipped.slice(0, 6).join(', ')}${skipped.length > 6 ? ', ...' : ''})`,
          skipped,
        );
      }
      throw new InvalidRequestError(
        req.spot && !this.spotFallback
          ? `no fitting shape is sold as spot in ${this.catalog.zoneNames.join(', ')}`
          : `no fitting shape is priced in ${this.catalog.zoneNames.join(', ')}`,
      );
    }
    const first = out[0]!;
    let reason = `${why}; cheapest of ${shapes.length} fitting shape${shapes.length === 1 ? '' : 's'}`;
    if (first.shape.custom) {
      let best: { name: string; price: number } | undefined;
      for (const s of shapes) {
        const price = s.custom ? undefined : this.catalog.prices.price(s, first.capacityType);
        if (price !== undefined && (!best || price < best.price)) best = { name: s.name, price };
      }
      if (best) reason += `; the cheapest predefined type, ${best.name}, costs $${best.price.toFixed(4)}/h`;
    }
    if (req.spot && first.capacityType === 'on-demand') reason += '; no spot capacity left, so on-demand';
    for (const c of out) c.reason = reason;
    return out;
  }

  /** The shapes that hold the request, and a sentence saying what they had to hold. */
  private candidates(req: ShapeRequest): { shapes: MachineShape[]; why: string } {
    const cat = this.catalog;
    const asksNothing = req.cpuMillis === 0 && req.memoryBytes === 0 && req.gpus === 0 && !req.instanceType;
    if (asksNothing) {
      const def = cat.find(this.defaultMachineType) ?? parseCustomName(this.defaultMachineType);
      if (!def)
        throw new InvalidRequestError(`default machine type ${this.defaultMachineType} is not offered`);
      return { shapes: [def], why: `pod requests nothing: default machine type ${def.name}` };
    }
    const cpu = (req.cpuMillis + this.overhead.cpuMillis) / 1000;
    const mib = (req.memoryBytes + this.overhead.memoryBytes) / MiB;
    const accel = req.gpus > 0 ? (req.accelerator ?? this.defaultAccelerator) : undefined;
    let why = `needs ${fmt(cpu)} vCPU, ${fmt(mib / 1024)} GiB (pod ${fmt(req.cpuMillis / 1000)} vCPU, ${fmt(req.memoryBytes / 2 ** 30)} GiB + agent ${fmt(this.overhead.cpuMillis / 1000)} vCPU, ${fmt(this.overhead.memoryBytes / 2 ** 30)} GiB)`;
    if (accel) {
      why += `, ${req.gpus} × ${accel}`;
      if (!cat.accelerators().has(accel) && !cat.predefined().some((s) => s.gpus?.type === accel)) {
        const offered = [
          ...new Set([
            ...cat.accelerators(),
            ...cat.predefined().flatMap((s) => (s.gpus ? [s.gpus.type] : [])),
          ]),
        ];
        throw new InvalidRequestError(
          `accelerator ${accel} is not offered in ${cat.zoneNames.join(', ')}; offered: ${offered.sort().join(', ') || 'none'}`,
          'spec.nodeSelector[cloud.google.com/gke-accelerator]',
        );
      }
    }

    const fit = (s: MachineShape): MachineShape | undefined => {
      if ((s.baselineVcpus ?? s.vcpus) < cpu - 1e-9 || s.memoryMiB < mib - 1e-9) return undefined;
      if (!accel) return s.gpus ? undefined : s;
      if (s.gpus)
        return !s.gpus.attached && s.gpus.type === accel && s.gpus.count >= req.gpus ? s : undefined;
      if (!ATTACHABLE[accel]?.families.includes(s.family) || s.baselineVcpus !== undefined) return undefined;
      const count = attachCount(accel, req.gpus, s.vcpus, s.memoryMiB);
      return count === undefined ? undefined : { ...s, gpus: { type: accel, count, attached: true } };
    };

    let pool: MachineShape[];
    if (req.instanceType) {
      why = `pod.elotl.co/instance-type=${req.instanceType}; ${why}`;
      pool = this.namedPool(req.instanceType, cpu, mib);
    } else {
      const families = new Set(this.opts.families ?? cat.families());
      pool = cat.predefined().filter((s) => families.has(s.family));
      if (this.allowCustom) {
        for (const family of Object.keys(CUSTOM_RULES)) {
          if (!families.has(family) || !cat.families().has(family) || !cat.prices.sellsCustom(family))
            continue;
          pool.push(...fittingCustomShapes(family, cpu, mib));
        }
      }
    }
    const shapes = pool.map(fit).filter((s): s is MachineShape => s !== undefined);
    if (shapes.length === 0) throw this.tooLarge(req, pool, cpu, mib, accel);
    return { shapes, why };
  }

  /** Shapes named by the instance-type annotation: one exact name, or every match of a glob. */
  private namedPool(name: string, cpu: number, mib: number): MachineShape[] {
    const cat = this.catalog;
    const field = 'metadata.annotations[pod.elotl.co/instance-type]';
    if (!/[*?]/.test(name)) {
      const known = cat.find(name);
      if (known) return [known];
      let custom: MachineShape | undefined;
      try {
        custom = parseCustomName(name);
      } catch (e) {
        if (e instanceof CustomShapeError)
          throw new InvalidRequestError(`machine type ${name} is not valid: ${e.message}`, field);
        throw e;
      }
      if (custom && cat.families().has(custom.family)) return [custom];
      throw new InvalidRequestError(
        `machine type ${name} is not offered in ${cat.zoneNames.join(', ')}`,
        field,
      );
    }
    const re = globToRegExp(name);
    const pool = cat.predefined().filter((s) => re.test(s.name));
    if (this.allowCustom) {
      for (const family of Object.keys(CUSTOM_RULES)) {
        if (!cat.families().has(family) || !cat.prices.sellsCustom(family)) continue;
        pool.push(...fittingCustomShapes(family, cpu, mib).filter((s) => re.test(s.name)));
      }
    }
    if (pool.length === 0) throw new InvalidRequestError(`no machine type matches ${name}`, field);
    return pool;
  }

  private tooLarge(
    req: ShapeRequest,
    pool: MachineShape[],
    cpu: number,
    mib: number,
    accel: string | undefined,
  ): InvalidRequestError {
    const need = `${fmt(cpu)} vCPU and ${fmt(mib / 1024)} GiB (pod request + agent overhead)`;
    if (req.instanceType && pool.length > 0) {
      const p = pool.length === 1 ? pool[0]! : undefined;
      return new InvalidRequestError(
        p
          ? `machine type ${p.name} (${fmt(p.baselineVcpus ?? p.vcpus)} vCPU, ${fmt(p.memoryMiB / 1024)} GiB) cannot hold ${need}${accel ? ` with ${req.gpus} × ${accel}` : ''}`
          : `no machine type matching ${req.instanceType} holds ${need}${accel ? ` with ${req.gpus} × ${accel}` : ''}`,
        'metadata.annotations[pod.elotl.co/instance-type]',
      );
    }
    if (accel) {
      const max = Math.max(
        0,
        ...this.catalog
          .predefined()
          .filter((s) => s.gpus?.type === accel)
          .map((s) => s.gpus!.count),
        ...Object.keys(ATTACHABLE[accel]?.limits ?? {}).map(Number),
      );
      if (req.gpus > max) {
        return new InvalidRequestError(
          `${req.gpus} × ${accel} is more than one VM takes (at most ${max})`,
          'resources.limits[nvidia.com/gpu]',
        );
      }
      return new InvalidRequestError(
        `no machine type takes ${req.gpus} × ${accel} together with ${need}`,
        'resources',
      );
    }
    const largest = [...this.catalog.predefined()]
      .filter((s) => !s.gpus)
      .sort((a, b) => b.memoryMiB - a.memoryMiB)[0];
    const mostCpu = [...this.catalog.predefined()]
      .filter((s) => !s.gpus)
      .sort((a, b) => b.vcpus - a.vcpus)[0];
    return new InvalidRequestError(
      `no machine type holds ${need}: the most vCPUs offered is ${mostCpu?.vcpus ?? 0} (${mostCpu?.name ?? '-'}) and the most memory ${fmt((largest?.memoryMiB ?? 0) / 1024)} GiB (${largest?.name ?? '-'})`,
      'resources',
    );
  }
}
