/**
 * The object store: current objects by resource, namespace and name, one global resourceVersion
 * counter, and a change feed (watch-hub.ts). Stored objects are never mutated after they are
 * stored; a write replaces the one object it changes, so reads need no copies.
 */
import { expired } from './api-errors.ts';
import type { KObject } from './object.ts';
import { WatchHub, type EventType, type StoreEvent } from './watch-hub.ts';

export interface Stored {
  obj: KObject;
  json: string;
}

type Bucket = Map<string, Map<string, Stored>>;

export class Store {
  private rv = 0;
  private readonly data = new Map<string, Bucket>();
  readonly hub: WatchHub;

  constructor(historySize = 20_000) {
    this.hub = new WatchHub(historySize);
  }

  currentRv(): number {
    return this.rv;
  }

  get(key: string, namespace: string, name: string): Stored | undefined {
    return this.data.get(key)?.get(namespace)?.get(name);
  }

  /** Current objects of a resource, optionally of one namespace, in key order (namespace, name). */
  list(key: string, namespace?: string): Stored[] {
    const bucket = this.data.get(key);
    if (!bucket) return [];
    const out: Stored[] = [];
    const namespaces = namespace !== undefined ? [namespace] : [...bucket.keys()].sort();
    for (const ns of namespaces) {
      const m = bucket.get(ns);
      if (!m) continue;
      const names = [...m.keys()].sort();
      for (const n of names) out.push(m.get(n)!);
    }
    return out;
  }

  count(key?: string): number {
    let n = 0;
    for (const [k, bucket] of this.data) {
      if (key !== undefined && k !== key) continue;
      for (const m of bucket.values()) n += m.size;
    }
    return n;
  }

  /**
   * Stores `obj` (ADDED or MODIFIED) with the next resourceVersion. `obj` must be a fresh object
   * the caller no longer changes.
   */
  put(key: string, obj: KObject, type: Exclude<EventType, 'DELETED'>, prev?: KObject): Stored {
    obj.metadata.resourceVersion = String(++this.rv);
    const stored: Stored = { obj, json: JSON.stringify(obj) };
    const ns = obj.metadata.namespace ?? '';
    let bucket = this.data.get(key);
    if (!bucket) this.data.set(key, (bucket = new Map()));
    let m = bucket.get(ns);
    if (!m) bucket.set(ns, (m = new Map()));
    m.set(obj.metadata.name!, stored);
    this.hub.publish({ type, rv: this.rv, key, obj, json: stored.json, prev });
    return stored;
  }

  /** Removes an object; the DELETED event carries its last state with a new resourceVersion. */
  remove(key: string, namespace: string, name: string): Stored | undefined {
    const m = this.data.get(key)?.get(namespace);
    const cur = m?.get(name);
    if (!m || !cur) return undefined;
    m.delete(name);
    if (m.size === 0) this.data.get(key)!.delete(namespace);
    const obj: KObject = {
      ...cur.obj,
      metadata: { ...cur.obj.metadata, resourceVersion: String(++this.rv) },
    };
    const stored: Stored = { obj, json: JSON.stringify(obj) };
    this.hub.publish({ type: 'DELETED', rv: this.rv, key, obj, json: stored.json, prev: cur.obj });
    return stored;
  }

  /** Drops a whole resource (a deleted CRD's objects), announcing each deletion. */
  removeAll(key: string): void {
    for (const s of this.list(key)) this.remove(key, s.obj.metadata.namespace ?? '', s.obj.metadata.name!);
    this.data.delete(key);
  }

  /**
   * The objects of a resource as they were at `rv` (for `continue` tokens): the current state
   * with every later change undone from history. 410 Expired once that history is gone.
   */
  listAt(key: string, rv: number, namespace?: string): Stored[] {
    if (rv >= this.rv) return this.list(key, namespace);
    if (!this.hub.covers(rv)) {
      throw expired(
        'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.',
      );
    }
    const state = new Map<string, Stored>();
    const id = (o: KObject) => `${o.metadata.namespace ?? ''}/${o.metadata.name}`;
    for (const s of this.list(key, namespace)) state.set(id(s.obj), s);
    const later: StoreEvent[] = this.hub.since(rv, key);
    for (let i = later.length - 1; i >= 0; i--) {
      const ev = later[i]!;
      if (namespace !== undefined && (ev.obj.metadata.namespace ?? '') !== namespace) continue;
      if (ev.type === 'ADDED') state.delete(id(ev.obj));
      else if (ev.prev) state.set(id(ev.prev), { obj: ev.prev, json: JSON.stringify(ev.prev) });
    }
    return [...state.values()].sort((a, b) => compareKeys(a.obj, b.obj));
  }
}

/** Namespace, then name: the order lists are served in and `continue` tokens resume from. */
export function compareKeys(a: KObject, b: KObject): number {
  const an = a.metadata.namespace ?? '';
  const bn = b.metadata.namespace ?? '';
  if (an !== bn) return an < bn ? -1 : 1;
  const a2 = a.metadata.name ?? '';
  const b2 = b.metadata.name ?? '';
  return a2 < b2 ? -1 : a2 > b2 ? 1 : 0;
}
