import { Counter, Gauge, type Registry } from 'prom-client';

/** Compute API calls by method and HTTP status, for `/admin/calls` and Prometheus. */
export class CallStats {
  private readonly counts = new Map<string, Map<number, number>>();
  private readonly counter: Counter<'method' | 'code'>;

  constructor(registry: Registry) {
    this.counter = new Counter({
      name: 'gce_emulator_calls_total',
      help: 'Compute API calls by method and HTTP status code',
      labelNames: ['method', 'code'],
      registers: [registry],
    });
  }

  record(method: string, code: number): void {
    const byCode = this.counts.get(method) ?? new Map<number, number>();
    byCode.set(code, (byCode.get(code) ?? 0) + 1);
    this.counts.set(method, byCode);
    this.counter.inc({ method, code: String(code) });
  }

  /** `{total, byMethod: {"compute.instances.insert": {total, codes: {"200": n}}}}` */
  snapshot(): { total: number; byMethod: Record<string, { total: number; codes: Record<string, number> }> } {
    let total = 0;
    const byMethod: Record<string, { total: number; codes: Record<string, number> }> = {};
    for (const [method, byCode] of [...this.counts].sort(([a], [b]) => a.localeCompare(b))) {
      const codes: Record<string, number> = {};
      let t = 0;
      for (const [code, n] of byCode) {
        codes[String(code)] = n;
        t += n;
      }
      byMethod[method] = { total: t, codes };
      total += t;
    }
    return { total, byMethod };
  }

  reset(): void {
    this.counts.clear();
  }
}

/** Instances by status, refreshed when Prometheus scrapes. */
export function instanceStatusGauge(
  registry: Registry,
  byStatus: () => Record<string, number>,
): Gauge<'status'> {
  return new Gauge({
    name: 'gce_emulator_instances',
    help: 'Instances by status',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [status, n] of Object.entries(byStatus())) this.set({ status }, n);
    },
  });
}
