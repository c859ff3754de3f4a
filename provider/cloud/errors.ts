/**
 * Typed cloud errors. Each one carries `action`: what the caller should do next, so the cell
 * manager branches on the type and the user reads the action in the pod's events.
 */
export abstract class CloudError extends Error {
  /** The caller's next step, in words a user can act on. */
  abstract readonly action: string;
}

/**
 * No capacity for any allowed (zone, family, capacity type): every fallback was exhausted.
 * The failed offerings are remembered, so retrying after `retryAfterMs` tries again fresh.
 */
export class InsufficientCapacityError extends CloudError {
  readonly action: string;
  constructor(
    message: string,
    readonly tried: string[] = [],
    readonly retryAfterMs = 180_000,
  ) {
    super(message);
    this.name = 'InsufficientCapacityError';
    this.action = `retry after ${Math.round(retryAfterMs / 1000)}s, or allow more zones, machine families or on-demand capacity`;
  }
}

/** A project quota (regional CPUs, GPUs, disks) is used up; waiting alone will not help. */
export class QuotaExceededError extends CloudError {
  readonly action = 'raise the quota named in the message, or delete cells to free it; then retry';
  constructor(
    message: string,
    readonly quota?: string,
  ) {
    super(message);
    this.name = 'QuotaExceededError';
  }
}

/** The pod can never run as asked (too large, unknown machine type, GPU absent, bad annotation). */
export class InvalidRequestError extends CloudError {
  readonly action = "change the pod's resources or annotations; retrying the same request will fail again";
  constructor(
    message: string,
    /** The pod field or annotation at fault, when there is one. */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}

/** The Compute API refused for rate or is briefly unavailable: retry the same call later. */
export class RateLimitedError extends CloudError {
  readonly action: string;
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
    this.name = 'RateLimitedError';
    this.action = `retry the same call after ${retryAfterMs} ms`;
  }
}

/** The VM (or other resource) does not exist. For delete this means the work is done. */
export class NotFoundError extends CloudError {
  readonly action = 'treat the resource as gone; for a delete, nothing is left to do';
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}
