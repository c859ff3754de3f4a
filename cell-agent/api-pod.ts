import express, { type Request, type Router } from 'express';
import type { PutPodReply } from '../lib/cell-agent-api.ts';
import { PodConflictError, type Cell } from './cell.ts';
import { HttpError } from '../lib/cell-agent-api.ts';
import type { PodRunner } from './pod-runner.ts';
import { PodValidationError, validatePutPod } from './pod-validation.ts';

/** The current pod, or a 404 naming what the caller should do. */
export function currentPod(cell: Cell): PodRunner {
  if (!cell.current) throw new HttpError(404, 'NotFound', 'no pod on this cell; PUT /v1/pod first');
  return cell.current;
}

/** Reads an optional non-negative number from the query; 400 naming the parameter otherwise. */
export function queryNumber(
  req: Request,
  name: string,
  opts: { integer?: boolean; min?: number } = {},
): number | undefined {
  const raw = req.query[name];
  if (raw === undefined) return undefined;
  const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
  if (!Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || n < (opts.min ?? 0))
    throw new HttpError(
      400,
      'BadRequest',
      `query parameter "${name}" must be a ${opts.integer ? 'whole ' : ''}number >= ${opts.min ?? 0}`,
      name,
    );
  return n;
}

export function queryBool(req: Request, name: string): boolean {
  const raw = req.query[name];
  if (raw === undefined) return false;
  if (raw === '' || raw === '1' || raw === 'true') return true;
  if (raw === '0' || raw === 'false') return false;
  throw new HttpError(400, 'BadRequest', `query parameter "${name}" must be true/false or 1/0`, name);
}

/** PUT /v1/pod, GET /v1/pod/status (long-poll), DELETE /v1/pod. */
export function podRoutes(cell: Cell, maxWaitSeconds: number): Router {
  const r = express.Router();
  r.put('/v1/pod', express.json({ limit: '32mb' }), async (req, res) => {
    let body;
    try {
      body = validatePutPod(req.body);
    } catch (e) {
      if (e instanceof PodValidationError) throw new HttpError(422, 'Invalid', e.message, e.field);
      throw e;
    }
    try {
      const unchanged = await cell.put(body);
      const reply: PutPodReply = { uid: body.pod.metadata!.uid!, unchanged };
      res.status(202).json(reply);
    } catch (e) {
      if (e instanceof PodConflictError) throw new HttpError(409, 'Conflict', e.message);
      throw e;
    }
  });
  r.get('/v1/pod/status', async (req, res) => {
    const after = queryNumber(req, 'after', { integer: true }) ?? -1;
    const wait = Math.min(queryNumber(req, 'wait') ?? 0, maxWaitSeconds);
    const pod = currentPod(cell);
    const ac = new AbortController();
    res.on('close', () => ac.abort());
    res.json(await pod.waitForStatus(after, wait * 1000, ac.signal));
  });
  r.delete('/v1/pod', async (req, res) => {
    const grace = queryNumber(req, 'gracePeriodSeconds', { integer: true });
    const pod = currentPod(cell);
    void pod.delete(grace);
    res.status(202).json(pod.status());
  });
  return r;
}
