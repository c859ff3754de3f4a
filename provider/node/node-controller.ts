import {
  PatchStrategy,
  setHeaderOptions,
  type CoreV1Api,
  type V1Node,
  type V1Taint,
} from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';
import { apiStatus } from '../api-status.ts';
import { sleep, systemClock, type Clock } from '../clock.ts';
import { condition } from './node-object.ts';

/** A dependency the node's readiness follows (the cloud, etcd). Throws when it is unhealthy. */
export interface HealthCheck {
  name: string;
  ping(signal: AbortSignal): Promise<void>;
}

export interface NodeControllerOptions {
  core: CoreV1Api;
  /** The node as Kip wants it (node-object.ts `desiredNode`). */
  node: V1Node;
  health: HealthCheck[];
  log: Logger;
  clock?: Clock;
  /** Full status patch interval (default 60 s; the lease carries the 10 s heartbeat). */
  statusIntervalMs?: number;
  /** Health ping interval (default 10 s); a change of readiness is written at once. */
  pingIntervalMs?: number;
  /** A ping slower than this counts as failed (default 5 s). */
  pingTimeoutMs?: number;
}

const SMP = setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch);

/**
 * Registers the virtual node and keeps its status: conditions with a heartbeat every
 * `statusIntervalMs`, Ready following the health checks, and the node re-created if it is deleted.
 * Status is written as a strategic merge patch of the status subresource, so conditions other
 * controllers add are kept.
 */
export class NodeController {
  private readonly clock: Clock;
  private readonly statusIntervalMs: number;
  private readonly pingIntervalMs: number;
  private readonly pingTimeoutMs: number;
  private uid: string | undefined;
  private healthy: { ok: boolean; message: string } = { ok: false, message: 'not checked yet' };
  private readySince: number;
  private readonly startedAt: number;
  private resolveReady!: () => void;
  private readonly uidListeners: ((uid: string) => void)[] = [];
  /** Resolves once the node exists and its first status is written. */
  readonly ready: Promise<void>;

  constructor(private readonly opts: NodeControllerOptions) {
    this.clock = opts.clock ?? systemClock;
    this.statusIntervalMs = opts.statusIntervalMs ?? 60_000;
    this.pingIntervalMs = opts.pingIntervalMs ?? 10_000;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 5000;
    this.startedAt = this.clock.now();
    this.readySince = this.startedAt;
    this.ready = new Promise((r) => (this.resolveReady = r));
  }

  get name(): string {
    return this.opts.node.metadata!.name!;
  }

  /** The node's UID as registered (changes if the node is re-created); undefined before then. */
  nodeUid(): string | undefined {
    return this.uid;
  }

  /** Calls `listener` with the node's UID whenever it is registered or re-created. */
  onRegistered(listener: (uid: string) => void): void {
    this.uidListeners.push(listener);
    if (this.uid) listener(this.uid);
  }

  /** Whether the last health ping passed, and why not. */
  health(): { ok: boolean; message: string } {
    return this.healthy;
  }

  /**
   * Runs until `signal` aborts: registers the node (retrying with backoff while the API is
   * unreachable), then pings and patches status on their intervals.
   */
  async run(signal: AbortSignal): Promise<void> {
    await this.checkHealth(signal);
    let backoff = 500;
    while (!signal.aborted) {
      try {
        await this.ensureNode();
        await this.patchStatus();
        break;
      } catch (err) {
        this.opts.log.warn(
          { err: (err as Error).message, node: this.name },
          'registering the node failed; retrying',
        );
        await sleep(this.clock, backoff, signal);
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
    if (signal.aborted) return;
    this.resolveReady();
    let nextStatus = this.clock.now() + this.statusIntervalMs;
    while (!signal.aborted) {
      await sleep(
        this.clock,
        Math.min(this.pingIntervalMs, Math.max(0, nextStatus - this.clock.now())),
        signal,
      );
      if (signal.aborted) break;
      const changed = await this.checkHealth(signal);
      const due = this.clock.now() >= nextStatus;
      try {
        // Between status writes, a cheap read notices a deleted node within one ping interval.
        if (!changed && !due) {
          if (await this.exists()) continue;
          this.opts.log.warn({ node: this.name }, 'the node was deleted or replaced; registering it again');
          await this.ensureNode();
        }
        await this.patchStatus();
        nextStatus = this.clock.now() + this.statusIntervalMs;
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message, node: this.name }, 'node status update failed');
        nextStatus = this.clock.now() + this.pingIntervalMs;
      }
    }
  }

  /** Whether the node object exists (errors other than 404 count as "yes": nothing to repair). */
  private async exists(): Promise<boolean> {
    try {
      const live = await this.opts.core.readNode({ name: this.name });
      return live.metadata?.uid === this.uid;
    } catch (err) {
      return apiStatus(err) !== 404;
    }
  }

  /** Runs every health check; true when readiness changed. */
  private async checkHealth(signal: AbortSignal): Promise<boolean> {
    const failures: string[] = [];
    await Promise.all(
      this.opts.health.map(async (h) => {
        const ping = new AbortController();
        const onAbort = () => ping.abort();
        signal.addEventListener('abort', onAbort, { once: true });
        let cancel = () => {};
        try {
          await Promise.race([
            h.ping(ping.signal),
            new Promise((_, reject) => {
              cancel = this.clock.setTimer(() => {
                ping.abort();
                reject(new Error(`no answer within ${this.pingTimeoutMs} ms`));
              }, this.pingTimeoutMs);
            }),
          ]);
        } catch (err) {
          failures.push(`${h.name}: ${(err as Error).message}`);
        } finally {
          cancel();
          signal.removeEventListener('abort', onAbort);
        }
      }),
    );
    const next = { ok: failures.length === 0, message: failures.sort().join('; ') };
    const changed = next.ok !== this.healthy.ok;
    if (changed) {
      this.readySince = this.clock.now();
      if (next.ok) this.opts.log.info({ node: this.name }, 'node healthy');
      else this.opts.log.warn({ node: this.name, reason: next.message }, 'node not ready');
    }
    this.healthy = next;
    return changed;
  }

  /** Creates the node if it is missing; otherwise makes sure Kip's labels and taints are on it. */
  private async ensureNode(): Promise<void> {
    const { core } = this.opts;
    let live: V1Node | undefined;
    try {
      live = await core.readNode({ name: this.name });
    } catch (err) {
      if (apiStatus(err) !== 404) throw err;
    }
    if (!live) {
      const { metadata, spec } = this.opts.node;
      const created = await core.createNode({ body: { apiVersion: 'v1', kind: 'Node', metadata, spec } });
      this.opts.log.info({ node: this.name, uid: created.metadata?.uid }, 'registered the node');
      this.setUid(created.metadata!.uid!);
      return;
    }
    this.setUid(live.metadata!.uid!);
    const labels = this.opts.node.metadata!.labels ?? {};
    const missingLabels = Object.entries(labels).some(([k, v]) => live.metadata?.labels?.[k] !== v);
    const taints = mergeTaints(live.spec?.taints ?? [], this.opts.node.spec?.taints ?? []);
    if (missingLabels || taints.length !== (live.spec?.taints ?? []).length) {
      // The resourceVersion makes this a compare-and-swap: a concurrent taint change is not lost.
      await core.patchNode(
        {
          name: this.name,
          body: { metadata: { labels, resourceVersion: live.metadata!.resourceVersion }, spec: { taints } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
    }
  }

  private setUid(uid: string): void {
    if (uid === this.uid) return;
    this.uid = uid;
    for (const l of this.uidListeners) l(uid);
  }

  private statusBody(): Record<string, unknown> {
    const now = this.clock.now();
    const { ok, message } = this.healthy;
    const desired = this.opts.node.status!;
    return {
      status: {
        ...desired,
        conditions: [
          ok
            ? condition('Ready', 'True', 'KubeletReady', 'kip is ready', now, this.readySince)
            : condition('Ready', 'False', 'KubeletNotReady', message, now, this.readySince),
          condition(
            'MemoryPressure',
            'False',
            'KubeletHasSufficientMemory',
            'cells are sized per pod',
            now,
            this.startedAt,
          ),
          condition(
            'DiskPressure',
            'False',
            'KubeletHasNoDiskPressure',
            'cells are sized per pod',
            now,
            this.startedAt,
          ),
          condition(
            'PIDPressure',
            'False',
            'KubeletHasSufficientPID',
            'cells are sized per pod',
            now,
            this.startedAt,
          ),
          condition(
            'NetworkUnavailable',
            'False',
            'RouteCreated',
            'cells use the VPC network',
            now,
            this.startedAt,
          ),
        ],
      },
    };
  }

  /** Writes the status; if the node was deleted meanwhile, registers it again. */
  private async patchStatus(): Promise<void> {
    try {
      await this.opts.core.patchNodeStatus({ name: this.name, body: this.statusBody() }, SMP);
    } catch (err) {
      if (apiStatus(err) !== 404) throw err;
      this.opts.log.warn({ node: this.name }, 'the node was deleted; registering it again');
      await this.ensureNode();
      await this.opts.core.patchNodeStatus({ name: this.name, body: this.statusBody() }, SMP);
    }
  }
}

/** The live taints plus any of Kip's that are missing (others' taints are kept). */
export function mergeTaints(live: V1Taint[], ours: V1Taint[]): V1Taint[] {
  const out = [...live];
  for (const t of ours) {
    if (!out.some((l) => l.key === t.key && l.effect === t.effect)) out.push(t);
  }
  return out;
}
