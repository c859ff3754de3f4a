/**
 * Pod status as the provider writes it: the agent's status mapped onto the pod (podIP and hostIP =
 * the cell's address, since the cell VM is the pod's host), and honest waiting states while there
 * is no agent to ask yet (`CellBooting` while the VM boots, the cloud's own words on a failure).
 */
import type { V1Pod, V1PodStatus, V1ResourceRequirements } from '@kubernetes/client-node';
import type { PodStatusReply } from '../../lib/cell-agent-api.ts';

/** Waiting reasons the provider reports before the agent has the pod. */
export const WAITING_REASONS = {
  /** The cell's VM is being created or is booting; the message names the VM. */
  cellBooting: 'CellBooting',
  /** The cloud refused or could not place the VM yet; the message carries its words and next step. */
  cellCreateFailed: 'CellCreateFailed',
  /** The pod asks for something Kip does not support; the message names the field. */
  unsupported: 'UnsupportedPodSpec',
  /** A ConfigMap, Secret or token the pod needs could not be resolved. */
  configError: 'CreateContainerConfigError',
} as const;

type QosClass = 'Guaranteed' | 'Burstable' | 'BestEffort';

const COMPUTE = ['cpu', 'memory'];

/** The pod's QoS class by the kubelet's rules (requests and limits of cpu and memory). */
export function qosClass(pod: V1Pod): QosClass {
  const containers = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])];
  let any = false;
  let guaranteed = true;
  for (const c of containers) {
    const r: V1ResourceRequirements = c.resources ?? {};
    for (const name of COMPUTE) {
      const req = r.requests?.[name];
      const lim = r.limits?.[name];
      if (req !== undefined || lim !== undefined) any = true;
      // An absent request defaults to the limit.
      if (lim === undefined || (req !== undefined && String(req) !== String(lim))) guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

/** A Pending status whose containers all wait with `reason` and `message`. */
export function waitingStatus(
  pod: V1Pod,
  reason: string,
  message: string,
  opts: { since?: Date; address?: string } = {},
): V1PodStatus {
  const at = (opts.since ?? new Date()).toISOString();
  const waiting = (c: { name: string; image?: string }) => ({
    name: c.name,
    image: c.image ?? '',
    imageID: '',
    ready: false,
    started: false,
    restartCount: 0,
    state: { waiting: { reason, message } },
    lastState: {},
  });
  const status = {
    phase: 'Pending',
    reason,
    message,
    qosClass: qosClass(pod),
    conditions: [
      { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: at },
      {
        type: 'Ready',
        status: 'False',
        reason,
        message,
        lastProbeTime: null,
        lastTransitionTime: at,
      },
    ],
    containerStatuses: (pod.spec?.containers ?? []).map(waiting),
    ...(pod.spec?.initContainers?.length
      ? { initContainerStatuses: pod.spec.initContainers.map(waiting) }
      : {}),
    ...(opts.address ? addresses(opts.address) : {}),
  };
  return status as unknown as V1PodStatus;
}

function addresses(address: string) {
  return {
    podIP: address,
    podIPs: [{ ip: address }],
    hostIP: address,
    hostIPs: [{ ip: address }],
  };
}

/** The pod status from the agent's reply; the cell's address is the pod's and the host's IP. */
export function statusFromAgent(reply: PodStatusReply, address: string): V1PodStatus {
  const scheduled = reply.conditions.find((c) => c.type === 'PodReadyToStartContainers');
  const status = {
    phase: reply.phase,
    // Clears a waiting reason and message the provider set before the agent had the pod.
    reason: null,
    message: null,
    qosClass: reply.qosClass,
    conditions: [
      {
        type: 'PodScheduled',
        status: 'True',
        lastProbeTime: null,
        lastTransitionTime: scheduled?.lastTransitionTime ?? reply.startTime ?? null,
      },
      ...reply.conditions,
    ],
    containerStatuses: reply.containerStatuses,
    ...(reply.initContainerStatuses.length ? { initContainerStatuses: reply.initContainerStatuses } : {}),
    ...(reply.startTime ? { startTime: reply.startTime } : {}),
    ...addresses(address),
  };
  return status as unknown as V1PodStatus;
}

/** Whether the phase is final: the pod will not run again. */
export function isTerminalPhase(phase: string | undefined): boolean {
  return phase === 'Succeeded' || phase === 'Failed';
}
