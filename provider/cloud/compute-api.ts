import {
  AcceleratorTypesClient,
  FirewallsClient,
  GlobalOperationsClient,
  ImagesClient,
  InstancesClient,
  MachineTypesClient,
  ZoneOperationsClient,
  type protos,
} from '@google-cloud/compute';
import { PassThroughClient } from 'google-auth-library';
import type { Logger } from '../../lib/log.ts';
import { withBackoff, type BackoffOptions } from './backoff.ts';
import { RateLimitedError } from './errors.ts';
import { classifyApiError } from './gce-errors.ts';
import { RateLimiter } from './rate-limiter.ts';

/** The @google-cloud/compute clients Kip uses; tests and the lab may pass their own. */
export interface GceClients {
  instances: InstancesClient;
  zoneOperations: ZoneOperationsClient;
  globalOperations: GlobalOperationsClient;
  machineTypes: MachineTypesClient;
  acceleratorTypes: AcceleratorTypesClient;
  firewalls: FirewallsClient;
  images: ImagesClient;
}

/** A Compute API endpoint other than Google's: the lab's emulator (plain HTTP, no credentials). */
export interface ComputeEndpoint {
  host: string;
  port: number;
  protocol?: 'http' | 'https';
}

/**
 * Builds the clients. Without an endpoint they use application default credentials (the GKE
 * node's or workload identity's service account); with one they talk to it without credentials.
 */
export function createGceClients(endpoint?: ComputeEndpoint, given: Partial<GceClients> = {}): GceClients {
  const opts = endpoint
    ? {
        apiEndpoint: endpoint.host,
        port: endpoint.port,
        protocol: endpoint.protocol ?? 'http',
        // No credentials in the lab; without an auth client the library would look for ADC and crash.
        authClient: new PassThroughClient(),
      }
    : {};
  return {
    instances: given.instances ?? new InstancesClient(opts),
    zoneOperations: given.zoneOperations ?? new ZoneOperationsClient(opts),
    globalOperations: given.globalOperations ?? new GlobalOperationsClient(opts),
    machineTypes: given.machineTypes ?? new MachineTypesClient(opts),
    acceleratorTypes: given.acceleratorTypes ?? new AcceleratorTypesClient(opts),
    firewalls: given.firewalls ?? new FirewallsClient(opts),
    images: given.images ?? new ImagesClient(opts),
  };
}

/** Quota buckets, as Compute Engine counts them: reads (get, list, operations) and writes. */
export type Bucket = 'read' | 'write';

export interface ComputeApiOptions {
  clients: GceClients;
  readRequestsPerMinute?: number;
  writeRequestsPerMinute?: number;
  /** The quota window; GCE's is 60 s. Shorter only in tests. */
  quotaWindowMs?: number;
  backoff?: BackoffOptions;
  log?: Logger;
  /** Told of every attempt with its HTTP status ('200', '503', ...; 'error' for network failures), for metrics. */
  onCall?: (method: string, code: string) => void;
}

const HTTP_OF_GRPC: Record<number, string> = {
  3: '400',
  4: '504',
  5: '404',
  6: '409',
  7: '403',
  8: '429',
  9: '412',
  10: '409',
  13: '500',
  14: '503',
};

/** The HTTP status a failed call had, as far as the client library's error tells. */
export function httpCodeOf(err: unknown): string {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'number' ? (HTTP_OF_GRPC[code] ?? 'error') : 'error';
}

/** Call options that turn off the library's own retries, so every attempt passes the limiter. */
export const NO_LIBRARY_RETRY = { retry: null } as const;

type Op = protos.google.cloud.compute.v1.IOperation;

/**
 * Every Compute API call goes through here: the client-side limiter for its quota bucket, then
 * the call, then backoff on what is worth retrying (403 rateLimitExceeded and 429 hold the whole
 * bucket until the quota window refills; 503 and network errors back off exponentially).
 * Counts calls by method for metrics and benchmarks.
 */
export class ComputeApi {
  readonly clients: GceClients;
  readonly limiter: RateLimiter;
  private readonly windowMs: number;
  private readonly backoff: BackoffOptions;
  private readonly counts = new Map<string, number>();
  private readonly log: Logger | undefined;
  private readonly onCall: ((method: string, code: string) => void) | undefined;

  constructor(opts: ComputeApiOptions) {
    this.onCall = opts.onCall;
    this.clients = opts.clients;
    this.windowMs = opts.quotaWindowMs ?? 60_000;
    this.limiter = new RateLimiter({
      buckets: {
        read: { limit: opts.readRequestsPerMinute ?? 1500, windowMs: this.windowMs },
        write: { limit: opts.writeRequestsPerMinute ?? 1500, windowMs: this.windowMs },
      },
    });
    this.backoff = { initialMs: 200, maxMs: 20_000, maxAttempts: 10, ...opts.backoff };
    this.log = opts.log;
  }

  /**
   * Runs `fn` under the bucket's quota with retries. Only for calls that are safe to repeat: reads,
   * inserts with a requestId, deletes (a repeat finds nothing to delete).
   */
  async call<T>(bucket: Bucket, method: string, fn: () => Promise<T>): Promise<T> {
    let lastKind: string | undefined;
    try {
      return await withBackoff(
        async () => {
          await this.limiter.acquire(bucket);
          this.counts.set(method, (this.counts.get(method) ?? 0) + 1);
          try {
            const result = await fn();
            this.onCall?.(method, '200');
            return result;
          } catch (e) {
            this.onCall?.(method, httpCodeOf(e));
            throw e;
          }
        },
        (err, attempt) => {
          const f = classifyApiError(err);
          lastKind = f.kind;
          if (f.kind === 'rateLimited') {
            // The server counts in synchronized windows: wait for the next one, with a little jitter.
            const wait = this.windowMs - (Date.now() % this.windowMs) + Math.random() * this.windowMs * 0.05;
            this.limiter.pause(bucket, wait);
            this.log?.warn(
              { method, attempt, waitMs: Math.round(wait) },
              'compute api rate limited; holding bucket',
            );
            return { retry: true, afterMs: wait };
          }
          if (f.kind === 'unavailable') {
            this.log?.debug({ method, attempt, err: f.message }, 'compute api unavailable; backing off');
            return { retry: true };
          }
          return { retry: false };
        },
        this.backoff,
      );
    } catch (e) {
      // Out of retries on a refusal that is not about this request: the caller retries later.
      if (lastKind === 'rateLimited')
        throw new RateLimitedError(`${method}: ${(e as Error).message}`, this.windowMs);
      if (lastKind === 'unavailable') {
        throw new RateLimitedError(
          `${method}: Compute API unavailable: ${(e as Error).message}`,
          this.backoff.maxMs ?? 20_000,
        );
      }
      throw e;
    }
  }

  /**
   * Waits for a zonal operation with zoneOperations.wait (which blocks server-side up to about two
   * minutes), looping until DONE; never short-polls with get.
   */
  async waitZoneOperation(project: string, zone: string, op: Op): Promise<Op> {
    let cur = op;
    while (cur.status !== 'DONE') {
      const name = cur.name;
      if (!name) throw new Error('operation without a name');
      [cur] = await this.call('read', 'zoneOperations.wait', () =>
        this.clients.zoneOperations.wait(
          { project, zone, operation: name },
          { ...NO_LIBRARY_RETRY, timeout: 180_000 },
        ),
      );
    }
    return cur;
  }

  /** Like waitZoneOperation, for global operations (firewalls). */
  async waitGlobalOperation(project: string, op: Op): Promise<Op> {
    let cur = op;
    while (cur.status !== 'DONE') {
      const name = cur.name;
      if (!name) throw new Error('operation without a name');
      [cur] = await this.call('read', 'globalOperations.wait', () =>
        this.clients.globalOperations.wait(
          { project, operation: name },
          { ...NO_LIBRARY_RETRY, timeout: 180_000 },
        ),
      );
    }
    return cur;
  }

  /** Calls made so far by method (every attempt counts, as the quota counts them). */
  callCounts(): Record<string, number> {
    return Object.fromEntries([...this.counts].sort(([a], [b]) => a.localeCompare(b)));
  }

  /** Stops the clients' HTTP agents. */
  async close(): Promise<void> {
    await Promise.all(
      Object.values(this.clients).map((c) =>
        (c as { close(): Promise<void> }).close().catch(() => undefined),
      ),
    );
  }
}
