import { randomBytes } from 'node:crypto';
import type { Logger } from '../../lib/log.ts';
import { OperationFailure } from './errors.ts';
import { globalPath, link, newId, regionPath, timestamp, zonePath } from './links.ts';

export type OperationScope =
  { kind: 'zone'; zone: string } | { kind: 'region'; region: string } | { kind: 'global' };

/** The Operation resource as the API returns it. */
export interface OperationResource {
  kind: 'compute#operation';
  id: string;
  name: string;
  operationType: string;
  targetLink: string;
  targetId: string;
  status: 'PENDING' | 'RUNNING' | 'DONE';
  progress: number;
  insertTime: string;
  startTime?: string;
  endTime?: string;
  selfLink: string;
  user: string;
  zone?: string;
  region?: string;
  error?: { errors: { code: string; message: string; errorDetails?: unknown[] }[] };
  httpErrorStatusCode?: number;
  httpErrorMessage?: string;
}

interface Op {
  res: OperationResource;
  done: Promise<void>;
  finishedAt?: number;
}

const HTTP_TEXT: Record<number, string> = {
  400: 'BAD REQUEST',
  403: 'FORBIDDEN',
  404: 'NOT FOUND',
  409: 'CONFLICT',
  412: 'PRECONDITION FAILED',
  500: 'INTERNAL SERVER ERROR',
  503: 'SERVICE UNAVAILABLE',
};

const scopeKey = (s: OperationScope) =>
  s.kind === 'zone' ? `zones/${s.zone}` : s.kind === 'region' ? `regions/${s.region}` : 'global';

/**
 * Long-running operations: each one is PENDING for `pendingMs`, RUNNING while its work runs, then
 * DONE, with a failure of the work recorded in `operation.error` the way GCE reports it.
 */
export class OperationEngine {
  private readonly ops = new Map<string, Op>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private started = 0;

  constructor(
    private readonly project: string,
    private readonly pendingMs: () => number,
    private readonly log: Logger,
  ) {}

  /** A timer the engine cancels on close, so shutdown never waits for a simulated delay. */
  sleep(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /** Starts an operation; `work` runs once it leaves PENDING. Returns the live resource. */
  start(
    scope: OperationScope,
    operationType: string,
    target: { link: string; id: string },
    work: () => Promise<void>,
  ): OperationResource {
    const name = `operation-${Date.now()}-${randomBytes(7).toString('hex').slice(0, 13)}-${randomBytes(4).toString('hex')}-${randomBytes(4).toString('hex')}`;
    const base =
      scope.kind === 'zone'
        ? zonePath(this.project, scope.zone)
        : scope.kind === 'region'
          ? regionPath(this.project, scope.region)
          : globalPath(this.project);
    const res: OperationResource = {
      kind: 'compute#operation',
      id: newId(),
      name,
      operationType,
      targetLink: target.link,
      targetId: target.id,
      status: 'PENDING',
      progress: 0,
      insertTime: timestamp(),
      selfLink: link(`${base}/operations/${name}`),
      user: 'kip-lab@emulator',
    };
    if (scope.kind === 'zone') res.zone = link(zonePath(this.project, scope.zone));
    if (scope.kind === 'region') res.region = link(regionPath(this.project, scope.region));
    const op: Op = { res, done: Promise.resolve() };
    op.done = (async () => {
      await this.sleep(this.pendingMs());
      res.status = 'RUNNING';
      res.startTime = timestamp();
      try {
        await work();
      } catch (e) {
        const f =
          e instanceof OperationFailure
            ? e
            : new OperationFailure('INTERNAL_ERROR', `Internal error: ${(e as Error).message}`, 500);
        if (!(e instanceof OperationFailure))
          this.log.error({ err: e, operation: name }, 'operation work failed');
        res.error = {
          errors: [
            { code: f.code, message: f.message, ...(f.errorDetails ? { errorDetails: f.errorDetails } : {}) },
          ],
        };
        res.httpErrorStatusCode = f.httpStatus;
        res.httpErrorMessage = HTTP_TEXT[f.httpStatus] ?? 'ERROR';
      }
      res.status = 'DONE';
      res.progress = 100;
      res.endTime = timestamp();
      op.finishedAt = Date.now();
    })();
    this.ops.set(`${scopeKey(scope)}/${name}`, op);
    if (++this.started % 1000 === 0) this.prune();
    return res;
  }

  get(scope: OperationScope, name: string): OperationResource | undefined {
    return this.ops.get(`${scopeKey(scope)}/${name}`)?.res;
  }

  /** Resolves when the operation is DONE or after `maxMs`, whichever comes first (GCE's wait). */
  async wait(scope: OperationScope, name: string, maxMs: number): Promise<OperationResource | undefined> {
    const op = this.ops.get(`${scopeKey(scope)}/${name}`);
    if (!op) return undefined;
    if (op.res.status !== 'DONE' && !this.closed) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        op.done,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, maxMs);
          this.timers.add(timer);
        }),
      ]);
      if (timer) {
        clearTimeout(timer);
        this.timers.delete(timer);
      }
    }
    return op.res;
  }

  /** Operations not DONE yet. */
  pending(): number {
    let n = 0;
    for (const op of this.ops.values()) if (op.res.status !== 'DONE') n++;
    return n;
  }

  /** Finished operations are kept an hour, as GCE keeps them at least that long. */
  private prune(): void {
    const cutoff = Date.now() - 3600_000;
    for (const [k, op] of this.ops)
      if (op.finishedAt !== undefined && op.finishedAt < cutoff) this.ops.delete(k);
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}
