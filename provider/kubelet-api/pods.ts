import type { ServerResponse } from 'node:http';
import type { PodsLister } from './types.ts';

/** GET /pods: the node's pods as a v1 PodList, as the kubelet serves it. */
export async function servePods(lister: PodsLister, res: ServerResponse): Promise<void> {
  const items = await lister.listPods();
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items }));
}
