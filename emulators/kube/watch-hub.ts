/**
 * The event feed behind every watch: a bounded history of store changes (older resourceVersions
 * get 410 Expired) and the live subscribers, indexed by resource so a write only visits the
 * watchers of its own resource. Each event's object is serialised once, when it is stored.
 */
import type { KObject } from './object.ts';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  type: EventType;
  /** The global resourceVersion this change produced. */
  rv: number;
  /** Storage key (`group/plural`). */
  key: string;
  obj: KObject;
  /** `obj` as JSON, computed once and shared by every watcher and list. */
  json: string;
  /** The object before the change (MODIFIED and DELETED). */
  prev?: KObject;
  /** Plain watch lines for this event by served group/version, built by the first watcher of each. */
  lines?: Map<string, string>;
}

export type Subscriber = (ev: StoreEvent) => void;

export class WatchHub {
  private readonly ring: (StoreEvent | undefined)[];
  private start = 0;
  private size = 0;
  /** Highest resourceVersion dropped from history; watching from below it is 410 Expired. */
  private evictedRv = 0;
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  private readonly everything = new Set<Subscriber>();

  constructor(readonly capacity: number) {
    this.ring = new Array<StoreEvent | undefined>(capacity);
  }

  publish(ev: StoreEvent): void {
    if (this.size === this.capacity) {
      this.evictedRv = this.ring[this.start]!.rv;
      this.ring[this.start] = ev;
      this.start = (this.start + 1) % this.capacity;
    } else {
      this.ring[(this.start + this.size) % this.capacity] = ev;
      this.size++;
    }
    const subs = this.subscribers.get(ev.key);
    if (subs) for (const s of subs) s(ev);
    for (const s of this.everything) s(ev);
  }

  /** Subscribes to one storage key, or to every change with `*`. Returns the unsubscribe. */
  subscribe(key: string, fn: Subscriber): () => void {
    if (key === '*') {
      this.everything.add(fn);
      return () => this.everything.delete(fn);
    }
    let set = this.subscribers.get(key);
    if (!set) this.subscribers.set(key, (set = new Set()));
    set.add(fn);
    return () => {
      set.delete(fn);
      if (set.size === 0 && this.subscribers.get(key) === set) this.subscribers.delete(key);
    };
  }

  /** True when every change after `rv` is still in history. */
  covers(rv: number): boolean {
    return rv >= this.evictedRv;
  }

  oldestRetained(): number {
    return this.evictedRv + 1;
  }

  /** Events with resourceVersion > `rv` for `key` (or all keys), oldest first. */
  since(rv: number, key?: string): StoreEvent[] {
    // Binary search: history is ordered by resourceVersion.
    let lo = 0;
    let hi = this.size;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.at(mid).rv <= rv) lo = mid + 1;
      else hi = mid;
    }
    const out: StoreEvent[] = [];
    for (let i = lo; i < this.size; i++) {
      const ev = this.at(i);
      if (key === undefined || ev.key === key) out.push(ev);
    }
    return out;
  }

  private at(i: number): StoreEvent {
    return this.ring[(this.start + i) % this.capacity]!;
  }
}
