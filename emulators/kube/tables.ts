/**
 * Server-side printing: the `meta.k8s.io/v1 Table` that `kubectl get` asks for. Column sets for
 * the kinds kubectl users look at most; every other kind gets NAME and AGE (plus a CRD's
 * additionalPrinterColumns).
 */
import { getPath, isPlainObject, type KObject } from './object.ts';

export interface ColumnDef {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  format?: string;
  description?: string;
  /** 0 for the default view, 1 for columns only `-o wide` shows. */
  priority?: number;
  value: (obj: KObject, now: number) => unknown;
}

/** How Kubernetes prints an age: `45s`, `3m12s`, `5h2m`, `3d4h`... */
function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8)
    return hours % 24 === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const years = Math.floor(hours / 24 / 365);
  const days = Math.floor(hours / 24) % 365;
  if (hours < 24 * 365 * 8) return days === 0 ? `${years}y` : `${years}y${days}d`;
  return `${years}y`;
}

function since(ts: unknown, now: number): string {
  if (typeof ts !== 'string') return '<unknown>';
  const t = Date.parse(ts);
  return Number.isNaN(t) ? '<unknown>' : humanDuration(now - t);
}

const str = (v: unknown, empty = '<none>') =>
  v === undefined || v === null || v === '' ? empty : typeof v === 'string' ? v : JSON.stringify(v);

/** A string column read from a dotted path, printed as `empty` when the field is unset. */
function textColumn(name: string, description: string, path: string, empty = '<none>'): ColumnDef {
  return { name, type: 'string', description, value: (o) => str(getPath(o, path), empty) };
}

/** The same column shown only with `-o wide`. */
const wide = (c: ColumnDef): ColumnDef => ({ ...c, priority: 1 });

const nameColumn: ColumnDef = {
  name: 'Name',
  type: 'string',
  format: 'name',
  description: 'Name must be unique within a namespace.',
  value: (o) => o.metadata.name,
};

export const ageColumn: ColumnDef = {
  name: 'Age',
  type: 'string',
  description: 'CreationTimestamp is a timestamp representing the server time when this object was created.',
  value: (o, now) => since(o.metadata.creationTimestamp, now),
};

/** A column read from a simple JSONPath like `.spec.replicas` (CRD additionalPrinterColumns). */
export function jsonPathColumn(
  name: string,
  type: ColumnDef['type'],
  jsonPath: string,
  priority = 0,
  description = '',
): ColumnDef {
  const path = jsonPath.replace(/^\./, '').replace(/\[(\d+)\]/g, '.$1');
  return {
    name,
    type,
    priority,
    description,
    value: (o, now) => {
      let cur: unknown = o;
      for (const p of path.split('.')) {
        if (Array.isArray(cur)) cur = cur[Number(p)];
        else if (isPlainObject(cur)) cur = cur[p];
        else return null;
      }
      if (type === 'date') return since(cur, now);
      return cur === undefined ? null : cur;
    },
  };
}

interface ContainerStatusLike {
  name?: string;
  ready?: boolean;
  restartCount?: number;
  state?: {
    waiting?: { reason?: string };
    terminated?: { reason?: string; exitCode?: number; signal?: number };
  };
}

/** The STATUS column of `kubectl get pods`, following the real printer's precedence. */
function podStatusReason(pod: KObject): string {
  const status = (pod.status ?? {}) as Record<string, unknown>;
  let reason = (status.reason as string) || (status.phase as string) || 'Pending';
  const inits = (status.initContainerStatuses ?? []) as ContainerStatusLike[];
  const initCount = ((getPath(pod, 'spec.initContainers') as unknown[]) ?? []).length;
  let initializing = false;
  inits.forEach((c, i) => {
    if (initializing) return;
    const t = c.state?.terminated;
    if (t && t.exitCode === 0) return;
    initializing = true;
    if (t)
      reason = t.reason
        ? `Init:${t.reason}`
        : t.signal
          ? `Init:Signal:${t.signal}`
          : `Init:ExitCode:${t.exitCode}`;
    else if (c.state?.waiting?.reason && c.state.waiting.reason !== 'PodInitializing')
      reason = `Init:${c.state.waiting.reason}`;
    else reason = `Init:${i}/${initCount}`;
  });
  if (!initializing) {
    let hasRunning = false;
    const statuses = (status.containerStatuses ?? []) as ContainerStatusLike[];
    for (let i = statuses.length - 1; i >= 0; i--) {
      const c = statuses[i]!;
      const t = c.state?.terminated;
      if (c.state?.waiting?.reason) reason = c.state.waiting.reason;
      else if (t?.reason) reason = t.reason;
      else if (t) reason = t.signal ? `Signal:${t.signal}` : `ExitCode:${t.exitCode}`;
      else if (c.ready && !c.state?.waiting && !t) hasRunning = true;
    }
    if (reason === 'Completed' && hasRunning) reason = 'Running';
  }
  if (pod.metadata.deletionTimestamp) reason = status.reason === 'NodeLost' ? 'Unknown' : 'Terminating';
  return reason;
}

export const podColumns: ColumnDef[] = [
  {
    name: 'Ready',
    type: 'string',
    description: 'The aggregate readiness state of this pod for accepting traffic.',
    value: (o) => {
      const total = ((getPath(o, 'spec.containers') as unknown[]) ?? []).length;
      const statuses = (getPath(o, 'status.containerStatuses') ?? []) as ContainerStatusLike[];
      return `${statuses.filter((c) => c.ready).length}/${total}`;
    },
  },
  {
    name: 'Status',
    type: 'string',
    description: 'The aggregate status of the containers in this pod.',
    value: podStatusReason,
  },
  {
    name: 'Restarts',
    type: 'string',
    description: 'The number of times the containers in this pod have been restarted.',
    value: (o) =>
      String(
        ((getPath(o, 'status.containerStatuses') ?? []) as ContainerStatusLike[]).reduce(
          (n, c) => n + (c.restartCount ?? 0),
          0,
        ),
      ),
  },
  ageColumn,
  wide(textColumn('IP', 'IP address allocated to the pod.', 'status.podIP')),
  wide(textColumn('Node', 'Name of the Node the Pod is assigned to.', 'spec.nodeName')),
  wide(
    textColumn('Nominated Node', 'Name of the Node the Pod is nominated for.', 'status.nominatedNodeName'),
  ),
  {
    name: 'Readiness Gates',
    type: 'string',
    priority: 1,
    description: 'Pod readiness gates.',
    value: (o) => {
      const gates = (getPath(o, 'spec.readinessGates') ?? []) as unknown[];
      return gates.length === 0 ? '<none>' : `0/${gates.length}`;
    },
  },
];

function nodeStatus(o: KObject): string {
  const conds = (getPath(o, 'status.conditions') ?? []) as { type?: string; status?: string }[];
  const ready = conds.find((c) => c.type === 'Ready');
  let s = !ready
    ? 'Unknown'
    : ready.status === 'True'
      ? 'Ready'
      : ready.status === 'False'
        ? 'NotReady'
        : 'Unknown';
  if (getPath(o, 'spec.unschedulable') === true) s += ',SchedulingDisabled';
  return s;
}

function nodeRoles(o: KObject): string {
  const roles = new Set<string>();
  for (const [k, v] of Object.entries(o.metadata.labels ?? {})) {
    if (k.startsWith('node-role.kubernetes.io/')) roles.add(k.slice('node-role.kubernetes.io/'.length));
    else if (k === 'kubernetes.io/role' && v) roles.add(v);
  }
  return roles.size ? [...roles].sort().join(',') : '<none>';
}

function nodeAddress(o: KObject, type: string): string {
  const addrs = (getPath(o, 'status.addresses') ?? []) as { type?: string; address?: string }[];
  return addrs.find((a) => a.type === type)?.address ?? '<none>';
}

export const nodeColumns: ColumnDef[] = [
  { name: 'Status', type: 'string', description: 'The status of the node', value: nodeStatus },
  { name: 'Roles', type: 'string', description: 'The roles of the node', value: nodeRoles },
  ageColumn,
  textColumn('Version', 'Kubelet Version reported by the node.', 'status.nodeInfo.kubeletVersion', ''),
  {
    name: 'Internal-IP',
    type: 'string',
    priority: 1,
    description: 'List of internal IPs.',
    value: (o) => nodeAddress(o, 'InternalIP'),
  },
  {
    name: 'External-IP',
    type: 'string',
    priority: 1,
    description: 'List of external IPs.',
    value: (o) => nodeAddress(o, 'ExternalIP'),
  },
  wide(textColumn('OS-Image', 'OS image reported by the node.', 'status.nodeInfo.osImage', '<unknown>')),
  wide(
    textColumn(
      'Kernel-Version',
      'Kernel version reported by the node.',
      'status.nodeInfo.kernelVersion',
      '<unknown>',
    ),
  ),
  wide(
    textColumn(
      'Container-Runtime',
      'Container runtime reported by the node.',
      'status.nodeInfo.containerRuntimeVersion',
      '<unknown>',
    ),
  ),
];

export const namespaceColumns: ColumnDef[] = [
  textColumn('Status', 'The status of the namespace', 'status.phase', ''),
  ageColumn,
];

const count = (v: unknown) => (isPlainObject(v) ? Object.keys(v).length : 0);

export const configMapColumns: ColumnDef[] = [
  {
    name: 'Data',
    type: 'integer',
    description: 'Number of data entries.',
    value: (o) => count(o.data) + count(o.binaryData),
  },
  ageColumn,
];

export const secretColumns: ColumnDef[] = [
  textColumn('Type', 'The type of the secret', 'type', ''),
  { name: 'Data', type: 'integer', description: 'Number of data entries.', value: (o) => count(o.data) },
  ageColumn,
];

function servicePorts(o: KObject): string {
  const ports = (getPath(o, 'spec.ports') ?? []) as { port?: number; protocol?: string; nodePort?: number }[];
  if (ports.length === 0) return '<none>';
  return ports.map((p) => `${p.port}${p.nodePort ? `:${p.nodePort}` : ''}/${p.protocol ?? 'TCP'}`).join(',');
}

export const serviceColumns: ColumnDef[] = [
  textColumn('Type', 'The type of the service', 'spec.type', 'ClusterIP'),
  textColumn('Cluster-IP', 'The cluster IP', 'spec.clusterIP'),
  {
    name: 'External-IP',
    type: 'string',
    description: 'External IPs',
    value: (o) => {
      const ing = (getPath(o, 'status.loadBalancer.ingress') ?? []) as { ip?: string; hostname?: string }[];
      const ext = [
        ...((getPath(o, 'spec.externalIPs') ?? []) as string[]),
        ...ing.map((i) => i.ip ?? i.hostname ?? ''),
      ];
      if (ext.length) return ext.join(',');
      return getPath(o, 'spec.type') === 'LoadBalancer' ? '<pending>' : '<none>';
    },
  },
  { name: 'Port(s)', type: 'string', description: 'The ports the service serves', value: servicePorts },
  ageColumn,
  {
    name: 'Selector',
    type: 'string',
    priority: 1,
    description: 'The selector of the service',
    value: (o) => {
      const sel = (getPath(o, 'spec.selector') ?? {}) as Record<string, string>;
      const s = Object.entries(sel)
        .map(([k, v]) => `${k}=${v}`)
        .join(',');
      return s || '<none>';
    },
  },
];

export const eventColumns: ColumnDef[] = [
  {
    name: 'Last Seen',
    type: 'string',
    description: 'Time since the event was last seen',
    value: (o, now) => since(o.lastTimestamp ?? o.eventTime ?? o.metadata.creationTimestamp, now),
  },
  textColumn('Type', 'Type of this event', 'type', ''),
  textColumn('Reason', 'Why the event was raised', 'reason', ''),
  {
    name: 'Object',
    type: 'string',
    description: 'The object this event is about',
    value: (o) =>
      `${String(getPath(o, 'involvedObject.kind') ?? '').toLowerCase()}/${str(getPath(o, 'involvedObject.name'), '')}`,
  },
  textColumn('Message', 'A human-readable description', 'message', ''),
];

/** READY of the workloads: ready replicas over desired ones. */
const replicasReadyColumn: ColumnDef = {
  name: 'Ready',
  type: 'string',
  description: 'Number of the pod with ready state',
  value: (o) => `${getPath(o, 'status.readyReplicas') ?? 0}/${getPath(o, 'spec.replicas') ?? 1}`,
};

export const deploymentColumns: ColumnDef[] = [
  replicasReadyColumn,
  {
    name: 'Up-to-date',
    type: 'integer',
    description: 'Total number of non-terminated pods with the desired template',
    value: (o) => getPath(o, 'status.updatedReplicas') ?? 0,
  },
  {
    name: 'Available',
    type: 'integer',
    description: 'Total number of available pods',
    value: (o) => getPath(o, 'status.availableReplicas') ?? 0,
  },
  ageColumn,
];

export const statefulSetColumns: ColumnDef[] = [replicasReadyColumn, ageColumn];

export const leaseColumns: ColumnDef[] = [
  textColumn('Holder', 'The holder of the lease', 'spec.holderIdentity', ''),
  ageColumn,
];

export const csrColumns: ColumnDef[] = [
  ageColumn,
  textColumn('SignerName', 'Signer of the request', 'spec.signerName'),
  textColumn('Requestor', 'Who asked', 'spec.username'),
  {
    name: 'RequestedDuration',
    type: 'string',
    description: 'Requested certificate lifetime',
    value: (o) => {
      const s = getPath(o, 'spec.expirationSeconds');
      return typeof s === 'number' ? humanDuration(s * 1000) : '<none>';
    },
  },
  {
    name: 'Condition',
    type: 'string',
    description: 'Approval state and whether a certificate was issued',
    value: (o) => {
      const conds = ((getPath(o, 'status.conditions') ?? []) as { type?: string }[]).map((c) => c.type ?? '');
      if (getPath(o, 'status.certificate')) conds.push('Issued');
      return conds.length ? conds.join(',') : 'Pending';
    },
  },
];

export const pvcColumns: ColumnDef[] = [
  textColumn('Status', 'Phase of the claim', 'status.phase', 'Pending'),
  textColumn('Volume', 'Bound volume', 'spec.volumeName', ''),
  textColumn('Capacity', 'Capacity of the bound volume', 'status.capacity.storage', ''),
  {
    name: 'Access Modes',
    type: 'string',
    description: 'Access modes',
    value: (o) => accessModes(getPath(o, 'status.accessModes')),
  },
  textColumn('StorageClass', 'Storage class', 'spec.storageClassName'),
  ageColumn,
];

function accessModes(v: unknown): string {
  const short: Record<string, string> = {
    ReadWriteOnce: 'RWO',
    ReadOnlyMany: 'ROX',
    ReadWriteMany: 'RWX',
    ReadWriteOncePod: 'RWOP',
  };
  return Array.isArray(v) ? v.map((m) => short[String(m)] ?? String(m)).join(',') : '';
}

export const pvColumns: ColumnDef[] = [
  textColumn('Capacity', 'Capacity', 'spec.capacity.storage', ''),
  {
    name: 'Access Modes',
    type: 'string',
    description: 'Access modes',
    value: (o) => accessModes(getPath(o, 'spec.accessModes')),
  },
  textColumn('Reclaim Policy', 'Reclaim policy', 'spec.persistentVolumeReclaimPolicy', 'Retain'),
  textColumn('Status', 'Phase of the volume', 'status.phase', 'Pending'),
  {
    name: 'Claim',
    type: 'string',
    description: 'Bound claim',
    value: (o) => {
      const ref = getPath(o, 'spec.claimRef') as { namespace?: string; name?: string } | undefined;
      return ref?.name ? `${ref.namespace}/${ref.name}` : '';
    },
  },
  textColumn('StorageClass', 'Storage class', 'spec.storageClassName', ''),
  ageColumn,
];

export const storageClassColumns: ColumnDef[] = [
  textColumn('Provisioner', 'Provisioner', 'provisioner', ''),
  textColumn('ReclaimPolicy', 'Reclaim policy', 'reclaimPolicy', 'Delete'),
  textColumn('VolumeBindingMode', 'Binding mode', 'volumeBindingMode', 'Immediate'),
  {
    name: 'AllowVolumeExpansion',
    type: 'string',
    description: 'Expansion allowed',
    value: (o) => String(o.allowVolumeExpansion ?? false),
  },
  ageColumn,
];

export const roleBindingColumns: ColumnDef[] = [
  {
    name: 'Role',
    type: 'string',
    description: 'The bound role',
    value: (o) => `${str(getPath(o, 'roleRef.kind'), '')}/${str(getPath(o, 'roleRef.name'), '')}`,
  },
  ageColumn,
];

export const pdbColumns: ColumnDef[] = [
  textColumn('Min Available', 'Minimum available', 'spec.minAvailable', 'N/A'),
  textColumn('Max Unavailable', 'Maximum unavailable', 'spec.maxUnavailable', 'N/A'),
  {
    name: 'Allowed Disruptions',
    type: 'integer',
    description: 'Disruptions allowed now',
    value: (o) => getPath(o, 'status.disruptionsAllowed') ?? 0,
  },
  ageColumn,
];

export const createdAtColumns: ColumnDef[] = [
  {
    name: 'Created At',
    type: 'date',
    description: 'When the object was created',
    value: (o) => o.metadata.creationTimestamp ?? null,
  },
];

/** Builds one Table row; `object` carries the metadata kubectl reads for --show-labels and -w. */
export function tableRow(obj: KObject, columns: ColumnDef[], now: number): Record<string, unknown> {
  return {
    cells: [nameColumn, ...columns].map((c) => {
      const v = c.value(obj, now);
      return v === undefined ? null : v;
    }),
    object: {
      kind: 'PartialObjectMetadata',
      apiVersion: 'meta.k8s.io/v1',
      metadata: obj.metadata,
    },
  };
}

export function columnDefinitions(columns: ColumnDef[]): Record<string, unknown>[] {
  return [nameColumn, ...columns].map((c) => ({
    name: c.name,
    type: c.type === 'date' ? 'string' : c.type,
    format: c.format ?? '',
    description: c.description ?? '',
    priority: c.priority ?? 0,
  }));
}
