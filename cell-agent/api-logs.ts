import express, { type Router } from 'express';
import type { LogOptions } from '../lib/cell-agent-api.ts';
import { currentPod, queryBool, queryNumber } from './api-pod.ts';
import type { Cell } from './cell.ts';
import { HttpError } from '../lib/cell-agent-api.ts';
import { streamLog } from './logs.ts';

/** GET /v1/pod/containers/<name>/logs with the kubelet's containerLogs parameters. */
export function logRoutes(cell: Cell): Router {
  const r = express.Router();
  r.get('/v1/pod/containers/:name/logs', async (req, res) => {
    const pod = currentPod(cell);
    const c = pod.containers().find((x) => x.name === req.params.name);
    if (!c)
      throw new HttpError(
        404,
        'NotFound',
        `container "${req.params.name}" is not in pod ${pod.pod.metadata?.name}`,
      );
    const opts: LogOptions = {
      follow: queryBool(req, 'follow'),
      previous: queryBool(req, 'previous'),
      timestamps: queryBool(req, 'timestamps'),
      tailLines: queryNumber(req, 'tailLines', { integer: true }),
      sinceSeconds: queryNumber(req, 'sinceSeconds', { integer: true, min: 1 }),
      limitBytes: queryNumber(req, 'limitBytes', { integer: true, min: 1 }),
    };
    if (typeof req.query.sinceTime === 'string') {
      if (Number.isNaN(Date.parse(req.query.sinceTime)))
        throw new HttpError(
          400,
          'BadRequest',
          'query parameter "sinceTime" must be an RFC 3339 time',
          'sinceTime',
        );
      if (opts.sinceSeconds !== undefined)
        throw new HttpError(
          400,
          'BadRequest',
          'at most one of sinceTime and sinceSeconds may be set',
          'sinceTime',
        );
      opts.sinceTime = req.query.sinceTime;
    }
    const inst = opts.previous ? c.previous : c.latest;
    if (!inst) {
      const what = opts.previous ? 'previous terminated container' : 'container';
      throw new HttpError(
        400,
        'BadRequest',
        `${what} "${c.name}" in pod "${pod.pod.metadata?.name}" not found${opts.previous ? '' : ' (it has not started yet)'}`,
      );
    }
    res.status(200).setHeader('Content-Type', 'text/plain; charset=utf-8');
    res.flushHeaders();
    const ac = new AbortController();
    res.on('close', () => ac.abort());
    await streamLog(
      inst.logPath,
      { ...opts, follow: opts.follow && !opts.previous },
      res,
      () => inst.done,
      ac.signal,
    );
    res.end();
  });
  return r;
}
