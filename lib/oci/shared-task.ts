interface Task<T, P> {
  promise: Promise<T>;
  controller: AbortController;
  waiters: number;
  listeners: Set<(p: P) => void>;
  last?: P;
}

/**
 * Runs one task per key however many callers ask for it at once. Each caller has its own
 * AbortSignal and progress callback; the task itself is aborted only when every caller waiting
 * for it has given up, so one impatient caller never fails the others.
 */
export class SharedTasks<T, P = never> {
  private readonly running = new Map<string, Task<T, P>>();

  /** How many tasks are in flight (for tests and metrics). */
  get size(): number {
    return this.running.size;
  }

  run(
    key: string,
    fn: (signal: AbortSignal, progress: (p: P) => void) => Promise<T>,
    opts: { signal?: AbortSignal; onProgress?: (p: P) => void } = {},
  ): Promise<T> {
    opts.signal?.throwIfAborted();
    let task = this.running.get(key);
    if (!task) {
      const controller = new AbortController();
      const listeners = new Set<(p: P) => void>();
      const entry: Task<T, P> = {
        promise: Promise.resolve() as Promise<T>,
        controller,
        waiters: 0,
        listeners,
      };
      entry.promise = (async () => {
        try {
          return await fn(controller.signal, (p) => {
            entry.last = p;
            for (const l of listeners) l(p);
          });
        } finally {
          this.running.delete(key);
        }
      })();
      // The caller-facing promises below carry the outcome; this copy must not be reported unhandled.
      entry.promise.catch(() => undefined);
      this.running.set(key, entry);
      task = entry;
    }
    const t = task;
    t.waiters++;
    const listener = opts.onProgress;
    if (listener) {
      t.listeners.add(listener);
      if (t.last !== undefined) listener(t.last);
    }
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const leave = () => {
        if (done) return false;
        done = true;
        t.waiters--;
        if (listener) t.listeners.delete(listener);
        opts.signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const onAbort = () => {
        if (!leave()) return;
        if (t.waiters === 0) t.controller.abort(opts.signal!.reason);
        reject(opts.signal!.reason);
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      t.promise.then(
        (v) => leave() && resolve(v),
        (e: unknown) => leave() && reject(e),
      );
    });
  }
}

/** Limits how many async jobs run at once. */
export class Semaphore {
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async use<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}
