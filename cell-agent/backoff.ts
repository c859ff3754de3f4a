/** Backoff settings in seconds (the kubelet's: 10 s doubling to 300 s, reset after 600 s running). */
export interface BackoffPolicy {
  initialSeconds: number;
  maxSeconds: number;
  resetSeconds?: number;
}

/**
 * The kubelet's crash-loop backoff for one container: each restart waits twice as long as the
 * previous one, up to the cap; an instance that ran longer than `resetSeconds` starts over.
 */
export class Backoff {
  private failures = 0;

  constructor(private readonly policy: BackoffPolicy) {}

  /** Delay in ms before the next start, given how long the last instance ran. */
  next(ranMs: number): number {
    if (this.policy.resetSeconds !== undefined && ranMs >= this.policy.resetSeconds * 1000) this.failures = 0;
    const delay = Math.min(this.policy.initialSeconds * 2 ** this.failures, this.policy.maxSeconds);
    this.failures++;
    return Math.round(delay * 1000);
  }

  reset(): void {
    this.failures = 0;
  }
}
