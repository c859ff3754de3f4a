/**
 * Pod events (core v1 Events, what `kubectl describe pod` and `kubectl get events` show). Writing
 * an event never fails or holds up the caller: like client-go's event broadcaster, events are
 * queued and written in the background by a few writers, in order per event, and an event that
 * cannot be written (or does not fit in the queue) is logged and dropped.
 */
import { randomBytes } from 'node:crypto';
import type { CoreV1Api, CoreV1Event, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';

export type EventType = 'Normal' | 'Warning';

export interface PodEventRecorder {
  /** Records an event on the pod. Repeats of the same reason and message for a pod count up one event. */
  record(pod: V1Pod, type: EventType, reason: string, message: string): Promise<void>;
}

export interface KubeEventRecorderOptions {
  core: CoreV1Api;
  /** The virtual node's name (`source.host`). */
  nodeName: string;
  log: Logger;
  /** Told of every event recorded (for `kip_pod_events_total`). */
  onEvent?: (type: EventType, reason: string) => void;
  /** Writes in flight at once. Default 4: events give way to the pods' own API calls. */
  concurrency?: number;
  /** Events waiting to be written before new ones are dropped. Default 10 000. */
  maxQueued?: number;
}

const COMPONENT = 'kip';

type EventBody = CoreV1Event & { count: number; lastTimestamp: Date };

/** Writes core v1 Events through the API server; repeats update the count of the first event. */
export class KubeEventRecorder implements PodEventRecorder {
  private readonly written = new Map<string, { name: string; count: number; first: Date }>();
  /** Per event key, the last write queued for it: a repeat is written after it. */
  private readonly chains = new Map<string, Promise<void>>();
  /** Events queued and not yet started, by key: a repeat only raises their count. */
  private readonly queued = new Map<string, EventBody>();
  private readonly concurrency: number;
  private readonly maxQueued: number;
  private active = 0;
  private readonly slots: (() => void)[] = [];
  private dropped = 0;

  constructor(private readonly opts: KubeEventRecorderOptions) {
    this.concurrency = opts.concurrency ?? 4;
    this.maxQueued = opts.maxQueued ?? 10_000;
  }

  record(pod: V1Pod, type: EventType, reason: string, message: string): Promise<void> {
    const namespace = pod.metadata?.namespace ?? 'default';
    const podName = pod.metadata?.name ?? '';
    this.opts.onEvent?.(type, reason);
    const key = `${pod.metadata?.uid}/${reason}/${message}`;
    const now = new Date();
    const waiting = this.queued.get(key);
    if (waiting) {
      waiting.count++;
      waiting.lastTimestamp = now;
      const w = this.written.get(key);
      if (w) w.count = waiting.count;
      return Promise.resolve();
    }
    if (this.queued.size >= this.maxQueued) {
      if (this.dropped++ % 1000 === 0)
        this.opts.log.warn({ dropped: this.dropped, reason }, 'event queue full; dropping events');
      return Promise.resolve();
    }
    const prior = this.written.get(key);
    const name = prior?.name ?? `${podName}.${randomBytes(8).toString('hex')}`;
    const count = (prior?.count ?? 0) + 1;
    const first = prior?.first ?? now;
    this.written.set(key, { name, count, first });
    // Bounded memory: the oldest entries go first.
    if (this.written.size > 10_000) this.written.delete(this.written.keys().next().value!);
    const body: EventBody = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { name, namespace },
      involvedObject: {
        apiVersion: 'v1',
        kind: 'Pod',
        namespace,
        name: podName,
        uid: pod.metadata?.uid,
      },
      type,
      reason,
      message,
      count,
      firstTimestamp: first,
      lastTimestamp: now,
      source: { component: COMPONENT, host: this.opts.nodeName },
      reportingComponent: COMPONENT,
      reportingInstance: this.opts.nodeName,
    };
    this.queued.set(key, body);
    const previous = this.chains.get(key) ?? Promise.resolve();
    const write = previous.then(() => this.write(key, body, !!prior));
    this.chains.set(key, write);
    void write.then(() => {
      if (this.chains.get(key) === write) this.chains.delete(key);
    });
    return Promise.resolve();
  }

  /** Resolves once every event queued so far is written (or dropped). */
  async flush(): Promise<void> {
    await Promise.all([...this.chains.values()]);
  }

  private async write(key: string, body: EventBody, replace: boolean): Promise<void> {
    await this.slot();
    this.queued.delete(key);
    const { namespace, name } = body.metadata as { namespace: string; name: string };
    try {
      if (replace) await this.opts.core.replaceNamespacedEvent({ name, namespace, body });
      else await this.opts.core.createNamespacedEvent({ namespace, body });
    } catch (err) {
      this.opts.log.warn(
        { pod: `${namespace}/${body.involvedObject.name}`, reason: body.reason, err: (err as Error).message },
        'cannot write pod event',
      );
    } finally {
      this.active--;
      this.slots.shift()?.();
    }
  }

  /** Waits for a free writer (first come, first served). */
  private slot(): Promise<void> {
    if (this.active < this.concurrency) {
      this.active++;
      return Promise.resolve();
    }
    return new Promise((resolve) =>
      this.slots.push(() => {
        this.active++;
        resolve();
      }),
    );
  }
}
