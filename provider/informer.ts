import {
  ListWatch,
  Watch,
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
} from '@kubernetes/client-node';
import type { Logger } from '../lib/log.ts';
import { systemClock, type Clock } from './clock.ts';

export type InformerEvent = 'add' | 'update' | 'delete';

export interface InformerOptions<T extends KubernetesObject> {
  kc: KubeConfig;
  /** The collection's path, e.g. `/api/v1/pods`. */
  path: string;
  /** Lists the collection with the same selectors as the watch. */
  list: () => Promise<KubernetesListObject<T>>;
  fieldSelector?: string;
  labelSelector?: string;
  /** Names the informer in logs (`pods`). */
  name: string;
  log: Logger;
  clock?: Clock;
  /** Restart backoff after an error: doubles from `initialMs` to `maxMs` (defaults 1 s, 30 s). */
  restartBackoff?: { initialMs: number; maxMs: number };
}

/** `namespace/name`, or `name` for cluster-scoped objects: the key queues carry. */
export function objectKey(obj: KubernetesObject): string {
  const ns = obj.metadata?.namespace;
  return ns ? `${ns}/${obj.metadata?.name}` : (obj.metadata?.name ?? '');
}

/**
 * A list+watch cache that keeps going. client-node's ListWatch relists on 410 Gone by itself but
 * stops on any other error; this wrapper restarts it with backoff (resuming from the last
 * resourceVersion, or relisting when that is gone). It keeps the latest object per key (and the
 * last state of deleted ones, for whoever cleans up after them), and handlers receive only keys:
 * the work happens in a queue.
 */
export class Informer<T extends KubernetesObject> {
  private readonly lw: ListWatch<T>;
  private readonly clock: Clock;
  private readonly backoff: { initialMs: number; maxMs: number };
  private readonly objects = new Map<string, T>();
  private readonly tombstones = new Map<string, T>();
  private readonly handlers: ((key: string, event: InformerEvent) => void)[] = [];
  private stopped = true;
  private delay: number;
  private cancelRestart: () => void = () => {};
  private resolveReady!: () => void;
  private counts = { lists: 0, restarts: 0 };
  /** Resolves after the first complete list. */
  readonly ready: Promise<void>;

  constructor(private readonly opts: InformerOptions<T>) {
    this.clock = opts.clock ?? systemClock;
    this.backoff = opts.restartBackoff ?? { initialMs: 1000, maxMs: 30_000 };
    this.delay = this.backoff.initialMs;
    this.ready = new Promise((r) => (this.resolveReady = r));
    const list = async () => {
      const result = await opts.list();
      this.counts.lists++;
      // ListWatch applies the list right after this resolves; ready waits for that.
      setImmediate(() => this.resolveReady());
      return result;
    };
    this.lw = new ListWatch<T>(
      opts.path,
      new Watch(opts.kc),
      list,
      false,
      opts.labelSelector,
      opts.fieldSelector,
    );
    this.lw.on('add', (o) => this.record('add', o));
    this.lw.on('update', (o) => this.record('update', o));
    this.lw.on('delete', (o) => this.record('delete', o));
    this.lw.on('error', (err) => this.onError(err));
  }

  /** Registers a handler for changes; it gets the key only and should just enqueue it. */
  onChange(handler: (key: string, event: InformerEvent) => void): void {
    this.handlers.push(handler);
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.lw.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelRestart();
    await this.lw.stop();
  }

  /** The latest object for `key`, or undefined when it does not exist (now). */
  get(key: string): T | undefined {
    return this.objects.get(key);
  }

  /** The last state seen of a deleted object, until `forgetDeleted`. */
  lastKnown(key: string): T | undefined {
    return this.objects.get(key) ?? this.tombstones.get(key);
  }

  forgetDeleted(key: string): void {
    this.tombstones.delete(key);
  }

  list(): T[] {
    return [...this.objects.values()];
  }

  /** Lists done (the first, plus relists after 410 or failed restarts) and restarts after errors. */
  stats(): { lists: number; restarts: number } {
    return { ...this.counts };
  }

  private record(event: InformerEvent, obj: T): void {
    const key = objectKey(obj);
    if (event === 'delete') {
      this.objects.delete(key);
      this.tombstones.set(key, obj);
    } else {
      this.objects.set(key, obj);
      this.tombstones.delete(key);
    }
    // Events mean the watch works again: the next failure starts the backoff afresh.
    this.delay = this.backoff.initialMs;
    for (const h of this.handlers) h(key, event);
  }

  private onError(err: unknown): void {
    // ListWatch reports its own abort when stopped.
    if (this.stopped) return;
    const wait = this.delay;
    this.delay = Math.min(this.delay * 2, this.backoff.maxMs);
    this.opts.log.warn(
      { informer: this.opts.name, err: (err as Error)?.message ?? String(err), retryInMs: wait },
      'watch failed; restarting',
    );
    this.cancelRestart();
    this.cancelRestart = this.clock.setTimer(() => {
      if (this.stopped) return;
      this.counts.restarts++;
      void this.lw.start();
    }, wait);
  }
}
