/**
 * The logs of finished pods. A pod that ends (restartPolicy Never or OnFailure) loses its VM, and
 * with it the agent that served its logs; a kubelet keeps a finished pod's logs readable until the
 * pod is deleted. Before the cell of a finished pod is deleted, the cell manager has `collect`
 * read each container's log (init containers too) from the agent, with timestamps, keeping the
 * last `perContainerBytes`. They are kept in memory within `budgetBytes` for all pods: when a
 * new pod's logs do not fit, the pods that finished longest ago are dropped first. An entry goes
 * when the pod is deleted (`forget`), and all of them when the provider restarts.
 */
import { Readable } from 'node:stream';
import type { V1Pod } from '@kubernetes/client-node';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { LogOptions as AgentLogOptions } from '../../lib/cell-agent-api.ts';
import { CellAgentError } from '../../lib/cell-agent-client.ts';
import type { Logger } from '../../lib/log.ts';
import { formatLine, selectLines, sinceNs } from '../../lib/log-lines.ts';
import { InvalidInputError, NotFoundError, type LogOptions } from '../kubelet-api/types.ts';

export const DEFAULT_FINISHED_LOG_BYTES = 1024 * 1024;
export const DEFAULT_FINISHED_LOG_BUDGET_BYTES = 256 * 1024 * 1024;

/** What `collect` needs of a cell agent client (CellAgentClient.logs). */
export interface LogSource {
  logs(container: string, opts: AgentLogOptions, signal?: AbortSignal): Promise<Readable>;
}

export interface FinishedLogsOptions {
  /** Tail kept per container, bytes (`cells.finishedLogBytes`). Default 1 MiB. */
  perContainerBytes?: number;
  /** All kept logs together, bytes (`cells.finishedLogBudgetBytes`). Default 256 MiB. */
  budgetBytes?: number;
  /** How long reading one pod's logs from its agent may take before giving up. Default 5 s. */
  timeoutMs?: number;
  log: Logger;
  /**
   * Whether Kubernetes still has the pod (the pod informer): a pod deleted before its logs were
   * read is not kept. Absent: every pod counts as still there.
   */
  podExists?: (namespace: string, name: string, uid: string) => boolean;
  /** Gauges of pods and bytes kept, counter of pods evicted. */
  registry?: Registry;
  now?: () => number;
}

/** One container's kept log: `<RFC3339Nano> <text>\n` lines, or why there is none. */
export type KeptContainerLog = { log: Buffer; truncated: boolean } | { missing: string };

/** A finished pod's kept logs. */
export interface FinishedPodLogs {
  namespace: string;
  name: string;
  uid: string;
  /** When the logs were kept (ms since the epoch). */
  keptAt: number;
  containers: Map<string, KeptContainerLog>;
  bytes: number;
}

const keyOf = (namespace: string, name: string) => `${namespace}/${name}`;

/**
 * Reads `stream` to its end, keeping at most the last `limit` bytes, cut to whole lines (a single
 * line longer than `limit` keeps its end). Memory stays near twice `limit` whatever the log's size.
 */
export async function readTail(
  stream: Readable,
  limit: number,
): Promise<{ log: Buffer; truncated: boolean }> {
  const chunks: Buffer[] = [];
  let held = 0;
  let truncated = false;
  for await (const chunk of stream) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    chunks.push(buf);
    held += buf.length;
    while (chunks.length > 1 && held - chunks[0]!.length >= limit) {
      held -= chunks.shift()!.length;
      truncated = true;
    }
  }
  let all = Buffer.concat(chunks);
  if (all.length > limit) {
    truncated = true;
    all = all.subarray(all.length - limit);
    // Drop the partial line at the front, unless that would drop everything.
    const nl = all.indexOf(10);
    if (nl >= 0 && nl < all.length - 1) all = all.subarray(nl + 1);
  }
  return { log: Buffer.from(all), truncated };
}

export class FinishedLogs {
  /** By `namespace/name`, oldest kept first (Map order is the eviction order). */
  private readonly pods = new Map<string, FinishedPodLogs>();
  private total = 0;
  /** Collections in flight, by `namespace/name`: a pod deleted meanwhile must not be kept after. */
  private readonly collecting = new Map<string, { uid: string; forgotten: boolean }>();
  readonly perContainerBytes: number;
  readonly budgetBytes: number;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  private readonly bytesGauge?: Gauge;
  private readonly podsGauge?: Gauge;
  private readonly evictions?: Counter;

  constructor(private readonly o: FinishedLogsOptions) {
    this.perContainerBytes = o.perContainerBytes ?? DEFAULT_FINISHED_LOG_BYTES;
    this.budgetBytes = o.budgetBytes ?? DEFAULT_FINISHED_LOG_BUDGET_BYTES;
    this.timeoutMs = o.timeoutMs ?? 5000;
    this.now = o.now ?? Date.now;
    if (o.registry) {
      const registers = [o.registry];
      this.bytesGauge = new Gauge({
        name: 'kip_finished_pod_log_bytes',
        help: 'Bytes of finished pods’ logs kept in memory after their VMs were deleted',
        registers,
      });
      this.podsGauge = new Gauge({
        name: 'kip_finished_pod_logs',
        help: 'Finished pods whose logs are kept in memory',
        registers,
      });
      this.evictions = new Counter({
        name: 'kip_finished_pod_logs_evicted_total',
        help: 'Finished pods whose kept logs were dropped to stay within cells.finishedLogBudgetBytes',
        registers,
      });
    }
  }

  /** Bytes kept now, all pods together. */
  get bytes(): number {
    return this.total;
  }

  /** Pods whose logs are kept now. */
  get size(): number {
    return this.pods.size;
  }

  /**
   * Reads the logs of every container of a finished pod from its agent and keeps them. Never
   * throws and never takes much longer than the timeout: a failure only means fewer logs kept,
   * logged as a warning.
   */
  async collect(pod: V1Pod, agent: LogSource): Promise<void> {
    const namespace = pod.metadata?.namespace ?? 'default';
    const name = pod.metadata?.name ?? '';
    if (this.perContainerBytes === 0) return;
    const names = [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map((c) => c.name);
    const uid = pod.metadata?.uid ?? '';
    const flight = { uid, forgotten: false };
    this.collecting.set(keyOf(namespace, name), flight);
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.timeoutMs);
    const failures: Record<string, string> = {};
    try {
      const read = await Promise.all(
        names.map(async (c): Promise<[string, KeptContainerLog]> => {
          try {
            const stream = await agent.logs(c, { timestamps: true }, abort.signal);
            return [c, await readTail(stream, this.perContainerBytes)];
          } catch (err) {
            // The agent answers 400 for a container that never started (an init container failed first).
            if (err instanceof CellAgentError && err.code === 400)
              return [c, { missing: 'it never started' }];
            const why = abort.signal.aborted
              ? `not read within ${this.timeoutMs / 1000}s`
              : (err as Error).message;
            failures[c] = why;
            return [c, { missing: `reading it from the cell agent failed (${why})` }];
          }
        }),
      );
      if (Object.keys(failures).length)
        this.o.log.warn(
          { pod: keyOf(namespace, name), containers: failures },
          'could not keep the logs of a finished pod before deleting its VM',
        );
      const gone = !(this.o.podExists?.(namespace, name, uid) ?? true);
      if (gone) this.forget(namespace, name, uid);
      else if (!flight.forgotten) this.keep({ namespace, name, uid }, new Map(read));
    } finally {
      clearTimeout(timer);
      if (this.collecting.get(keyOf(namespace, name)) === flight)
        this.collecting.delete(keyOf(namespace, name));
    }
  }

  /**
   * Keeps a finished pod's logs (replacing any kept for the same name), then drops the pods that
   * finished longest ago until all fit in the budget. A pod whose logs alone exceed the budget is
   * not kept.
   */
  keep(
    pod: { namespace: string; name: string; uid: string },
    containers: Map<string, KeptContainerLog>,
  ): void {
    const key = keyOf(pod.namespace, pod.name);
    this.drop(key);
    let bytes = 0;
    for (const c of containers.values()) if ('log' in c) bytes += c.log.length;
    if (bytes > this.budgetBytes) {
      this.o.log.warn(
        { pod: key, bytes, budgetBytes: this.budgetBytes },
        'the logs of a finished pod are larger than cells.finishedLogBudgetBytes; not kept',
      );
      this.update();
      return;
    }
    for (const [k, p] of this.pods) {
      if (this.total + bytes <= this.budgetBytes) break;
      this.drop(k);
      this.evictions?.inc();
      this.o.log.info({ pod: k, bytes: p.bytes }, 'dropped the kept logs of a finished pod (budget full)');
    }
    this.pods.set(key, { ...pod, keptAt: this.now(), containers, bytes });
    this.total += bytes;
    this.update();
  }

  /** The kept logs of the pod of this name, if any. */
  get(namespace: string, name: string): FinishedPodLogs | undefined {
    return this.pods.get(keyOf(namespace, name));
  }

  /** Drops the pod's kept logs (it was deleted); with `uid`, only if they are that pod's. */
  forget(namespace: string, name: string, uid?: string): void {
    const key = keyOf(namespace, name);
    const flight = this.collecting.get(key);
    if (flight && (uid === undefined || flight.uid === uid)) flight.forgotten = true;
    if (uid !== undefined && this.pods.get(key)?.uid !== uid) return;
    this.drop(key);
    this.update();
  }

  /**
   * A kept container log as the kubelet would serve it: `sinceTime`/`sinceSeconds`, `tailLines`,
   * `timestamps` and `limitBytes` apply as for a live container; `follow` sends what is kept and
   * ends (the container has exited). Throws NotFoundError for a container the pod does not have,
   * InvalidInputError for `previous` (only the last instance is kept) and for a container whose
   * log was not kept.
   */
  read(namespace: string, name: string, container: string, opts: LogOptions): Readable {
    const pod = this.get(namespace, name);
    if (!pod) throw new NotFoundError(`no logs are kept for pod ${namespace}/${name}`);
    const kept = pod.containers.get(container);
    if (!kept) throw new NotFoundError(`container ${container} is not valid for pod ${name}`);
    if (opts.previous)
      throw new InvalidInputError(
        `previous terminated container "${container}" in pod "${name}" not found: the pod finished and its VM was deleted; only the log of the container's last run was kept`,
      );
    if ('missing' in kept)
      throw new InvalidInputError(
        `container "${container}" in pod "${name}" has no log: the pod finished and its VM was deleted, and ${kept.missing}`,
      );
    const lines = kept.log.toString('utf8').split('\n');
    lines.pop(); // the text after the last newline: empty
    const parsed = lines.map((l) => {
      const sp = l.indexOf(' ');
      return sp < 0 ? { time: '', text: l } : { time: l.slice(0, sp), text: l.slice(sp + 1) };
    });
    const since = sinceNs(
      opts.sinceTime ? BigInt(opts.sinceTime.getTime()) * 1_000_000n : undefined,
      opts.sinceSeconds,
      this.now(),
    );
    const out = selectLines(parsed, { sinceNs: since, tailLines: opts.tailLines });
    let buf = Buffer.from(out.map((l) => formatLine(l, opts.timestamps === true)).join(''));
    if (opts.limitBytes !== undefined) buf = buf.subarray(0, opts.limitBytes);
    return Readable.from(buf.length ? [buf] : []);
  }

  private drop(key: string): void {
    const p = this.pods.get(key);
    if (!p) return;
    this.pods.delete(key);
    this.total -= p.bytes;
  }

  private update(): void {
    this.bytesGauge?.set(this.total);
    this.podsGauge?.set(this.pods.size);
  }
}
