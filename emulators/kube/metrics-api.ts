/**
 * `metrics.k8s.io/v1beta1` pods and nodes, as metrics-server would serve them: each request asks
 * the kubelets concerned for `/stats/summary` (TLS, certificate not verified) and reports CPU as
 * nanocores and memory as the working set. This is what `kubectl top pod|node` reads.
 */
import https from 'node:https';
import { getPath, nowIso, type KObject } from './object.ts';
import { kubeletBase } from './pod-log.ts';

interface Usage {
  cpu?: { time?: string; usageNanoCores?: number };
  memory?: { time?: string; workingSetBytes?: number };
}
interface Summary {
  node?: Usage & { nodeName?: string };
  pods?: { podRef?: { name?: string; namespace?: string }; containers?: (Usage & { name?: string })[] }[];
}

function fetchSummary(base: URL): Promise<Summary | undefined> {
  return new Promise((resolve) => {
    const req = https.get(
      new URL('/stats/summary', base),
      { rejectUnauthorized: false, timeout: 5000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => {
          try {
            resolve(res.statusCode === 200 ? (JSON.parse(body) as Summary) : undefined);
          } catch {
            resolve(undefined);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy());
    // A node whose kubelet does not answer simply has no metrics, as with metrics-server.
    req.on('error', () => resolve(undefined));
  });
}

const cpu = (u: Usage) => `${Math.round(u.cpu?.usageNanoCores ?? 0)}n`;
const memory = (u: Usage) => `${Math.round((u.memory?.workingSetBytes ?? 0) / 1024)}Ki`;
const stamp = (u: Usage) => u.cpu?.time ?? u.memory?.time ?? nowIso();

function nodeBase(node: KObject): URL | undefined {
  try {
    return kubeletBase({ metadata: { name: '' }, spec: { nodeName: node.metadata.name } }, node);
  } catch {
    return undefined;
  }
}

/** PodMetrics for the pods in `namespace` (all when undefined), named `name` when given. */
export async function podMetrics(
  pods: KObject[],
  nodes: Map<string, KObject>,
  namespace?: string,
  name?: string,
): Promise<KObject[]> {
  const wanted = pods.filter(
    (p) =>
      (namespace === undefined || p.metadata.namespace === namespace) &&
      (name === undefined || p.metadata.name === name) &&
      getPath(p, 'spec.nodeName'),
  );
  const nodeNames = [...new Set(wanted.map((p) => getPath(p, 'spec.nodeName') as string))];
  const summaries = await Promise.all(
    nodeNames.map(async (n) => {
      const node = nodes.get(n);
      const base = node && nodeBase(node);
      return base ? fetchSummary(base) : undefined;
    }),
  );
  const out: KObject[] = [];
  for (const s of summaries) {
    for (const p of s?.pods ?? []) {
      const pod = wanted.find(
        (w) => w.metadata.name === p.podRef?.name && w.metadata.namespace === p.podRef?.namespace,
      );
      if (!pod || !p.containers?.length) continue;
      out.push({
        kind: 'PodMetrics',
        apiVersion: 'metrics.k8s.io/v1beta1',
        metadata: {
          name: pod.metadata.name,
          namespace: pod.metadata.namespace,
          labels: pod.metadata.labels,
          creationTimestamp: pod.metadata.creationTimestamp,
        },
        timestamp: stamp(p.containers[0]!),
        window: '10s',
        containers: p.containers.map((c) => ({ name: c.name, usage: { cpu: cpu(c), memory: memory(c) } })),
      });
    }
  }
  return out.sort((a, b) =>
    `${a.metadata.namespace}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace}/${b.metadata.name}`),
  );
}

/** NodeMetrics for every node (or the one named) whose kubelet answers. */
export async function nodeMetrics(nodes: KObject[], name?: string): Promise<KObject[]> {
  const wanted = nodes.filter((n) => name === undefined || n.metadata.name === name);
  const summaries = await Promise.all(
    wanted.map(async (n) => {
      const base = nodeBase(n);
      return base ? fetchSummary(base) : undefined;
    }),
  );
  const out: KObject[] = [];
  wanted.forEach((n, i) => {
    const s = summaries[i]?.node;
    if (!s) return;
    out.push({
      kind: 'NodeMetrics',
      apiVersion: 'metrics.k8s.io/v1beta1',
      metadata: {
        name: n.metadata.name,
        labels: n.metadata.labels,
        creationTimestamp: n.metadata.creationTimestamp,
      },
      timestamp: stamp(s),
      window: '10s',
      usage: { cpu: cpu(s), memory: memory(s) },
    });
  });
  return out;
}
