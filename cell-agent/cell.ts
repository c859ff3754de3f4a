import type { PutPodRequest } from '../lib/cell-agent-api.ts';
import { PodRunner, type PodRunnerDeps } from './pod-runner.ts';

/** Another pod already runs on this cell; the caller must delete it first. */
export class PodConflictError extends Error {}

/**
 * The cell's one pod slot: accepts a pod, ignores a repeat of the same UID, refuses another UID
 * while one is active, and lets a new pod replace one that is terminal.
 */
export class Cell {
  current?: PodRunner;

  constructor(private readonly deps: PodRunnerDeps) {}

  /** Returns true when the pod was already running here (idempotent PUT). */
  async put(req: PutPodRequest): Promise<boolean> {
    const uid = req.pod.metadata!.uid!;
    const cur = this.current;
    if (cur?.uid === uid) return true;
    if (cur && !cur.isTerminal()) {
      throw new PodConflictError(
        `pod ${cur.pod.metadata?.namespace ?? 'default'}/${cur.pod.metadata?.name} (uid ${cur.uid}) is running on this cell; delete it first`,
      );
    }
    // The slot is taken before any await, so a concurrent PUT sees this pod, not an empty cell.
    const runner = new PodRunner(req, this.deps);
    this.current = runner;
    if (cur) await cur.destroy(true);
    runner.start();
    return false;
  }

  /** Stops everything the cell runs (agent shutdown). */
  async shutdown(): Promise<void> {
    await this.current?.destroy(false);
  }
}
