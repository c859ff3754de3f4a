import { randomUUID } from 'node:crypto';
import type { V1Node, V1NodeCondition } from '@kubernetes/client-node';
import type { ProviderConfig } from '../config.ts';

/** The Kubernetes minor this node reports; kubectl and the scheduler compare node versions against it. */
export const KUBELET_VERSION = 'v1.32.0-kip';

/** Labels every Kip node carries; config labels are merged over them. */
export function nodeLabels(cfg: ProviderConfig): Record<string, string> {
  return {
    type: 'virtual-kubelet',
    'kubernetes.io/role': 'agent',
    'kubernetes.io/os': 'linux',
    'kubernetes.io/arch': 'amd64',
    'kubernetes.io/hostname': cfg.nodeName,
    'node.kubernetes.io/exclude-from-external-load-balancers': 'true',
    ...cfg.node.labels,
  };
}

export interface NodeIdentity {
  /** The address the API server dials for logs/exec (InternalIP). */
  internalIP: string;
  /** The kubelet API's port (status.daemonEndpoints.kubeletEndpoint.Port). */
  kubeletPort: number;
  /** Identifies this provider start in nodeInfo.bootID. */
  bootId?: string;
  clusterId: string;
}

/** The virtual node as Kip registers it: labels, taints, and the status fields Kip owns. */
export function desiredNode(cfg: ProviderConfig, id: NodeIdentity): V1Node {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: cfg.nodeName, labels: nodeLabels(cfg) },
    spec: { taints: cfg.node.taints.map((t) => ({ key: t.key, value: t.value, effect: t.effect })) },
    status: {
      capacity: { ...cfg.node.capacity },
      allocatable: { ...cfg.node.capacity },
      addresses: [
        { type: 'InternalIP', address: id.internalIP },
        { type: 'Hostname', address: cfg.nodeName },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: id.kubeletPort } },
      nodeInfo: {
        machineID: id.clusterId,
        systemUUID: id.clusterId,
        bootID: id.bootId ?? randomUUID(),
        kernelVersion: '',
        osImage: 'Kip virtual node (one Compute Engine VM per pod)',
        containerRuntimeVersion: 'kip://0.1.0',
        kubeletVersion: KUBELET_VERSION,
        kubeProxyVersion: '',
        operatingSystem: 'linux',
        architecture: 'amd64',
      },
    },
  };
}

/** Kubernetes time: RFC 3339 to the second. */
export function kubeTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** A condition in the shape kubelets write, the heartbeat stamped `now`. */
export function condition(
  type: string,
  status: 'True' | 'False' | 'Unknown',
  reason: string,
  message: string,
  now: number,
  since: number,
): V1NodeCondition {
  return {
    type,
    status,
    reason,
    message,
    lastHeartbeatTime: kubeTime(now) as unknown as Date,
    lastTransitionTime: kubeTime(since) as unknown as Date,
  };
}
