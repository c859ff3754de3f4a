/**
 * The narrow interfaces each kubelet API route calls. The pod path implements them by proxying to
 * the cell agent; a route whose handler is missing answers 501.
 */
import type { Readable, Writable } from 'node:stream';
import type { V1Pod } from '@kubernetes/client-node';

/** The target of logs/exec/attach: a container of a pod (the UID when the caller gave one). */
export interface ContainerRef {
  namespace: string;
  pod: string;
  container: string;
  podUid?: string;
}

/** `/containerLogs` query parameters, parsed and checked. */
export interface LogOptions {
  follow: boolean;
  previous: boolean;
  timestamps: boolean;
  /** Lines from the end; absent means all. */
  tailLines?: number;
  /** Stop after this many bytes. */
  limitBytes?: number;
  sinceSeconds?: number;
  sinceTime?: Date;
  /** Which stream (API servers with PodLogsQuerySplitStreams send it); default All. */
  stream: 'All' | 'Stdout' | 'Stderr';
}

export interface ContainerLogsHandler {
  /**
   * The container's log as a byte stream. With `follow`, the stream stays open until `signal`
   * aborts (the client went away) or the container ends. Throws NotFoundError for an unknown pod or
   * container.
   */
  containerLogs(target: ContainerRef, opts: LogOptions, signal: AbortSignal): Promise<Readable>;
}

/** Which streams an exec/attach session carries. `tty` merges stderr into stdout. */
export interface StreamOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}

export interface TerminalSize {
  width: number;
  height: number;
}

/** The client's streams, bridged from the WebSocket channels. Absent streams are null. */
export interface SessionStreams {
  /** Ends when the client closes stdin. */
  stdin: Readable | null;
  stdout: Writable | null;
  stderr: Writable | null;
  /** Registers a listener for terminal resizes (tty sessions). */
  onResize(listener: (size: TerminalSize) => void): void;
  /** Aborts when the client disconnects; the handler should stop the process or detach. */
  signal: AbortSignal;
}

/** How a session ended: the process's exit code (0 = success). */
export interface SessionResult {
  exitCode: number;
}

export interface ExecHandler {
  /** Runs `command` in the container, wired to `streams`; resolves with its exit code. */
  exec(
    target: ContainerRef,
    command: string[],
    opts: StreamOptions,
    streams: SessionStreams,
  ): Promise<SessionResult>;
}

export interface AttachHandler {
  /** Attaches to the container's main process; resolves when it ends or the client detaches. */
  attach(target: ContainerRef, opts: StreamOptions, streams: SessionStreams): Promise<SessionResult>;
}

/** The kubelet's `/stats/summary` document (k8s.io/kubelet stats/v1alpha1), in the fields Kip fills. */
export interface StatsSummary {
  node: {
    nodeName: string;
    startTime?: string;
    cpu?: CpuStats;
    memory?: MemoryStats;
    network?: Record<string, unknown>;
    fs?: Record<string, unknown>;
  };
  pods: PodStats[];
}

export interface CpuStats {
  time: string;
  usageNanoCores?: number;
  usageCoreNanoSeconds?: number;
}

export interface MemoryStats {
  time: string;
  availableBytes?: number;
  usageBytes?: number;
  workingSetBytes?: number;
  rssBytes?: number;
  pageFaults?: number;
  majorPageFaults?: number;
}

export interface ContainerStats {
  name: string;
  startTime: string;
  cpu?: CpuStats;
  memory?: MemoryStats;
  [field: string]: unknown;
}

export interface PodStats {
  podRef: { name: string; namespace: string; uid: string };
  startTime: string;
  containers: ContainerStats[];
  cpu?: CpuStats;
  memory?: MemoryStats;
  [field: string]: unknown;
}

export interface StatsHandler {
  /** The node's and its pods' resource usage, gathered from the cells. */
  statsSummary(signal: AbortSignal): Promise<StatsSummary>;
}

export interface PodsLister {
  /** The pods bound to this node, as Kubernetes has them (the pod informer's cache). */
  listPods(): V1Pod[] | Promise<V1Pod[]>;
}

/** The handlers behind the routes; any may be absent (the route then answers 501). */
export interface KubeletApiHandlers {
  containerLogs?: ContainerLogsHandler;
  exec?: ExecHandler;
  attach?: AttachHandler;
  stats?: StatsHandler;
  pods?: PodsLister;
}

/** The pod or container does not exist: answered 404. */
export class NotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

/** A bad parameter: answered 400 with the message, which names the parameter. */
export class InvalidInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidInputError';
  }
}
