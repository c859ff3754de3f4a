/**
 * Pod events (core v1 Events, what `kubectl describe pod` and `kubectl get events` show). Writing
 * an event never fails the caller: an event that cannot be written is logged and dropped.
 */
import { randomBytes } from 'node:crypto';
import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
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
}

const COMPONENT = 'kip';

/** Writes core v1 Events through the API server; repeats update the count of the first event. */
export class KubeEventRecorder implements PodEventRecorder {
  private readonly written = new Map<string, { name: string; count: number; first: Date }>();

  constructor(private readonly opts: KubeEventRecorderOptions) {}

  async record(pod: V1Pod, type: EventType, reason: string, message: string): Promise<void> {
    const namespace = pod.metadata?.namespace ?? 'default';
    const podName = pod.metadata?.name ?? '';
    this.opts.onEvent?.(type, reason);
    const key = `${pod.metadata?.uid}/${reason}/${message}`;
    const now = new Date();
    const prior = this.written.get(key);
    const name = prior?.name ?? `${podName}.${randomBytes(8).toString('hex')}`;
    const count = (prior?.count ?? 0) + 1;
    const first = prior?.first ?? now;
    this.written.set(key, { name, count, first });
    // Bounded memory: the oldest entries go first.
    if (this.written.size > 10_000) this.written.delete(this.written.keys().next().value!);
    const body = {
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
    try {
      if (prior) await this.opts.core.replaceNamespacedEvent({ name, namespace, body });
      else await this.opts.core.createNamespacedEvent({ namespace, body });
    } catch (err) {
      this.opts.log.warn(
        { pod: `${namespace}/${podName}`, reason, err: (err as Error).message },
        'cannot write pod event',
      );
    }
  }
}
