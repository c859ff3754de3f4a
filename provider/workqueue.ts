import type { Logger } from '../lib/log.ts';
import { systemClock, type Clock } from './clock.ts';

/** Decides how long a key waits before its next try. */
export interface RateLimiter<K> {
  /** The delay in ms before `key` may be processed again; counts a failure for per-key limiters. */
  when(key: K): number;
  /** Clears `key`'s failure history (call after it succeeded or was given up). */
  forget(key: K): void;
  /** How many times `key` has been rate-limited since it was last forgotten. */
  numRequeues(key: K): number;
}

/** Per-key exponential backoff: base·2^failures, capped at max. */
export class ExponentialRateLimiter<K> implements RateLimiter<K> {
  private failures = new Map<K, number>();

  constructor(
    private readonly baseMs = 5,
    private readonly maxMs = 1_000_000,
  ) {}

  when(key: K): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    // 2^n overflows to Infinity for large n, which Math.min caps correctly.
    return Math.min(this.baseMs * 2 ** n, this.maxMs);
  }

  forget(key: K): void {
    this.failures.delete(key);
  }

  numRequeues(key: K): number {
    return this.failures.get(key) ?? 0;
  }
}

/**
 * A token bucket shared by all keys: `qps` tokens a second, at most `burst` saved up. Each call
 * reserves a token, so a burst of failures is spread out instead of hammering the APIs.
 */
export class TokenBucketRateLimiter<K> implements RateLimiter<K> {
  private tokens: number;
  private last: number;

  constructor(
    private readonly qps = 10,
    private readonly burst = 100,
    private readonly clock: Clock = systemClock,
  ) {
    this.tokens = burst;
    this.last = clock.now();
  }

  when(_key: K): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.qps) * 1000;
  }

  forget(_key: K): void {}

  numRequeues(_key: K): number {
    return 0;
  }
}

/** The slowest answer of several limiters (client-go's MaxOf). */
export class MaxOfRateLimiter<K> implements RateLimiter<K> {
  private readonly limiters: RateLimiter<K>[];

  constructor(...limiters: RateLimiter<K>[]) {
    this.limiters = limiters;
  }

  when(key: K): number {
    return Math.max(0, ...this.limiters.map((l) => l.when(key)));
  }

  forget(key: K): void {
    for (const l of this.limiters) l.forget(key);
  }

  numRequeues(key: K): number {
    return Math.max(0, ...this.limiters.map((l) => l.numRequeues(key)));
  }
}

/** The default: per-key 5 ms → 1000 s exponential, combined with a 10 qps / burst 100 bucket. */
export function defaultControllerRateLimiter<K>(clock: Clock = systemClock): RateLimiter<K> {
  return new MaxOfRateLimiter<K>(
    new ExponentialRateLimiter<K>(5, 1_000_000),
    new TokenBucketRateLimiter<K>(10, 100, clock),
  );
}

/** Where a queue reports its depth, adds and retries (provider/metrics.ts provides one). */
export interface WorkQueueMetrics {
  depth(queue: string, value: number): void;
  added(queue: string): void;
  retried(queue: string): void;
}

export interface WorkQueueOptions<K> {
  /** Names the queue in logs and metrics, e.g. `syncPodsFromKubernetes`. */
  name: string;
  clock?: Clock;
  rateLimiter?: RateLimiter<K>;
  /** Tries before a failing key is dropped until its next add (default 20, as virtual-kubelet). */
  maxRetries?: number;
  /** Overrides the retry decision; default: fewer than `maxRetries` requeues so far. */
  shouldRetry?: (key: K, err: unknown, requeues: number) => boolean;
  metrics?: WorkQueueMetrics;
  log?: Logger;
}

/**
 * A keyed work queue in client-go's shape. A key is never processed by two workers at once: adding
 * a key that is being processed marks it dirty, and `done` puts it back. Adding a key that already
 * waits does nothing, so a burst of events for one object costs one reconcile.
 */
export class WorkQueue<K = string> {
  readonly name: string;
  private readonly clock: Clock;
  private readonly limiter: RateLimiter<K>;
  private readonly maxRetries: number;
  private readonly shouldRetryFn?: (key: K, err: unknown, requeues: number) => boolean;
  private readonly metrics?: WorkQueueMetrics;
  private readonly log?: Logger;

  private queue: K[] = [];
  private dirty = new Set<K>();
  private processing = new Set<K>();
  /** Keys waiting for a delay: when each falls due and how to cancel its timer. */
  private waiting = new Map<K, { at: number; cancel: () => void }>();
  private getters: ((key: K | undefined) => void)[] = [];
  private shuttingDown = false;
  private counts = { adds: 0, retries: 0 };

  constructor(opts: WorkQueueOptions<K>) {
    this.name = opts.name;
    this.clock = opts.clock ?? systemClock;
    this.limiter = opts.rateLimiter ?? defaultControllerRateLimiter<K>(this.clock);
    this.maxRetries = opts.maxRetries ?? 20;
    this.shouldRetryFn = opts.shouldRetry;
    this.metrics = opts.metrics;
    this.log = opts.log;
  }

  /** Queues `key` unless it already waits; a key being processed is queued again on `done`. */
  add(key: K): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    this.counts.adds++;
    this.metrics?.added(this.name);
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Queues `key` after `ms`. If it already waits for a delay, the earlier time wins. */
  addAfter(key: K, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + ms;
    const existing = this.waiting.get(key);
    if (existing && existing.at <= at) return;
    existing?.cancel();
    const cancel = this.clock.setTimer(() => {
      this.waiting.delete(key);
      this.add(key);
    }, ms);
    this.waiting.set(key, { at, cancel });
  }

  /** Queues `key` after the delay its failure history and the shared bucket allow. */
  addRateLimited(key: K): void {
    this.counts.retries++;
    this.metrics?.retried(this.name);
    this.addAfter(key, this.limiter.when(key));
  }

  /** Clears `key`'s backoff; call once it was processed successfully (or given up). */
  forget(key: K): void {
    this.limiter.forget(key);
  }

  numRequeues(key: K): number {
    return this.limiter.numRequeues(key);
  }

  /** Whether a failed `key` should be retried, given its requeues so far. */
  shouldRetry(key: K, err: unknown): boolean {
    const n = this.numRequeues(key);
    return this.shouldRetryFn ? this.shouldRetryFn(key, err, n) : n < this.maxRetries;
  }

  /**
   * The next key to process, waiting until there is one. Resolves `undefined` once the queue is
   * shut down. The caller must call `done(key)` when finished with it.
   */
  get(): Promise<K | undefined> {
    const key = this.queue.shift();
    if (key !== undefined) return Promise.resolve(this.take(key));
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.getters.push(resolve));
  }

  /** Marks `key` finished; if it was added meanwhile, it goes back in the queue. */
  done(key: K): void {
    this.processing.delete(key);
    if (this.dirty.has(key) && !this.shuttingDown) this.push(key);
    this.reportDepth();
  }

  /** Keys ready to be processed (not counting delayed or in-flight ones). */
  len(): number {
    return this.queue.length;
  }

  /** Keys waiting for a delay to pass. */
  delayed(): number {
    return this.waiting.size;
  }

  /** Totals since the queue was made. */
  stats(): { depth: number; adds: number; retries: number } {
    return { depth: this.queue.length, ...this.counts };
  }

  /** Stops the queue: waiting `get` calls resolve `undefined`, delayed keys are dropped. */
  shutDown(): void {
    this.shuttingDown = true;
    for (const w of this.waiting.values()) w.cancel();
    this.waiting.clear();
    this.queue = [];
    this.dirty.clear();
    for (const g of this.getters.splice(0)) g(undefined);
    this.reportDepth();
  }

  isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /**
   * Runs `workers` loops that take keys and call `handler`. Success forgets the key's backoff; a
   * failure is retried with rate limiting until `shouldRetry` says no, then logged and dropped
   * until the key is added again. Resolves when the queue is shut down and the workers finished.
   */
  async run(workers: number, handler: (key: K) => Promise<void>): Promise<void> {
    const loop = async () => {
      for (;;) {
        const key = await this.get();
        if (key === undefined) return;
        try {
          await handler(key);
          this.forget(key);
        } catch (err) {
          if (this.shouldRetry(key, err)) {
            this.log?.debug({ queue: this.name, key, err }, 'retrying key');
            this.addRateLimited(key);
          } else {
            this.log?.warn(
              { queue: this.name, key, err, requeues: this.numRequeues(key) },
              'giving up on key',
            );
            this.forget(key);
          }
        } finally {
          this.done(key);
        }
      }
    };
    await Promise.all(Array.from({ length: workers }, loop));
  }

  private push(key: K): void {
    const getter = this.getters.shift();
    if (getter) getter(this.take(key));
    else this.queue.push(key);
    this.reportDepth();
  }

  private take(key: K): K {
    this.processing.add(key);
    this.dirty.delete(key);
    this.reportDepth();
    return key;
  }

  private reportDepth(): void {
    this.metrics?.depth(this.name, this.queue.length);
  }
}
