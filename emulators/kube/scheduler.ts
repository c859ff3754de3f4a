/**
 * The optional scheduler (`--scheduler`): binds each pending pod of the default scheduler to a
 * Ready node whose labels match its nodeSelector (and required node affinity) and whose
 * NoSchedule/NoExecute taints it tolerates, preferring the node with the fewest pods. No
 * resource fitting. A pod with no such node gets PodScheduled=False, reason Unschedulable.
 */
import { conflict } from './api-errors.ts';
import type { Logger } from '../../lib/log.ts';
import { getPath, nowIso, type KObject } from './object.ts';
import { labelSelectorObjectMatches } from './selectors.ts';
import type { Store } from './store.ts';

const POD_KEY = '/pods';
const NODE_KEY = '/nodes';

interface Taint {
  key: string;
  value?: string;
  effect: string;
}
interface Toleration {
  key?: string;
  operator?: string;
  value?: string;
  effect?: string;
}
interface NodeSelectorTerm {
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
  matchFields?: { key: string; operator: string; values?: string[] }[];
}

export function tolerates(tolerations: Toleration[], taint: Taint): boolean {
  return tolerations.some(
    (t) =>
      (t.effect === undefined || t.effect === '' || t.effect === taint.effect) &&
      ((t.operator === 'Exists' && (t.key === undefined || t.key === '' || t.key === taint.key)) ||
        ((t.operator === undefined || t.operator === 'Equal') &&
          t.key === taint.key &&
          (t.value ?? '') === (taint.value ?? ''))),
  );
}

function termMatches(term: NodeSelectorTerm, node: KObject): boolean {
  const labels = node.metadata.labels ?? {};
  if (
    term.matchExpressions &&
    !labelSelectorObjectMatches({ matchExpressions: term.matchExpressions }, labels)
  )
    return false;
  for (const f of term.matchFields ?? []) {
    const has = f.key === 'metadata.name' ? node.metadata.name! : '';
    if (f.operator === 'In' && !(f.values ?? []).includes(has)) return false;
    if (f.operator === 'NotIn' && (f.values ?? []).includes(has)) return false;
  }
  return true;
}

/** Why `node` cannot take `pod`, or undefined when it can. */
function unfit(pod: KObject, node: KObject): string | undefined {
  const conds = (getPath(node, 'status.conditions') ?? []) as { type?: string; status?: string }[];
  if (!conds.some((c) => c.type === 'Ready' && c.status === 'True')) return 'node(s) were not ready';
  const tolerations = (getPath(pod, 'spec.tolerations') ?? []) as Toleration[];
  if (
    getPath(node, 'spec.unschedulable') === true &&
    !tolerates(tolerations, { key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' })
  ) {
    return 'node(s) were unschedulable';
  }
  const selector = (getPath(pod, 'spec.nodeSelector') ?? {}) as Record<string, string>;
  const labels = node.metadata.labels ?? {};
  const terms = getPath(
    pod,
    'spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms',
  ) as NodeSelectorTerm[] | undefined;
  if (
    Object.entries(selector).some(([k, v]) => labels[k] !== v) ||
    (terms?.length && !terms.some((t) => termMatches(t, node)))
  ) {
    return "node(s) didn't match Pod's node affinity/selector";
  }
  for (const taint of (getPath(node, 'spec.taints') ?? []) as Taint[]) {
    if ((taint.effect === 'NoSchedule' || taint.effect === 'NoExecute') && !tolerates(tolerations, taint)) {
      return `node(s) had untolerated taint {${taint.key}: ${taint.value ?? ''}}`;
    }
  }
  return undefined;
}

function withCondition(pod: KObject, cond: Record<string, string>): Record<string, unknown> {
  const status = { ...((pod.status as Record<string, unknown>) ?? {}) };
  const all = (status.conditions ?? []) as Record<string, unknown>[];
  const conds = all.filter((c) => c.type !== 'PodScheduled');
  const prev = all.find((c) => c.type === 'PodScheduled');
  const same =
    prev && prev.status === cond.status && prev.reason === cond.reason && prev.message === cond.message;
  conds.push(
    same ? prev : { type: 'PodScheduled', ...cond, lastProbeTime: null, lastTransitionTime: nowIso() },
  );
  status.conditions = conds;
  return status;
}

/** The `pods/binding` operation: sets spec.nodeName once and records PodScheduled=True. */
export function bindPod(store: Store, pod: KObject, nodeName: string): KObject {
  const name = pod.metadata.name!;
  if (getPath(pod, 'spec.nodeName')) {
    throw conflict(
      'pods/binding',
      '',
      name,
      `pod ${name} is already assigned to node "${String(getPath(pod, 'spec.nodeName'))}"`,
    );
  }
  if (pod.metadata.deletionTimestamp) {
    throw conflict('pods/binding', '', name, `pod ${name} is being deleted, cannot be assigned to a host`);
  }
  const next: KObject = {
    ...pod,
    metadata: { ...pod.metadata },
    spec: { ...((pod.spec as object) ?? {}), nodeName },
    status: withCondition(pod, { status: 'True' }),
  };
  return store.put(POD_KEY, next, 'MODIFIED', pod).obj;
}

export class Scheduler {
  private readonly queue = new Set<string>();
  private scheduled = false;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  start(): () => void {
    const unsubPods = this.store.hub.subscribe(POD_KEY, (ev) => {
      if (ev.type !== 'DELETED') this.consider(ev.obj);
    });
    const unsubNodes = this.store.hub.subscribe(NODE_KEY, (ev) => {
      if (ev.type !== 'DELETED') this.considerAll();
    });
    this.considerAll();
    return () => {
      this.stopped = true;
      unsubPods();
      unsubNodes();
    };
  }

  /** Queues a pod if it waits for this scheduler. */
  private consider(pod: KObject): void {
    if (this.wants(pod)) this.enqueue(`${pod.metadata.namespace}/${pod.metadata.name}`);
  }

  private considerAll(): void {
    for (const s of this.store.list(POD_KEY)) this.consider(s.obj);
  }

  private wants(pod: KObject): boolean {
    return (
      !getPath(pod, 'spec.nodeName') &&
      !pod.metadata.deletionTimestamp &&
      (getPath(pod, 'spec.schedulerName') ?? 'default-scheduler') === 'default-scheduler'
    );
  }

  private enqueue(key: string): void {
    this.queue.add(key);
    if (!this.scheduled) {
      this.scheduled = true;
      // Outside the write that triggered us, so watchers see events in resourceVersion order.
      setImmediate(() => this.run());
    }
  }

  private run(): void {
    this.scheduled = false;
    if (this.stopped) return;
    const keys = [...this.queue];
    this.queue.clear();
    const nodes = this.store.list(NODE_KEY).map((s) => s.obj);
    const podsPerNode = new Map<string, number>();
    for (const s of this.store.list(POD_KEY)) {
      const n = getPath(s.obj, 'spec.nodeName') as string | undefined;
      const phase = getPath(s.obj, 'status.phase');
      if (n && phase !== 'Succeeded' && phase !== 'Failed') podsPerNode.set(n, (podsPerNode.get(n) ?? 0) + 1);
    }
    for (const key of keys) {
      const [ns, name] = key.split('/') as [string, string];
      const pod = this.store.get(POD_KEY, ns, name)?.obj;
      if (!pod || !this.wants(pod)) continue;
      const reasons = new Map<string, number>();
      let best: KObject | undefined;
      for (const node of nodes) {
        const why = unfit(pod, node);
        if (why) reasons.set(why, (reasons.get(why) ?? 0) + 1);
        else if (
          !best ||
          (podsPerNode.get(node.metadata.name!) ?? 0) < (podsPerNode.get(best.metadata.name!) ?? 0)
        )
          best = node;
      }
      if (best) {
        bindPod(this.store, pod, best.metadata.name!);
        podsPerNode.set(best.metadata.name!, (podsPerNode.get(best.metadata.name!) ?? 0) + 1);
        this.log.debug({ pod: key, node: best.metadata.name }, 'pod bound');
        continue;
      }
      const detail = [...reasons.entries()].map(([why, n]) => `${n} ${why}`).join(', ');
      const message = `0/${nodes.length} nodes are available${detail ? `: ${detail}` : ''}. preemption: not eligible due to the emulator's scheduler.`;
      const status = withCondition(pod, { status: 'False', reason: 'Unschedulable', message });
      if (JSON.stringify(status) !== JSON.stringify(pod.status)) {
        this.store.put(POD_KEY, { ...pod, metadata: { ...pod.metadata }, status }, 'MODIFIED', pod);
      }
    }
  }
}
