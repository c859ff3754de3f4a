import type { ServerResponse } from 'node:http';
import type { StatsHandler } from './types.ts';

/** GET /stats/summary: the summary as JSON. `only_cpu_and_memory=true` trims it as the kubelet does. */
export async function serveStatsSummary(
  handler: StatsHandler,
  query: URLSearchParams,
  signal: AbortSignal,
  res: ServerResponse,
): Promise<void> {
  const summary = await handler.statsSummary(signal);
  const body =
    query.get('only_cpu_and_memory') === 'true'
      ? {
          node: {
            nodeName: summary.node.nodeName,
            startTime: summary.node.startTime,
            cpu: summary.node.cpu,
            memory: summary.node.memory,
          },
          pods: summary.pods.map((p) => ({
            podRef: p.podRef,
            startTime: p.startTime,
            cpu: p.cpu,
            memory: p.memory,
            containers: p.containers.map((c) => ({
              name: c.name,
              startTime: c.startTime,
              cpu: c.cpu,
              memory: c.memory,
            })),
          })),
        }
      : summary;
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}
