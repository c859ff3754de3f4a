import type { Express, Request, Response } from 'express';
import type { Logger } from '../../lib/log.ts';
import type { CallStats } from './call-stats.ts';
import { backendError, GceError, invalidField, notFound } from './errors.ts';
import type { OperationResource } from './operations.ts';
import type { CallKind, RequestGate } from './request-gate.ts';
import type { EmulatorContext } from './state.ts';

export type ApiHandler = (req: Request) => Promise<unknown> | unknown;

interface RouteOptions {
  /** Reads by default for GET, writes otherwise; operations.wait is a read that uses POST. */
  kind?: CallKind;
  /** Public catalog collections (images) are readable in any project. */
  anyProject?: boolean;
}

/**
 * Registers Compute API routes under `/compute/v1` so that every call passes the same front door:
 * the project check, request quotas, fault injection, call counting and GCE's error shape.
 */
export class ApiRouter {
  constructor(
    private readonly app: Express,
    private readonly ctx: EmulatorContext,
    private readonly gate: RequestGate,
    private readonly stats: CallStats,
    private readonly log: Logger,
  ) {}

  get(path: string, method: string, handler: ApiHandler, opts: RouteOptions = {}): void {
    this.add('get', path, method, handler, { kind: 'read', ...opts });
  }
  post(path: string, method: string, handler: ApiHandler, opts: RouteOptions = {}): void {
    this.add('post', path, method, handler, { kind: 'write', ...opts });
  }
  patch(path: string, method: string, handler: ApiHandler, opts: RouteOptions = {}): void {
    this.add('patch', path, method, handler, { kind: 'write', ...opts });
  }
  delete(path: string, method: string, handler: ApiHandler, opts: RouteOptions = {}): void {
    this.add('delete', path, method, handler, { kind: 'write', ...opts });
  }

  private add(
    verb: 'get' | 'post' | 'patch' | 'delete',
    path: string,
    method: string,
    handler: ApiHandler,
    opts: RouteOptions,
  ) {
    const kind = opts.kind!;
    this.app[verb](`/compute/v1${path}`, async (req: Request, res: Response) => {
      let code = 200;
      try {
        const project = req.params.project as string | undefined;
        if (project !== undefined && project !== this.ctx.project && !opts.anyProject)
          throw notFound(`projects/${project}`);
        this.gate.admit(method, kind);
        const body = await handler(req);
        if (this.gate.loseResponse(method, kind)) throw backendError();
        res.status(200).json(body);
      } catch (e) {
        code = this.sendError(res, e, method);
      } finally {
        this.stats.record(method, code);
      }
    });
  }

  /** Writes a GceError (or a 500 for a bug) in GCE's shape; returns the status sent. */
  sendError(res: Response, e: unknown, method: string): number {
    if (e instanceof GceError) {
      if (e.reason === 'rateLimitExceeded')
        res.setHeader('Retry-After', String(this.gate.retryAfterSeconds()));
      res.status(e.httpStatus).json(e.body());
      return e.httpStatus;
    }
    this.log.error({ err: e, method }, 'handler failed');
    res
      .status(500)
      .json(new GceError(500, 'internalError', `Internal error: ${(e as Error).message}`).body());
    return 500;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * GCE's requestId: a retried mutating call with the same UUID gets the first call's operation
 * back instead of acting twice.
 */
export function idempotent(
  ctx: EmulatorContext,
  req: Request,
  start: () => OperationResource,
): OperationResource {
  const requestId = req.query.requestId as string | undefined;
  if (requestId === undefined || requestId === '') return start();
  if (!UUID.test(requestId) || /^[0-]+$/.test(requestId)) {
    throw invalidField(
      'requestId',
      requestId,
      'The request id must be a valid UUID with the exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000).',
    );
  }
  const earlier = ctx.requestIds.get(requestId.toLowerCase());
  if (earlier) return earlier;
  const op = start();
  ctx.requestIds.set(requestId.toLowerCase(), op);
  // GCE remembers a requestId for at least an hour; older ones are dropped so memory stays bounded.
  if (ctx.requestIds.size % 1000 === 0) {
    const cutoff = Date.now() - 3600_000;
    for (const [id, o] of ctx.requestIds) if (Date.parse(o.insertTime) < cutoff) ctx.requestIds.delete(id);
  }
  return op;
}
