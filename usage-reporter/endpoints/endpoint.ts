import type { StampedReport } from '../report.ts';

/** Where reports go (Service Control, a directory). `send` is called again with the same report on retry. */
export interface Endpoint {
  readonly name: string;
  /** Resolves once the report is delivered; throws TransientError, PermanentError or BlockedError. */
  send(report: StampedReport): Promise<void>;
  close?(): Promise<void>;
}

/** Worth retrying with backoff: 5xx, timeouts, connection errors. */
export class TransientError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransientError';
  }
}

/** Will never succeed (the report is invalid for the endpoint): dropped and counted. */
export class PermanentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermanentError';
  }
}

/**
 * The consumer may not be billed now (BILLING_DISABLED, SERVICE_NOT_ACTIVATED, PROJECT_DELETED):
 * sending stops, the queue is kept, and the check is asked again after `retryAfterMs`.
 */
export class BlockedError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
    this.name = 'BlockedError';
  }
}
