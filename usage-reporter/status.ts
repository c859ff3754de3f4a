import type { ReporterStatus } from '../lib/usage-reporter-client.ts';
import type { Aggregator } from './aggregator.ts';
import type { EndpointQueue } from './endpoint-queue.ts';

/** ubbagent's send statistics, over all endpoints (in memory: they restart with the agent). */
export class ReporterStats {
  lastReportSuccess: string | null = null;
  currentFailureCount = 0;
  totalFailureCount = 0;

  success(now: number): void {
    this.lastReportSuccess = new Date(now).toISOString();
    this.currentFailureCount = 0;
  }

  failure(): void {
    this.currentFailureCount++;
    this.totalFailureCount++;
  }
}

/** The `GET /status` document. */
export function buildStatus(
  stats: ReporterStats,
  agentId: string,
  queues: readonly EndpointQueue[],
  aggregators: readonly Aggregator[],
): ReporterStatus {
  const aggregating: ReporterStatus['aggregating'] = {};
  for (const a of aggregators) {
    const open = a.status();
    if (open) aggregating[a.metric.name] = open;
  }
  return {
    lastReportSuccess: stats.lastReportSuccess,
    currentFailureCount: stats.currentFailureCount,
    totalFailureCount: stats.totalFailureCount,
    agentId,
    endpoints: Object.fromEntries(queues.map((q) => [q.name, q.status()])),
    aggregating,
  };
}
