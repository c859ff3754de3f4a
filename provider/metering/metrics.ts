import { Counter, Gauge, type Registry } from 'prom-client';

/** The meter's Prometheus metrics. */
export interface MeteringMetrics {
  /** Reports the usage reporter accepted, by metric. */
  reportsPosted: Counter<'metric'>;
  /** Reports whose send was interrupted with an unknown outcome, not sent again (see docs/metering.md). */
  reportsUnconfirmed: Counter<'metric'>;
  /** Reports the reporter refused with a 4xx. */
  reportsRejected: Counter<'metric'>;
  /** Closed intervals with reports still to send. */
  intervalsPending: Gauge;
  /** Cells being metered (started, not yet settled). */
  cellsMetered: Gauge;
}

export function createMeteringMetrics(registry?: Registry): MeteringMetrics {
  const registers = registry ? [registry] : [];
  return {
    reportsPosted: new Counter({
      name: 'kip_metering_reports_posted_total',
      help: 'Usage reports accepted by the usage reporter, by metric',
      labelNames: ['metric'] as const,
      registers,
    }),
    reportsUnconfirmed: new Counter({
      name: 'kip_metering_reports_unconfirmed_total',
      help: 'Usage reports whose send was interrupted with an unknown outcome (kept in the ledger, not resent)',
      labelNames: ['metric'] as const,
      registers,
    }),
    reportsRejected: new Counter({
      name: 'kip_metering_reports_rejected_total',
      help: 'Usage reports the usage reporter refused (HTTP 4xx), by metric',
      labelNames: ['metric'] as const,
      registers,
    }),
    intervalsPending: new Gauge({
      name: 'kip_metering_intervals_pending',
      help: 'Closed billing intervals with reports not yet sent to the usage reporter',
      registers,
    }),
    cellsMetered: new Gauge({
      name: 'kip_metering_cells',
      help: 'Cells being metered',
      registers,
    }),
  };
}
