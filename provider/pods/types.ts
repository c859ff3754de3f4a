/**
 * The contract between the pod controller and the cell manager, in virtual-kubelet's shape
 * (PodLifecycleHandler + PodNotifier). The pod controller owns the Kubernetes side (informer, work
 * queues named by the direction data flows, status writes, final deletes); the cell manager owns
 * cells (etcd records, the cloud, the agents). Wiring point: provider/main.ts starts the pod
 * informer; the pod controller takes it and a `PodLifecycleHandler & PodNotifier` implementation.
 */
import type { V1Pod, V1PodStatus } from '@kubernetes/client-node';

/** The pod (or its cell) does not exist on the provider side; treated as success on delete. */
export class PodNotFoundError extends Error {
  constructor(
    readonly namespace: string,
    readonly podName: string,
  ) {
    super(`pod ${namespace}/${podName} is not known to the provider`);
    this.name = 'PodNotFoundError';
  }
}

/** The pod asks for something the product cannot do; reported as a pod event and status message. */
export class UnsupportedPodError extends Error {
  constructor(
    message: string,
    /** The pod field at fault, e.g. `spec.volumes[2].hostPath`. */
    readonly field: string,
  ) {
    super(message);
    this.name = 'UnsupportedPodError';
  }
}

/** What the provider runs pods on. Every method must be safe to call again for the same pod. */
export interface PodLifecycleHandler {
  /**
   * Starts the pod: records its cell, boots or claims a VM and dispatches the pod. Returns once the
   * work is recorded (not when the pod runs); progress arrives through NotifyPods. Idempotent: a
   * second call for a pod whose cell exists adopts it.
   */
  createPod(pod: V1Pod, signal: AbortSignal): Promise<void>;
  /** Applies changes to a running pod (images, activeDeadlineSeconds, labels, annotations). */
  updatePod(pod: V1Pod, signal: AbortSignal): Promise<void>;
  /**
   * Stops the pod with its grace period, then deletes its VM. May be called many times; throws
   * PodNotFoundError when nothing is left. Afterwards the notifier reports a terminal status.
   */
  deletePod(pod: V1Pod, signal: AbortSignal): Promise<void>;
  /** The provider's view of one pod (its last known status), or null if it has no cell. */
  getPod(namespace: string, name: string): Promise<V1Pod | null>;
  /** The provider's view of one pod's status, or null. */
  getPodStatus(namespace: string, name: string): Promise<V1PodStatus | null>;
  /**
   * Every pod the provider has a cell for, on this node only: the controller deletes those missing
   * from Kubernetes at start, so a wider answer would delete other nodes' pods.
   */
  getPods(): Promise<V1Pod[]>;
}

/** Pushes status changes instead of being polled. */
export interface PodNotifier {
  /**
   * Registers `notify`, called with the full pod (status current) whenever its status changes.
   * Must return at once; `notify` itself may block.
   */
  notifyPods(notify: (pod: V1Pod) => void): void;
}

/** A cell's VM started running for a pod: the moment billing of the cell begins. */
export interface CellStartedUsage {
  cellName: string;
  podUid: string;
  namespace: string;
  podName: string;
  machineType: string;
  zone: string;
  spot: boolean;
  vcpus: number;
  memoryMiB: number;
  gpus: number;
  /** When GCE reported the VM RUNNING (as observed by the provider). */
  at: Date;
}

/** A cell's VM is gone: billing of the cell ends. */
export interface CellStoppedUsage {
  cellName: string;
  /** When the VM delete completed. */
  at: Date;
}

/**
 * Hook for metering (provider/metering/). The cell manager calls it when a cell's VM is reported
 * RUNNING and when its deletion completes. Optional: with no usage reporter configured
 * (`usageReporter.url` empty) nothing is passed and no calls are made. Implementations must not
 * throw for a repeated call (a provider restart may report the same cell again).
 */
export interface CellUsageMeter {
  cellStarted(usage: CellStartedUsage): void | Promise<void>;
  cellStopped(usage: CellStoppedUsage): void | Promise<void>;
}
