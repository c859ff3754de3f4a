import type { ServerResponse } from 'node:http';
import type { CpuStats, MemoryStats, StatsHandler, StatsSummary } from './types.ts';

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labels = (l: Record<string, string>) =>
  `{${Object.entries(l)
    .map(([k, v]) => `${k}="${esc(v)}"`)
    .join(',')}}`;
const ms = (time: string | undefined) => (time ? ` ${Date.parse(time)}` : '');

interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: string[];
}

/**
 * The kubelet's `/metrics/resource` text from a stats summary, with the names and labels
 * metrics-server parses (`container_cpu_usage_seconds_total{container,pod,namespace}`, ...).
 * Containers without CPU or memory figures are left out, as metrics-server would drop them.
 */
export function resourceMetrics(summary: StatsSummary): string {
  const fam = (name: string, type: Family['type'], help: string): Family => ({
    name,
    help,
    type,
    samples: [],
  });
  const nodeCpu = fam(
    'node_cpu_usage_seconds_total',
    'counter',
    'Cumulative cpu time consumed by the node in core-seconds',
  );
  const nodeMem = fam('node_memory_working_set_bytes', 'gauge', 'Current working set of the node in bytes');
  const ctrCpu = fam(
    'container_cpu_usage_seconds_total',
    'counter',
    'Cumulative cpu time consumed by the container in core-seconds',
  );
  const ctrMem = fam(
    'container_memory_working_set_bytes',
    'gauge',
    'Current working set of the container in bytes',
  );
  const ctrStart = fam(
    'container_start_time_seconds',
    'gauge',
    'Start time of the container since unix epoch in seconds',
  );
  const podCpu = fam(
    'pod_cpu_usage_seconds_total',
    'counter',
    'Cumulative cpu time consumed by the pod in core-seconds',
  );
  const podMem = fam('pod_memory_working_set_bytes', 'gauge', 'Current working set of the pod in bytes');
  const scrapeError = fam(
    'scrape_error',
    'gauge',
    '1 if there was an error while getting container metrics, 0 otherwise',
  );

  const cpu = (f: Family, l: string, c?: CpuStats) => {
    if (c?.usageCoreNanoSeconds !== undefined)
      f.samples.push(`${f.name}${l} ${c.usageCoreNanoSeconds / 1e9}${ms(c.time)}`);
  };
  const mem = (f: Family, l: string, m?: MemoryStats) => {
    if (m?.workingSetBytes !== undefined) f.samples.push(`${f.name}${l} ${m.workingSetBytes}${ms(m.time)}`);
  };

  if (summary.node.cpu?.usageCoreNanoSeconds && summary.node.memory?.workingSetBytes) {
    cpu(nodeCpu, '', summary.node.cpu);
    mem(nodeMem, '', summary.node.memory);
  }
  for (const pod of summary.pods) {
    const podLabels = { namespace: pod.podRef.namespace, pod: pod.podRef.name };
    cpu(podCpu, labels(podLabels), pod.cpu);
    mem(podMem, labels(podLabels), pod.memory);
    for (const c of pod.containers) {
      if (!c.cpu?.usageCoreNanoSeconds || !c.memory?.workingSetBytes) continue;
      const l = labels({ container: c.name, namespace: pod.podRef.namespace, pod: pod.podRef.name });
      cpu(ctrCpu, l, c.cpu);
      mem(ctrMem, l, c.memory);
      ctrStart.samples.push(`${ctrStart.name}${l} ${Date.parse(c.startTime) / 1000}`);
    }
  }
  scrapeError.samples.push('scrape_error 0');
  return [nodeCpu, nodeMem, ctrCpu, ctrMem, ctrStart, podCpu, podMem, scrapeError]
    .map((f) =>
      [`# HELP ${f.name} [STABLE] ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.samples].join('\n'),
    )
    .join('\n')
    .concat('\n');
}

/** GET /metrics/resource in the Prometheus text format. */
export async function serveResourceMetrics(
  handler: StatsHandler,
  signal: AbortSignal,
  res: ServerResponse,
): Promise<void> {
  const text = resourceMetrics(await handler.statsSummary(signal));
  res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8' });
  res.end(text);
}
