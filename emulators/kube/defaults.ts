/**
 * Defaulting the real API server applies on create (and the admission plugins a stock cluster
 * runs): pod spec defaults and QoS class, service cluster IPs, namespace phase, secret stringData.
 * Each function mutates the fresh copy of the object being created, never a stored one.
 */
import { getPath, isPlainObject, mapField, type KObject } from './object.ts';

type Rec = Record<string, unknown>;

function setDefault(obj: Rec, key: string, value: unknown): void {
  if (obj[key] === undefined) obj[key] = value;
}

function defaultContainer(c: Rec): void {
  setDefault(c, 'terminationMessagePath', '/dev/termination-log');
  setDefault(c, 'terminationMessagePolicy', 'File');
  setDefault(c, 'resources', {});
  if (c.imagePullPolicy === undefined && typeof c.image === 'string') {
    const ref = c.image.split('@')[0]!;
    const tag = ref.lastIndexOf(':') > ref.lastIndexOf('/') ? ref.slice(ref.lastIndexOf(':') + 1) : '';
    c.imagePullPolicy = c.image.includes('@')
      ? 'IfNotPresent'
      : tag === '' || tag === 'latest'
        ? 'Always'
        : 'IfNotPresent';
  }
  for (const p of (c.ports ?? []) as Rec[]) if (isPlainObject(p)) setDefault(p, 'protocol', 'TCP');
}

/** The pod spec defaults (also used for pod templates in workloads). */
function defaultPodSpec(spec: Rec): void {
  setDefault(spec, 'restartPolicy', 'Always');
  setDefault(spec, 'dnsPolicy', 'ClusterFirst');
  setDefault(spec, 'schedulerName', 'default-scheduler');
  setDefault(spec, 'terminationGracePeriodSeconds', 30);
  setDefault(spec, 'securityContext', {});
  for (const key of ['containers', 'initContainers']) {
    const list = spec[key];
    if (Array.isArray(list)) for (const c of list) if (isPlainObject(c)) defaultContainer(c);
  }
}

function qosClass(spec: Rec): string {
  const containers = [...((spec.containers ?? []) as Rec[]), ...((spec.initContainers ?? []) as Rec[])];
  let any = false;
  let guaranteed = true;
  for (const c of containers) {
    const req = (getPath(c, 'resources.requests') ?? {}) as Rec;
    const lim = (getPath(c, 'resources.limits') ?? {}) as Rec;
    if (Object.keys(req).length || Object.keys(lim).length) any = true;
    for (const r of ['cpu', 'memory']) {
      if (lim[r] === undefined || (req[r] !== undefined && String(req[r]) !== String(lim[r])))
        guaranteed = false;
    }
  }
  if (!any) return 'BestEffort';
  return guaranteed ? 'Guaranteed' : 'Burstable';
}

export function defaultPod(pod: KObject): void {
  const spec = mapField(pod, 'spec');
  defaultPodSpec(spec);
  setDefault(spec, 'serviceAccountName', spec.serviceAccount ?? 'default');
  setDefault(spec, 'serviceAccount', spec.serviceAccountName);
  setDefault(spec, 'enableServiceLinks', true);
  setDefault(spec, 'priority', 0);
  setDefault(spec, 'preemptionPolicy', 'PreemptLowerPriority');
  addDefaultTolerations(pod);
  pod.status = { phase: 'Pending', qosClass: qosClass(spec) };
}

/**
 * The DefaultTolerationSeconds admission plugin, on create and update: pods survive a 5-minute
 * node outage. Running it on update is what lets `kubectl apply` replace the tolerations list.
 */
export function addDefaultTolerations(pod: KObject): void {
  const spec = mapField(pod, 'spec');
  const tolerations = (Array.isArray(spec.tolerations) ? spec.tolerations : (spec.tolerations = [])) as Rec[];
  for (const key of ['node.kubernetes.io/not-ready', 'node.kubernetes.io/unreachable']) {
    if (
      !tolerations.some(
        (t) =>
          (t.key === key || (t.key === undefined && t.operator === 'Exists')) &&
          (t.effect === 'NoExecute' || t.effect === undefined),
      )
    ) {
      tolerations.push({ key, operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 });
    }
  }
}

export function defaultWorkload(obj: KObject): void {
  const spec = mapField(obj, 'spec');
  setDefault(spec, 'replicas', 1);
  setDefault(spec, 'revisionHistoryLimit', 10);
  const podSpec = getPath(spec, 'template.spec');
  if (isPlainObject(podSpec)) defaultPodSpec(podSpec);
  obj.status = {};
}

/** Hands out cluster IPs from 10.96.0.0/12 the way the service IP allocator does (never reused here). */
export class ClusterIpAllocator {
  private next = 10;
  private readonly used = new Set<string>(['10.96.0.1']);

  allocate(): string {
    for (;;) {
      const n = this.next++;
      const ip = `10.${96 + ((n >> 16) & 0x0f)}.${(n >> 8) & 0xff}.${n & 0xff}`;
      if (!this.used.has(ip) && (n & 0xff) !== 0) {
        this.used.add(ip);
        return ip;
      }
    }
  }

  reserve(ip: string): void {
    this.used.add(ip);
  }
}

export function defaultService(svc: KObject, ips: ClusterIpAllocator): void {
  const spec = mapField(svc, 'spec');
  setDefault(spec, 'type', 'ClusterIP');
  setDefault(spec, 'sessionAffinity', 'None');
  if (spec.type !== 'ExternalName') {
    if (spec.clusterIP === undefined || spec.clusterIP === '') spec.clusterIP = ips.allocate();
    else if (typeof spec.clusterIP === 'string' && spec.clusterIP !== 'None') ips.reserve(spec.clusterIP);
    setDefault(spec, 'clusterIPs', [spec.clusterIP]);
    setDefault(spec, 'ipFamilies', ['IPv4']);
    setDefault(spec, 'ipFamilyPolicy', 'SingleStack');
    setDefault(spec, 'internalTrafficPolicy', 'Cluster');
  }
  for (const p of (spec.ports ?? []) as Rec[]) {
    if (!isPlainObject(p)) continue;
    setDefault(p, 'protocol', 'TCP');
    setDefault(p, 'targetPort', p.port);
  }
  svc.status = { loadBalancer: {} };
}

export function defaultNamespace(ns: KObject): void {
  ns.metadata.labels = { ...ns.metadata.labels, 'kubernetes.io/metadata.name': ns.metadata.name! };
  const spec = mapField(ns, 'spec');
  setDefault(spec, 'finalizers', ['kubernetes']);
  ns.status = { phase: 'Active' };
}

export function defaultSecret(secret: KObject): void {
  setDefault(secret as Rec, 'type', 'Opaque');
  normaliseSecretData(secret);
}

/** `stringData` is write-only: merged into `data` (base64) on every write, as the real server does. */
export function normaliseSecretData(secret: KObject): void {
  if (isPlainObject(secret.stringData)) {
    const data = mapField(secret, 'data');
    for (const [k, v] of Object.entries(secret.stringData))
      data[k] = Buffer.from(String(v)).toString('base64');
    delete secret.stringData;
  }
}

export function clearStatus(obj: KObject): void {
  delete obj.status;
}
