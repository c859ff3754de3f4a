import { createHash, randomBytes } from 'node:crypto';
import type { PodIdentity } from './cloud-provider.ts';

/** Label keys Kip puts on every cell VM. */
export const LABELS = {
  cluster: 'kip-cluster',
  cell: 'kip-cell',
  podNamespace: 'kip-pod-namespace',
  podName: 'kip-pod-name',
  podUid: 'kip-pod-uid',
  /** `true` on a standby cell: booted ahead of demand, not yet any pod's. */
  standby: 'kip-standby',
} as const;

/** Metadata key of the cell agent's bootstrap document. */
export const BOOTSTRAP_METADATA_KEY = 'kip-cell-agent-config';

/** A short, stable, name-safe digest of the cluster id (GCE names and tags allow 63 characters). */
export function clusterSlug(clusterId: string): string {
  return createHash('sha256').update(clusterId).digest('hex').slice(0, 8);
}

/**
 * The VM name of a pod's cell: `kip-<cluster digest>-<pod uid without dashes>[-g<generation>]`.
 * Derived only from the cluster and the pod, so a provider restart computes the same name and
 * never creates a second VM for the same pod.
 */
export function instanceName(clusterId: string, podUid: string, generation = 0): string {
  const uid = podUid.toLowerCase().replace(/[^a-z0-9]/g, '');
  if (uid.length === 0) throw new Error('pod uid is empty');
  const base = `kip-${clusterSlug(clusterId)}-${uid.slice(0, 40)}`;
  return generation > 0 ? `${base}-g${generation}` : base;
}

/**
 * The VM name of a standby cell: `kip-<cluster digest>-s<random hex>`. Random, because a standby cell
 * belongs to no pod; its etcd record (written before the insert) keeps a restart from losing it.
 */
export function standbyInstanceName(clusterId: string): string {
  return `kip-${clusterSlug(clusterId)}-s${randomBytes(12).toString('hex')}`;
}

/** The labels of a standby cell VM: owned by the cluster, marked standby, no pod labels. */
export function standbyLabels(clusterId: string, cellId: string): Record<string, string> {
  return {
    [LABELS.cluster]: labelValue(clusterSlug(clusterId)),
    [LABELS.cell]: labelValue(cellId),
    [LABELS.standby]: 'true',
  };
}

/** The network tag every cell of a cluster carries; the agent-port firewall rule targets it. */
export function cellNetworkTag(clusterId: string): string {
  return `kip-${clusterSlug(clusterId)}-cell`;
}

/** The name of the cluster's agent-port firewall rule. */
export function firewallName(clusterId: string): string {
  return `kip-${clusterSlug(clusterId)}-agent`;
}

/**
 * A GCE label value: lower case letters, digits, `_` and `-`, at most 63 characters. Other
 * characters become `-`; an over-long value keeps its start and a digest of the whole, so two
 * long names stay distinct.
 */
export function labelValue(value: string): string {
  let v = value.toLowerCase().replace(/[^a-z0-9_-]/g, '-');
  if (v.length > 63) v = `${v.slice(0, 54)}-${createHash('sha256').update(value).digest('hex').slice(0, 8)}`;
  return v;
}

/** The labels of a pod's cell VM. */
export function cellLabels(clusterId: string, cellId: string, pod: PodIdentity): Record<string, string> {
  return {
    [LABELS.cluster]: labelValue(clusterSlug(clusterId)),
    [LABELS.cell]: labelValue(cellId),
    [LABELS.podNamespace]: labelValue(pod.namespace),
    [LABELS.podName]: labelValue(pod.name),
    [LABELS.podUid]: labelValue(pod.uid),
  };
}

/**
 * The insert's requestId: a UUID derived from everything that makes the insert what it is. The
 * same cell retried after a crash sends the same id, and GCE answers with the original operation
 * instead of creating another VM; a fallback to another zone or shape is a different request.
 */
export function insertRequestId(parts: string[]): string {
  const h = createHash('sha256').update(parts.join('\u0000')).digest();
  h[6] = (h[6]! & 0x0f) | 0x50; // version 5 layout (name-based)
  h[8] = (h[8]! & 0x3f) | 0x80; // RFC 4122 variant
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}
