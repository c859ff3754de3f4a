import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { cpuMillis, memoryBytes, QuantityError } from '../../lib/quantity.ts';
import { parseAnnotations } from './annotations.ts';
import type { CellPlacement, ShapeRequest } from './cloud-provider.ts';
import { InvalidRequestError } from './errors.ts';

export const GPU_RESOURCE = 'nvidia.com/gpu';
export const ACCELERATOR_SELECTOR = 'cloud.google.com/gke-accelerator';

/** A pod's effective request: what the kubelet reserves for it. */
export interface EffectiveRequest {
  cpuMillis: number;
  memoryBytes: number;
  gpus: number;
}

type Resource = 'cpu' | 'memory' | typeof GPU_RESOURCE;

function containerAmount(c: V1Container, resource: Resource, where: string): number {
  // A resource with only a limit is requested at its limit, as the API server defaults it.
  // GPUs are set as limits (Kubernetes requires requests, if given, to equal them).
  const r = c.resources;
  const q =
    resource === GPU_RESOURCE
      ? (r?.limits?.[resource] ?? r?.requests?.[resource])
      : (r?.requests?.[resource] ?? r?.limits?.[resource]);
  if (q === undefined || q === null) return 0;
  if (resource === GPU_RESOURCE) {
    const s = String(q).trim();
    if (!/^\d+$/.test(s)) {
      throw new InvalidRequestError(
        `${where}.resources ${resource} must be a whole number of GPUs; got "${s}"`,
        `${where}.resources`,
      );
    }
    return Number(s);
  }
  try {
    return resource === 'cpu' ? cpuMillis(q) : memoryBytes(q);
  } catch (e) {
    if (e instanceof QuantityError) {
      throw new InvalidRequestError(`${where}.resources ${resource}: ${e.message}`, `${where}.resources`);
    }
    throw e;
  }
}

function amount(pod: V1Pod, resource: Resource): number {
  const spec = pod.spec;
  let apps = 0;
  (spec?.containers ?? []).forEach((c, i) => (apps += containerAmount(c, resource, `spec.containers[${i}]`)));
  // The kubelet's rule: init containers run one at a time before the app containers, so the pod
  // needs the larger of the app sum and the largest init container. Restartable (sidecar) init
  // containers keep running, so they add to everything started after them.
  let sidecars = 0;
  let initPeak = 0;
  (spec?.initContainers ?? []).forEach((c, i) => {
    const v = containerAmount(c, resource, `spec.initContainers[${i}]`);
    if (c.restartPolicy === 'Always') {
      sidecars += v;
      initPeak = Math.max(initPeak, sidecars);
    } else {
      initPeak = Math.max(initPeak, sidecars + v);
    }
  });
  let total = Math.max(apps + sidecars, initPeak);
  const overhead = spec?.overhead?.[resource];
  if (overhead !== undefined && resource !== GPU_RESOURCE) {
    total += resource === 'cpu' ? cpuMillis(overhead) : memoryBytes(overhead);
  }
  return total;
}

/** The pod's effective CPU, memory and GPU request (requests, or limits where requests are absent). */
export function effectiveRequest(pod: V1Pod): EffectiveRequest {
  return {
    cpuMillis: amount(pod, 'cpu'),
    memoryBytes: amount(pod, 'memory'),
    gpus: amount(pod, GPU_RESOURCE),
  };
}

/** What the cloud layer needs to know of a pod: its shape request and its VM placement. */
export function cellRequestFromPod(pod: V1Pod): { request: ShapeRequest; placement: CellPlacement } {
  const eff = effectiveRequest(pod);
  const ann = parseAnnotations(pod.metadata?.annotations);
  const accelerator = pod.spec?.nodeSelector?.[ACCELERATOR_SELECTOR];
  const request: ShapeRequest = { ...eff, spot: ann.spot };
  if (accelerator) request.accelerator = accelerator;
  if (ann.instanceType) request.instanceType = ann.instanceType;
  return { request, placement: ann.placement };
}
