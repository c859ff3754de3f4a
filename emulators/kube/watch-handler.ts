/**
 * `?watch=true`: a chunked stream of `{"type":...,"object":...}` lines. Replays history from the
 * requested resourceVersion (410 Expired once it is gone), turns selector transitions into
 * ADDED/DELETED as the real server does, sends BOOKMARKs when asked, ends at timeoutSeconds.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { badRequest, expired } from './api-errors.ts';
import type { KObject } from './object.ts';
import { groupVersion, storageKey, type ResourceDef } from './resources.ts';
import type { Matcher } from './selectors.ts';
import type { Store } from './store.ts';
import type { EventType, StoreEvent } from './watch-hub.ts';

export interface WatchOptions {
  namespace?: string;
  /** Watch of one named object (`/pods/x?watch=true`). */
  name?: string;
  labels: Matcher;
  fields: Matcher;
  resourceVersion: string | null;
  timeoutSeconds?: number;
  allowBookmarks: boolean;
  sendInitialEvents: boolean;
  /** Renders an object as the client asked (Table rows for `kubectl get -w`); undefined: plain. */
  render?: (obj: KObject, first: boolean) => string;
  /** Rewrites an object's JSON for the version being served (multi-version CRDs). */
  serve: (obj: KObject, json: string) => string;
}

export interface WatchSettings {
  bookmarkIntervalMs: number;
  /** Watches without timeoutSeconds end after this long times a random factor in [1, 2). */
  minRequestTimeoutMs: number;
  /** A watcher this far behind (bytes buffered) is cut off rather than buffered without bound. */
  maxBufferedBytes: number;
}

let activeWatches = 0;

export function activeWatchCount(): number {
  return activeWatches;
}

export function serveWatch(
  store: Store,
  def: ResourceDef,
  opts: WatchOptions,
  settings: WatchSettings,
  req: IncomingMessage,
  res: ServerResponse,
  onEvent?: () => void,
): void {
  const key = storageKey(def);
  let startRv: number | undefined;
  if (
    opts.resourceVersion !== null &&
    opts.resourceVersion !== '' &&
    opts.resourceVersion !== '0' &&
    !opts.sendInitialEvents
  ) {
    if (!/^\d+$/.test(opts.resourceVersion))
      throw badRequest(`invalid resource version "${opts.resourceVersion}"`);
    startRv = Number(opts.resourceVersion);
  }
  const inScope = (o: KObject) =>
    (opts.namespace === undefined || o.metadata.namespace === opts.namespace) &&
    (opts.name === undefined || o.metadata.name === opts.name) &&
    opts.labels(o) &&
    opts.fields(o);

  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private' });
  res.flushHeaders();
  activeWatches++;

  let first = true;
  let pending = '';
  let scheduled = false;
  let closed = false;
  const flush = () => {
    scheduled = false;
    if (closed || pending === '') return;
    const chunk = pending;
    pending = '';
    res.write(chunk);
    if (res.writableLength > settings.maxBufferedBytes) close();
  };
  const emit = (line: string) => {
    pending += line;
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  const line = (type: EventType | 'BOOKMARK', obj: KObject, json?: string): string => {
    if (opts.render) {
      const out = `{"type":"${type}","object":${opts.render(obj, first)}}\n`;
      first = false;
      return out;
    }
    return `{"type":"${type}","object":${opts.serve(obj, json ?? JSON.stringify(obj))}}\n`;
  };
  const deliver = (ev: StoreEvent) => {
    const now = inScope(ev.obj);
    const before = ev.prev !== undefined && inScope(ev.prev);
    let type: EventType;
    if (ev.type === 'ADDED') {
      if (!now) return;
      type = 'ADDED';
    } else if (ev.type === 'DELETED') {
      if (!now && !before) return;
      type = 'DELETED';
    } else if (now && before) type = 'MODIFIED';
    else if (now) type = 'ADDED';
    else if (before) type = 'DELETED';
    else return;
    onEvent?.();
    if (type === ev.type && !opts.render) {
      // The common case: every watcher shares one serialisation of the event.
      const gv = groupVersion(def);
      ev.lines ??= new Map();
      let shared = ev.lines.get(gv);
      if (shared === undefined)
        ev.lines.set(gv, (shared = `{"type":"${type}","object":${opts.serve(ev.obj, ev.json)}}\n`));
      emit(shared);
    } else emit(line(type, ev.obj, ev.json));
  };
  const bookmark = (annotations?: Record<string, string>) => {
    const obj: KObject = {
      kind: def.kind,
      apiVersion: groupVersion(def),
      metadata: { resourceVersion: String(store.currentRv()), ...(annotations ? { annotations } : {}) },
    };
    emit(`{"type":"BOOKMARK","object":${JSON.stringify(obj)}}\n`);
  };

  if (startRv !== undefined && !store.hub.covers(startRv)) {
    const err = expired(`too old resource version: ${startRv} (${store.hub.oldestRetained()})`);
    res.end(`{"type":"ERROR","object":${JSON.stringify(err.toStatus())}}\n`);
    activeWatches--;
    return;
  }
  // Replay and subscribe in one synchronous step: no write can slip in between.
  if (startRv === undefined) {
    for (const s of store.list(key, opts.namespace)) {
      if (inScope(s.obj)) emit(line('ADDED', s.obj, s.json));
    }
    if (opts.sendInitialEvents && opts.allowBookmarks) bookmark({ 'k8s.io/initial-events-end': 'true' });
  } else {
    for (const ev of store.hub.since(startRv, key)) deliver(ev);
  }
  const unsubscribe = store.hub.subscribe(key, deliver);
  const timers: NodeJS.Timeout[] = [];
  if (opts.allowBookmarks) timers.push(setInterval(() => bookmark(), settings.bookmarkIntervalMs));
  const timeoutMs =
    opts.timeoutSeconds !== undefined
      ? opts.timeoutSeconds * 1000
      : settings.minRequestTimeoutMs * (1 + Math.random());
  timers.push(setTimeout(() => close(), timeoutMs));

  function close(): void {
    if (closed) return;
    closed = true;
    if (pending !== '') res.write(pending);
    pending = '';
    activeWatches--;
    unsubscribe();
    for (const t of timers) clearTimeout(t);
    res.end();
  }
  req.on('close', close);
  res.on('close', close);
}

export function watchTimeout(value: string | null): number | undefined {
  if (value === null || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw badRequest(`invalid timeoutSeconds: ${value}`);
  return n;
}
