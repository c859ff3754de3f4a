// Request and response shapes of the cell agent's HTTPS API, shared by the agent (cell-agent/) and
// the provider's client (lib/cell-agent-client.ts). Times are RFC 3339 strings, as on the wire.
import type { V1Pod } from '@kubernetes/client-node';

/** Files of one pod volume the provider resolved (configMap, secret, projected, service account token). */
export interface VolumeFiles {
  /** Relative path inside the volume -> file content, base64. */
  files: Record<string, string>;
}

/** resolv.conf for the pod, as the kubelet's DNS configurer would write it. */
export interface PodDnsConfig {
  nameservers: string[];
  searches?: string[];
  options?: { name: string; value?: string }[];
}

/** Body of `PUT /v1/pod`. */
export interface PutPodRequest {
  /** A Kubernetes v1 Pod. Env `valueFrom` of configMap/secret keys must already be resolved to `value`. */
  pod: V1Pod;
  /** Volume name -> files, for configMap, secret, projected and service-account-token volumes. */
  volumes?: Record<string, VolumeFiles>;
  /** `.dockerconfigjson` documents (JSON text or the parsed object) used to pull the pod's images. */
  imagePullSecrets?: (string | Record<string, unknown>)[];
  /** Nameservers, searches and options for /etc/resolv.conf; absent: the cell's own resolv.conf. */
  dns?: PodDnsConfig;
  /** The pod's hostname; default `spec.hostname` or the pod name. */
  hostname?: string;
}

/** Reply of `PUT /v1/pod` (202). */
export interface PutPodReply {
  uid: string;
  /** True when the same pod UID was already running; nothing changed. */
  unchanged: boolean;
}

/** Body of `PUT /v1/pod/volumes`: new files for resolved volumes of the running pod. */
export interface PutVolumesRequest {
  /** The running pod's UID; another UID is refused with 409. */
  uid: string;
  /** Volume name -> its complete new content (files absent here are removed from the volume). */
  volumes: Record<string, VolumeFiles>;
}

/** Reply of `PUT /v1/pod/volumes` (200). */
export interface PutVolumesReply {
  uid: string;
  /** The volumes whose content changed; a volume sent with the content it has is left alone. */
  changed: string[];
}

export interface ContainerStateWaiting {
  reason?: string;
  message?: string;
}
export interface ContainerStateRunning {
  startedAt?: string;
}
export interface ContainerStateTerminated {
  exitCode: number;
  signal?: number;
  reason?: string;
  message?: string;
  startedAt?: string;
  finishedAt?: string;
  containerID?: string;
}
export interface ContainerState {
  waiting?: ContainerStateWaiting;
  running?: ContainerStateRunning;
  terminated?: ContainerStateTerminated;
}

/** A Kubernetes v1 ContainerStatus. */
export interface ContainerStatus {
  name: string;
  state: ContainerState;
  lastState: ContainerState;
  ready: boolean;
  started: boolean;
  restartCount: number;
  image: string;
  imageID: string;
  containerID?: string;
}

/** A Kubernetes v1 PodCondition. */
export interface PodCondition {
  type: 'PodReadyToStartContainers' | 'Initialized' | 'ContainersReady' | 'Ready';
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
  lastProbeTime: null;
  lastTransitionTime: string;
}

export type PodPhase = 'Pending' | 'Running' | 'Succeeded' | 'Failed';

/** Reply of `GET /v1/pod/status`: a Kubernetes v1 PodStatus plus the status version and pod UID. */
export interface PodStatusReply {
  /** Increases on every change; pass it back as `after` to long-poll for the next one. */
  version: number;
  uid: string;
  phase: PodPhase;
  conditions: PodCondition[];
  containerStatuses: ContainerStatus[];
  initContainerStatuses: ContainerStatus[];
  podIP?: string;
  podIPs?: { ip: string }[];
  startTime?: string;
  qosClass: 'Guaranteed' | 'Burstable' | 'BestEffort';
  /** Why the pod failed as a whole (DeadlineExceeded), as in PodStatus. */
  reason?: string;
  message?: string;
  /** True once a DELETE finished: every container has stopped and the status is final. */
  deleted?: boolean;
}

export interface CpuStats {
  time: string;
  usageNanoCores?: number;
  usageCoreNanoSeconds: number;
}
export interface MemoryStats {
  time: string;
  availableBytes?: number;
  usageBytes: number;
  workingSetBytes: number;
  rssBytes: number;
  pageFaults: number;
  majorPageFaults: number;
}
export interface ContainerStats {
  name: string;
  startTime: string;
  cpu: CpuStats;
  memory: MemoryStats;
}

/** Reply of `GET /v1/stats/summary`: the kubelet summary API's PodStats for this cell's pod. */
export interface PodStats {
  podRef: { name: string; namespace: string; uid: string };
  startTime: string;
  containers: ContainerStats[];
  cpu: CpuStats;
  memory: MemoryStats;
}

/** Reply of `GET /v1/healthz`. */
export interface HealthReply {
  version: string;
}

/** Error body of every 4xx/5xx reply: a Kubernetes Status naming the bad field where there is one. */
export interface ApiStatus {
  kind: 'Status';
  apiVersion: 'v1';
  status: 'Failure';
  reason: 'BadRequest' | 'Invalid' | 'Conflict' | 'NotFound' | 'InternalError' | 'MethodNotAllowed';
  code: number;
  message: string;
  details?: { causes?: { field: string; message: string }[] };
}

/** An error the API answers with a Kubernetes Status of the given code. */
export class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: ApiStatus['reason'],
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** The Kubernetes Status body of an error reply (the agent's and the cell simulator's). */
export function statusBody(
  code: number,
  reason: ApiStatus['reason'],
  message: string,
  field?: string,
): ApiStatus {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    status: 'Failure',
    reason,
    code,
    message,
    ...(field ? { details: { causes: [{ field, message }] } } : {}),
  };
}

/** Query of `GET /v1/pod/containers/<name>/logs`, as the kubelet takes it. */
export interface LogOptions {
  follow?: boolean;
  tailLines?: number;
  sinceSeconds?: number;
  sinceTime?: string;
  timestamps?: boolean;
  limitBytes?: number;
  previous?: boolean;
}

/** The WebSocket subprotocols the exec endpoint speaks, preferred first. */
export const EXEC_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'] as const;

/** Agent API version reported by healthz. */
export const CELL_AGENT_API_VERSION = 'v1';
