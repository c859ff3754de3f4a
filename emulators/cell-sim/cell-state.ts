/**
 * One simulated cell's pod: the status the real agent would report for it, with versions and
 * long-poll waiters, but no containers. The pod turns Running `startDelayMs` after the PUT and,
 * once deleted, terminal (exit 0 → Succeeded) with `deleted: true`.
 */
import type { V1Pod } from '@kubernetes/client-node';
import type { ContainerStatus, PodCondition, PodStatusReply } from '../../lib/cell-agent-api.ts';

function qosClass(pod: V1Pod): PodStatusReply['qosClass'] {
  const cs = pod.spec?.containers ?? [];
  const has = (k: 'requests' | 'limits') => cs.some((c) => Object.keys(c.resources?.[k] ?? {}).length > 0);
  if (!has('requests') && !has('limits')) return 'BestEffort';
  const guaranteed = cs.every((c) => {
    const l = c.resources?.limits ?? {};
    const r = c.resources?.requests ?? l;
    return l.cpu && l.memory && r.cpu === l.cpu && r.memory === l.memory;
  });
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

export class SimulatedPod {
  status: PodStatusReply;
  private waiters: (() => void)[] = [];
  private timer?: NodeJS.Timeout;

  constructor(
    readonly pod: V1Pod,
    podIP: string,
    startDelayMs: number,
  ) {
    const now = new Date().toISOString();
    this.status = {
      version: 1,
      uid: pod.metadata!.uid!,
      phase: 'Pending',
      conditions: this.conditions('False', now),
      containerStatuses: this.containers({ waiting: { reason: 'ContainerCreating' } }, false),
      initContainerStatuses: [],
      podIP,
      podIPs: [{ ip: podIP }],
      startTime: now,
      qosClass: qosClass(pod),
    };
    this.timer = setTimeout(() => this.run(), startDelayMs);
  }

  private conditions(ready: 'True' | 'False', at: string): PodCondition[] {
    return (['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready'] as const).map(
      (type) => ({
        type,
        status: type === 'PodReadyToStartContainers' || type === 'Initialized' ? 'True' : ready,
        lastProbeTime: null,
        lastTransitionTime: at,
      }),
    );
  }

  private containers(state: ContainerStatus['state'], ready: boolean): ContainerStatus[] {
    return (this.pod.spec?.containers ?? []).map((c) => ({
      name: c.name,
      state,
      lastState: {},
      ready,
      started: !!state.running,
      restartCount: 0,
      image: c.image ?? '',
      imageID: state.running || state.terminated ? `${c.image}@sha256:${'0'.repeat(64)}` : '',
      ...(state.running || state.terminated
        ? { containerID: `sim://${this.pod.metadata!.uid}-${c.name}` }
        : {}),
    }));
  }

  private change(fn: (s: PodStatusReply) => void): void {
    fn(this.status);
    this.status.version++;
    const w = this.waiters;
    this.waiters = [];
    for (const wake of w) wake();
  }

  private run(): void {
    const at = new Date().toISOString();
    this.change((s) => {
      s.phase = 'Running';
      s.conditions = this.conditions('True', at);
      s.containerStatuses = this.containers({ running: { startedAt: at } }, true);
    });
  }

  /** Stops the pod: every container exits 0, the status is final. */
  delete(): void {
    clearTimeout(this.timer);
    if (this.status.deleted) return;
    const at = new Date().toISOString();
    const startedAt = this.status.containerStatuses[0]?.state.running?.startedAt ?? at;
    this.change((s) => {
      s.phase = 'Succeeded';
      s.conditions = this.conditions('False', at);
      s.containerStatuses = this.containers(
        { terminated: { exitCode: 0, reason: 'Completed', startedAt, finishedAt: at } },
        false,
      );
      s.deleted = true;
    });
  }

  /** Resolves once the version exceeds `after`, or after `waitMs`. */
  async waitAfter(after: number, waitMs: number, signal: AbortSignal): Promise<void> {
    if (this.status.version > after || waitMs <= 0) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, waitMs);
      signal.addEventListener('abort', done, { once: true });
      this.waiters.push(done);
    });
  }

  close(): void {
    clearTimeout(this.timer);
    for (const wake of this.waiters) wake();
  }
}
