import express, { type Router } from 'express';
import { currentPod } from './api-pod.ts';
import type { Cell } from './cell.ts';
import type { StatsCollector } from './stats.ts';

/** GET /v1/stats/summary: the kubelet summary's PodStats of this cell's pod. */
export function statsRoutes(cell: Cell, stats: StatsCollector): Router {
  const r = express.Router();
  r.get('/v1/stats/summary', (_req, res) => {
    res.json(stats.podStats(currentPod(cell)));
  });
  return r;
}
