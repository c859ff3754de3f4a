import { OperationFailure } from './errors.ts';

/** One row of `region.quotas`. */
export interface QuotaRow {
  metric: string;
  limit: number;
  usage: number;
}

/**
 * Regional allocation quotas (CPUS, N2_CPUS, INSTANCES, GPUs, disk GB): a reservation either fits
 * every metric it touches or fails with GCE's QUOTA_EXCEEDED, as an operation error.
 */
export class RegionalQuota {
  private readonly usage = new Map<string, number>();

  constructor(
    private readonly region: string,
    private readonly limits: () => Record<string, number>,
  ) {}

  /** Takes `demand` or throws OperationFailure naming the first metric that does not fit. */
  reserve(demand: Record<string, number>): void {
    const limits = this.limits();
    for (const [metric, amount] of Object.entries(demand)) {
      const limit = limits[metric];
      if (limit === undefined || amount <= 0) continue;
      if ((this.usage.get(metric) ?? 0) + amount > limit) {
        throw new OperationFailure(
          'QUOTA_EXCEEDED',
          `Quota '${metric}' exceeded.  Limit: ${limit.toFixed(1)} in region ${this.region}.`,
          403,
          [
            {
              quotaInfo: {
                metricName: `compute.googleapis.com/${metric.toLowerCase()}`,
                limitName: `${metric}-per-project-region`,
                dimensions: { region: this.region },
                limit,
              },
            },
          ],
        );
      }
    }
    for (const [metric, amount] of Object.entries(demand))
      this.usage.set(metric, (this.usage.get(metric) ?? 0) + amount);
  }

  release(demand: Record<string, number>): void {
    for (const [metric, amount] of Object.entries(demand)) {
      this.usage.set(metric, Math.max(0, (this.usage.get(metric) ?? 0) - amount));
    }
  }

  rows(): QuotaRow[] {
    const limits = this.limits();
    return Object.keys(limits)
      .sort()
      .map((metric) => ({ metric, limit: limits[metric]!, usage: this.usage.get(metric) ?? 0 }));
  }
}
