import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { createMetricsRegistry } from '../lib/metrics.ts';
import type { WorkQueueMetrics } from './workqueue.ts';

/** The provider's Prometheus metrics, all in one registry served on `metrics.listen`. */
export interface ProviderMetrics {
  registry: Registry;
  /** Pods bound to the virtual node, by phase. */
  podsByPhase: Gauge<'phase'>;
  /** Cell records in etcd, by lifecycle state. */
  cellsByState: Gauge<'state'>;
  /** Seconds from a cell's instance insert to its agent answering. */
  bootDuration: Histogram<'machine_type'>;
  /** Compute Engine API calls by method (`instances.insert`) and HTTP code. */
  cloudApiCalls: Counter<'method' | 'code'>;
  /** Work queue figures, by queue name. */
  queue: WorkQueueMetrics;
  /** Kubelet API requests by route and HTTP code. */
  kubeletApiRequests: Counter<'route' | 'code'>;
  /** Seconds from a pod's creation until the provider first writes it Running (boot included). */
  podStartDuration: Histogram;
  /** Events written on pods, by type and reason (`Warning`/`CellCreateFailed`, `Warning`/`ErrImagePull`). */
  podEvents: Counter<'type' | 'reason'>;
}

/** Creates the registry with the process metrics (prefix `kip_provider_`) and Kip's own. */
export function createProviderMetrics(): ProviderMetrics {
  const registry = createMetricsRegistry('kip_provider');
  const registers = [registry];
  const podsByPhase = new Gauge({
    name: 'kip_pods',
    help: 'Pods bound to the virtual node, by phase',
    labelNames: ['phase'] as const,
    registers,
  });
  const cellsByState = new Gauge({
    name: 'kip_cells',
    help: 'Cell records, by lifecycle state',
    labelNames: ['state'] as const,
    registers,
  });
  const bootDuration = new Histogram({
    name: 'kip_cell_boot_duration_seconds',
    help: 'Seconds from instance insert until the cell agent answers',
    labelNames: ['machine_type'] as const,
    buckets: [1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300],
    registers,
  });
  const cloudApiCalls = new Counter({
    name: 'kip_cloud_api_calls_total',
    help: 'Compute Engine API calls, by method and HTTP code',
    labelNames: ['method', 'code'] as const,
    registers,
  });
  const depth = new Gauge({
    name: 'kip_workqueue_depth',
    help: 'Keys ready to be processed, by queue',
    labelNames: ['queue'] as const,
    registers,
  });
  const adds = new Counter({
    name: 'kip_workqueue_adds_total',
    help: 'Keys added, by queue',
    labelNames: ['queue'] as const,
    registers,
  });
  const retries = new Counter({
    name: 'kip_workqueue_retries_total',
    help: 'Rate-limited retries, by queue',
    labelNames: ['queue'] as const,
    registers,
  });
  const kubeletApiRequests = new Counter({
    name: 'kip_kubelet_api_requests_total',
    help: 'Kubelet API requests, by route and HTTP code',
    labelNames: ['route', 'code'] as const,
    registers,
  });
  const podStartDuration = new Histogram({
    name: 'kip_pod_start_duration_seconds',
    help: 'Seconds from pod creation until the provider reports it Running',
    buckets: [1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600],
    registers,
  });
  const podEvents = new Counter({
    name: 'kip_pod_events_total',
    help: 'Events written on pods, by type and reason',
    labelNames: ['type', 'reason'] as const,
    registers,
  });
  return {
    registry,
    podStartDuration,
    podEvents,
    podsByPhase,
    cellsByState,
    bootDuration,
    cloudApiCalls,
    kubeletApiRequests,
    queue: {
      depth: (queue, value) => depth.set({ queue }, value),
      added: (queue) => adds.inc({ queue }),
      retried: (queue) => retries.inc({ queue }),
    },
  };
}

/**
 * Replaces a by-label gauge's values with `counts`. Every value in `always` is reported, as 0 when
 * absent, so dashboards see a phase drop to zero instead of vanishing.
 */
export function setCounts<L extends string>(
  gauge: Gauge<L>,
  label: L,
  counts: Record<string, number>,
  always: readonly string[] = [],
): void {
  gauge.reset();
  for (const value of always) gauge.set({ [label]: value } as Record<L, string>, 0);
  for (const [value, n] of Object.entries(counts)) gauge.set({ [label]: value } as Record<L, string>, n);
}
