/**
 * A small typed client for the usage reporter's local HTTP API (ubbagent-compatible), used by the
 * provider to post metered usage and to read the reporter's health.
 */

/** A metric value: `int64Value` for `type: int` metrics (a number or a decimal string), `doubleValue` for `type: double`. */
export type MetricValue = { int64Value: number | string } | { doubleValue: number };

/** The body of `POST /report`, exactly as ubbagent takes it. */
export interface MetricReport {
  /** A metric name from the reporter's config. */
  name: string;
  /** RFC 3339 times; startTime must not be after endTime. */
  startTime: string;
  endTime: string;
  value: MetricValue;
  labels?: Record<string, string>;
  /**
   * Optional idempotency key, for passthrough metrics only (an extension of ubbagent's API): it
   * becomes the Service Control operationId, so sending the same report again with the same id,
   * e.g. after a timeout, bills it once. 1-128 characters from `A-Za-z0-9._:-`.
   */
  id?: string;
}

/** One endpoint's queue as `GET /status` shows it. */
export interface EndpointStatus {
  /** Reports waiting to be sent (accepted, on disk). */
  queued: number;
  /** When the oldest queued report was queued, or null. */
  oldestQueued: string | null;
  /** Reports sent successfully since the state dir was created. */
  sent: number;
  /** Reports dropped because they stayed queued longer than the expiry (max queue time). */
  expired: number;
  /** Reports dropped because the endpoint rejected them as invalid (non-retryable). */
  rejected: number;
  /** When the last report expired, or null. */
  lastExpired: string | null;
  /** The last error sending, or null once a send succeeds. */
  lastError: string | null;
  /** A check error (BILLING_DISABLED, SERVICE_NOT_ACTIVATED, PROJECT_DELETED) that stops sending, or null. */
  blocked: string | null;
  /** When the next attempt is due, while retrying or blocked. */
  nextAttempt: string | null;
}

/** `GET /status`: ubbagent's three fields plus what is queued and aggregating. */
export interface ReporterStatus {
  /** Time of the last successful send to any endpoint, or null (none since start). */
  lastReportSuccess: string | null;
  /** Failed sends since the last success. */
  currentFailureCount: number;
  /** Failed sends since start. */
  totalFailureCount: number;
  agentId: string;
  endpoints: Record<string, EndpointStatus>;
  /** Aggregated metrics with an open bucket: how many label sets it holds and when it is flushed. */
  aggregating: Record<string, { labelSets: number; flushAt: string }>;
}

/** A report the reporter refused (HTTP 4xx: fix the report) or could not take (5xx or unreachable: retry). */
export class UsageReporterError extends Error {
  constructor(
    message: string,
    /** The HTTP status, or 0 when the reporter could not be reached. */
    readonly status: number,
  ) {
    super(message);
    this.name = 'UsageReporterError';
  }

  /** True when sending the same report again may succeed (reporter down, busy or failing to persist). */
  get retryable(): boolean {
    return this.status === 0 || this.status >= 500;
  }
}

export interface UsageReporterClientOptions {
  /** e.g. `http://127.0.0.1:6080` */
  baseUrl: string;
  /** Per-request timeout; default 10 s. */
  timeoutMs?: number;
}

export class UsageReporterClient {
  private readonly baseUrl: string;
  private readonly timeoutMs: number;

  constructor(opts: UsageReporterClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /**
   * Posts one report. Resolves once the reporter has it on disk; rejects with UsageReporterError.
   * A report that got through must not be sent again (the reporter sums what it is given),
   * unless it carries an `id`: then resending it, e.g. after a timeout, bills it once.
   */
  async report(report: MetricReport): Promise<void> {
    await this.request('POST', '/report', report);
  }

  async status(): Promise<ReporterStatus> {
    return (await this.request('GET', '/status')) as ReporterStatus;
  }

  private async request(method: string, path: string, body?: unknown): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, {
        method,
        headers: body === undefined ? undefined : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e) {
      throw new UsageReporterError(
        `usage reporter at ${this.baseUrl} unreachable: ${(e as Error).message}`,
        0,
      );
    }
    const text = await res.text();
    if (!res.ok) {
      let message = text;
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? text;
      } catch {
        // not JSON: keep the text
      }
      throw new UsageReporterError(
        `usage reporter ${method} ${path}: HTTP ${res.status}: ${message}`,
        res.status,
      );
    }
    return text ? (JSON.parse(text) as unknown) : undefined;
  }
}
