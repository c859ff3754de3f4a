/** Exponential backoff with full jitter. */
export interface BackoffOptions {
  /** First delay ceiling in ms (default 250). */
  initialMs?: number;
  /** Largest delay in ms (default 30 s). */
  maxMs?: number;
  /** Attempts in all, the first included (default 8). */
  maxAttempts?: number;
  /** 0..1: the share of each delay that is random (default 1: full jitter). */
  jitter?: number;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/** What to do after a failure: give up, or retry (optionally after at least `afterMs`). */
export type RetryDecision = { retry: false } | { retry: true; afterMs?: number };

const sleepReal = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The delay before retry number `attempt` (1-based). */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const initial = opts.initialMs ?? 250;
  const max = opts.maxMs ?? 30_000;
  const jitter = opts.jitter ?? 1;
  const ceiling = Math.min(max, initial * 2 ** (attempt - 1));
  return Math.round(ceiling * (1 - jitter) + ceiling * jitter * (opts.random ?? Math.random)());
}

/**
 * Runs `fn` until it succeeds, `decide` says not to retry, or the attempts run out; then the
 * last error is thrown. A decision's `afterMs` (a server's retry-after) is the least wait.
 */
export async function withBackoff<T>(
  fn: (attempt: number) => Promise<T>,
  decide: (err: unknown, attempt: number) => RetryDecision,
  opts: BackoffOptions = {},
): Promise<T> {
  const max = opts.maxAttempts ?? 8;
  const sleep = opts.sleep ?? sleepReal;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      const d = decide(e, attempt);
      if (!d.retry || attempt >= max) throw e;
      await sleep(Math.max(d.afterMs ?? 0, backoffDelay(attempt, opts)));
    }
  }
}
