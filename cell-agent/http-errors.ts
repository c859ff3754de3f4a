import type { NextFunction, Request, Response } from 'express';
import { HttpError, statusBody } from '../lib/cell-agent-api.ts';

/** Express error handler: HttpError and body-parser errors become 4xx Status replies, anything else 500. */
export function errorHandler(log: { error(o: object, m: string): void }) {
  return (err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    if (res.headersSent) return void res.end();
    if (err instanceof HttpError)
      return void res.status(err.code).json(statusBody(err.code, err.reason, err.message, err.field));
    const e = err as { status?: number; type?: string; message?: string };
    if (e.status && e.status >= 400 && e.status < 500) {
      const msg =
        e.type === 'entity.parse.failed'
          ? `body is not valid JSON: ${e.message}`
          : (e.message ?? 'bad request');
      return void res.status(e.status).json(statusBody(e.status, 'BadRequest', msg));
    }
    log.error({ err }, 'request failed');
    res.status(500).json(statusBody(500, 'InternalError', (err as Error)?.message ?? 'internal error'));
  };
}
