import type { ServerResponse } from 'node:http';
import type { CpuStats, MemoryStats, StatsHandler, StatsSummary } from './types.ts';

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labels = (l: Record<string, string>) =>
  `{${Object.entries(l)
    .map(([k, v]) => `${k}="${esc(v)}"`)
    .join(',')}}`;
const ms = (time: string | undefined) => (time ? ` ${Date.parse(time)}` : '');

/** The families in the order the kubelet writes them: name, type and help. */
const FAMILIES = [
  ['node_cpu_usage_seconds_total', 'counter', 'Cumulative cpu time consumed by the node in core-seconds'],
  ['node_memory_working_set_bytes', 'gauge', 'Current working set of the node in bytes'],
  [
    'container_cpu_usage_seconds_total',
    'counter',
    'Cumulative cpu time consumed by the container in core-seconds',
  ],
  ['container_memory_working_set_bytes', 'gauge', 'Current working set of the container in bytes'],
  ['container_start_time_seconds', 'gauge', 'Start time of the container since unix epoch in seconds'],
  ['pod_cpu_usage_seconds_total', 'counter', 'Cumulative cpu time consumed by the pod in core-seconds'],
  ['pod_memory_working_set_bytes', 'gauge', 'Current working set of the pod in bytes'],
  ['scrape_error', 'gauge', '1 if there was an error while getting container metrics, 0 otherwise'],
] as const;
type FamilyName = (typeof FAMILIES)[number][0];

/**
 * The kubelet's `/metrics/resource` text from a stats summary, with the names and labels
 * metrics-server parses (`container_cpu_usage_seconds_total{container,pod,namespace}`, ...).
 * Containers without CPU or memory figures are left out, as metrics-server would drop them.
 */
export function resourceMetrics(summary: StatsSummary): string {
  const samples = new Map<FamilyName, string[]>(FAMILIES.map(([name]) => [name, []]));
  const add = (name: FamilyName, l: string, value: number, time?: string) =>
    samples.get(name)!.push(`${name}${l} ${value}${ms(time)}`);
  const cpu = (name: FamilyName, l: string, c?: CpuStats) => {
    if (c?.usageCoreNanoSeconds !== undefined) add(name, l, c.usageCoreNanoSeconds / 1e9, c.time);
  };
  const mem = (name: FamilyName, l: string, m?: MemoryStats) => {
    if (m?.workingSetBytes !== undefined) add(name, l, m.workingSetBytes, m.time);
  };

  if (summary.node.cpu?.usageCoreNanoSeconds && summary.node.memory?.workingSetBytes) {
    cpu('node_cpu_usage_seconds_total', '', summary.node.cpu);
    mem('node_memory_working_set_bytes', '', summary.node.memory);
  }
  for (const pod of summary.pods) {
    const podLabels = labels({ namespace: pod.podRef.namespace, pod: pod.podRef.name });
    cpu('pod_cpu_usage_seconds_total', podLabels, pod.cpu);
    mem('pod_memory_working_set_bytes', podLabels, pod.memory);
    for (const c of pod.containers) {
      if (!c.cpu?.usageCoreNanoSeconds || !c.memory?.workingSetBytes) continue;
      const l = labels({ container: c.name, namespace: pod.podRef.namespace, pod: pod.podRef.name });
      cpu('container_cpu_usage_seconds_total', l, c.cpu);
      mem('container_memory_working_set_bytes', l, c.memory);
      add('container_start_time_seconds', l, Date.parse(c.startTime) / 1000);
    }
  }
  add('scrape_error', '', 0);
  return FAMILIES.map(([name, type, help]) =>
    [`# HELP ${name} [STABLE] ${help}`, `# TYPE ${name} ${type}`, ...samples.get(name)!].join('\n'),
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
