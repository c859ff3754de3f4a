import type { V1Pod } from '@kubernetes/client-node';
import type { ContainerStatus, PodCondition, PodPhase, PodStatusReply } from '../lib/cell-agent-api.ts';

/** Now, as the kubelet writes status times: RFC 3339 to the second. */
export function statusTime(): string {
  return new Date().toISOString().replace(/\.\d+Z$/, 'Z');
}

export interface PodFacts {
  pod: V1Pod;
  sandboxReady: boolean;
  /** The pod was deleted through the API or the agent is stopping it: it is terminal once all containers stopped. */
  terminating: boolean;
  initStatuses: ContainerStatus[];
  statuses: ContainerStatus[];
  podIP?: string;
  startTime?: string;
}

const done = (s: ContainerStatus) => s.state.terminated !== undefined;
const succeeded = (s: ContainerStatus) => s.state.terminated?.exitCode === 0;

/** The kubelet's pod phase (pkg/kubelet/kubelet_pods.go getPhase), from container statuses. */
export function podPhase(f: PodFacts): PodPhase {
  const policy = f.pod.spec?.restartPolicy ?? 'Always';
  const allStopped = [...f.initStatuses, ...f.statuses].every(done);
  if (f.terminating && allStopped)
    return f.statuses.length > 0 && f.statuses.every(succeeded) ? 'Succeeded' : 'Failed';
  for (const s of f.initStatuses) {
    if (succeeded(s)) continue;
    if (done(s) && policy === 'Never') return 'Failed';
    return 'Pending';
  }
  let running = 0;
  let waiting = 0;
  let stopped = 0;
  let ok = 0;
  for (const s of f.statuses) {
    if (s.state.running) running++;
    else if (s.state.terminated) {
      stopped++;
      if (s.state.terminated.exitCode === 0) ok++;
    } else if (s.lastState.terminated) stopped++;
    else waiting++;
  }
  if (waiting > 0) return 'Pending';
  if (running > 0) return 'Running';
  if (stopped > 0) {
    if (f.terminating) return stopped === ok ? 'Succeeded' : 'Failed';
    if (policy === 'Always') return 'Running';
    if (stopped === ok) return 'Succeeded';
    if (policy === 'OnFailure') return 'Running';
    return 'Failed';
  }
  return 'Pending';
}

/** The pod's QoS class from its containers' requests and limits. */
export function qosClass(pod: V1Pod): PodStatusReply['qosClass'] {
  const cs = [...(pod.spec?.containers ?? []), ...(pod.spec?.initContainers ?? [])];
  let any = false;
  let guaranteed = true;
  for (const c of cs) {
    const req = c.resources?.requests ?? {};
    const lim = c.resources?.limits ?? {};
    for (const r of ['cpu', 'memory']) {
      if (req[r] !== undefined || lim[r] !== undefined) any = true;
      if (lim[r] === undefined || (req[r] !== undefined && String(req[r]) !== String(lim[r])))
        guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

type ConditionValue = Omit<PodCondition, 'lastTransitionTime' | 'lastProbeTime'>;

/** The four kubelet-owned pod conditions with the kubelet's reasons and messages. */
export function podConditions(f: PodFacts, phase: PodPhase): ConditionValue[] {
  const list = (xs: ContainerStatus[]) => `[${xs.map((s) => s.name).join(' ')}]`;
  const terminalReason =
    phase === 'Succeeded' ? 'PodCompleted' : phase === 'Failed' ? 'PodFailed' : undefined;
  const out: ConditionValue[] = [
    {
      type: 'PodReadyToStartContainers',
      status:
        f.sandboxReady && !(f.terminating && phase !== 'Running' && phase !== 'Pending') ? 'True' : 'False',
    },
  ];
  const initPending = f.initStatuses.filter((s) => !succeeded(s));
  if (initPending.length === 0) out.push({ type: 'Initialized', status: 'True' });
  else if (phase === 'Succeeded') out.push({ type: 'Initialized', status: 'False', reason: 'PodCompleted' });
  else
    out.push({
      type: 'Initialized',
      status: 'False',
      reason: 'ContainersNotInitialized',
      message: `containers with incomplete status: ${list(initPending)}`,
    });
  const unready = f.statuses.filter((s) => !s.ready);
  let ready: ConditionValue;
  if (terminalReason) ready = { type: 'ContainersReady', status: 'False', reason: terminalReason };
  else if (unready.length === 0) ready = { type: 'ContainersReady', status: 'True' };
  else
    ready = {
      type: 'ContainersReady',
      status: 'False',
      reason: 'ContainersNotReady',
      message: `containers with unready status: ${list(unready)}`,
    };
  out.push(ready, { ...ready, type: 'Ready' });
  return out;
}
