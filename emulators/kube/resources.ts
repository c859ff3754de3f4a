/**
 * The resource table: every kind the emulator serves is one entry here. Handlers, discovery,
 * OpenAPI, tables, patches and selectors all read these entries, so adding a built-in kind is a
 * table entry and a CRD becomes one at runtime (see crd.ts).
 */
import type { StatusCause } from './api-errors.ts';
import { validateCsr } from './csr.ts';
import { coreToEvent, eventToCore } from './event-conversion.ts';
import type { ClusterIpAllocator } from './defaults.ts';
import {
  addDefaultTolerations,
  clearStatus,
  defaultNamespace,
  defaultPod,
  defaultSecret,
  defaultService,
  defaultWorkload,
  normaliseSecretData,
} from './defaults.ts';
import { getPath, type KObject } from './object.ts';
import {
  ageColumn,
  configMapColumns,
  createdAtColumns,
  csrColumns,
  deploymentColumns,
  eventColumns,
  leaseColumns,
  namespaceColumns,
  nodeColumns,
  pdbColumns,
  podColumns,
  pvColumns,
  pvcColumns,
  roleBindingColumns,
  secretColumns,
  serviceColumns,
  statefulSetColumns,
  storageClassColumns,
  type ColumnDef,
} from './tables.ts';
import {
  validateConfigData,
  validateLease,
  validateNode,
  validatePod,
  validateService,
  validateWorkload,
  type NameRule,
} from './validation.ts';

/** What a create hook may use besides the object itself. */
export interface CreateContext {
  clusterIps: ClusterIpAllocator;
}

export type FieldGetter = (obj: KObject) => unknown;

export interface ResourceDef {
  group: string;
  version: string;
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  namespaced: boolean;
  categories: string[];
  /** Subresources served besides the object itself: status, log, token, approval, binding. */
  subresources: string[];
  verbs: string[];
  /** Table columns after NAME (kubectl get); `priority: 1` columns show only with -o wide. */
  columns: ColumnDef[];
  /**
   * Strategic-merge list keys by dotted path, `[]` standing for "each element of a list":
   * `spec.containers` → `name`, `spec.containers[].env` → `name`. An empty key means a list of
   * primitives merged as a set (finalizers).
   */
  mergeKeys: Record<string, string>;
  /** Field selectors besides metadata.name and metadata.namespace. */
  fieldSelectors: Record<string, FieldGetter>;
  nameRule: NameRule;
  /** Top-level fields the kind has (besides apiVersion/kind/metadata); unset: anything goes. */
  fields?: string[];
  /** Defaulting on create; may reset status (status is written through its subresource). */
  prepareCreate?: (obj: KObject, ctx: CreateContext) => void;
  /** Normalisation on every update of the main resource. */
  prepareUpdate?: (obj: KObject, old: KObject) => void;
  validate?: (obj: KObject, old?: KObject) => StatusCause[];
  /** PUT of an absent object creates it (events, endpoints, leases). */
  createOnUpdate?: boolean;
  /** Create-only kinds that are answered, not stored (TokenReview, SubjectAccessReview). */
  virtual?: boolean;
  /**
   * A second shape of another resource's storage (events.k8s.io Events over core Events):
   * objects are stored as `toStorage` makes them and served as `fromStorage` shows them.
   */
  view?: { storage: string; toStorage: (obj: KObject) => KObject; fromStorage: (obj: KObject) => KObject };
  /** Read-only metrics computed from the kubelets (metrics.k8s.io), not stored. */
  metrics?: 'pods' | 'nodes';
  /** Served from a CustomResourceDefinition: no strategic merge patch, per the real server. */
  custom?: { crdName: string; storageVersion: string; schema?: Record<string, unknown> };
}

const FULL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

/** Table entry with the defaults most kinds share. */
export function resource(
  entry: Partial<ResourceDef> & Pick<ResourceDef, 'version' | 'kind' | 'plural'>,
): ResourceDef {
  return {
    group: '',
    singular: entry.kind.toLowerCase(),
    shortNames: [],
    namespaced: true,
    categories: [],
    subresources: [],
    verbs: FULL_VERBS,
    columns: [ageColumn],
    mergeKeys: {},
    fieldSelectors: {},
    nameRule: 'subdomain',
    ...entry,
  };
}

const METADATA_KEYS: Record<string, string> = {
  'metadata.ownerReferences': 'uid',
  'metadata.finalizers': '',
};

const POD_SPEC_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  ephemeralContainers: 'name',
  'containers[].ports': 'containerPort',
  'containers[].env': 'name',
  'containers[].volumeMounts': 'mountPath',
  'containers[].volumeDevices': 'devicePath',
  'initContainers[].ports': 'containerPort',
  'initContainers[].env': 'name',
  'initContainers[].volumeMounts': 'mountPath',
  volumes: 'name',
  imagePullSecrets: 'name',
  hostAliases: 'ip',
  topologySpreadConstraints: 'topologyKey',
  resourceClaims: 'name',
  schedulingGates: 'name',
};

function prefixed(prefix: string, keys: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(keys).map(([k, v]) => [`${prefix}.${k}`, v]));
}

const CONDITIONS = { 'status.conditions': 'type' };
const TEMPLATE_KEYS = { ...METADATA_KEYS, ...prefixed('spec.template.spec', POD_SPEC_KEYS), ...CONDITIONS };

const str = (v: unknown) => (v === undefined || v === null ? '' : String(v));

/** Field selectors `<prefix>.<field>` on an event's involved object (stored in the core/v1 shape). */
function involvedObjectSelectors(prefix: string, fields: string[]): Record<string, FieldGetter> {
  return Object.fromEntries(
    fields.map((f) => [`${prefix}.${f}`, (o: KObject) => getPath(o, `involvedObject.${f}`)]),
  );
}

const BUILTIN_RESOURCES: ResourceDef[] = [
  resource({
    version: 'v1',
    kind: 'Namespace',
    plural: 'namespaces',
    shortNames: ['ns'],
    namespaced: false,
    subresources: ['status', 'finalize'],
    columns: namespaceColumns,
    nameRule: 'label',
    fields: ['spec', 'status'],
    mergeKeys: { ...METADATA_KEYS, ...CONDITIONS },
    fieldSelectors: { 'status.phase': (o) => getPath(o, 'status.phase') },
    prepareCreate: defaultNamespace,
  }),
  resource({
    version: 'v1',
    kind: 'Pod',
    plural: 'pods',
    shortNames: ['po'],
    categories: ['all'],
    subresources: ['status', 'log', 'binding', 'exec', 'attach', 'portforward'],
    columns: podColumns,
    fields: ['spec', 'status'],
    mergeKeys: {
      ...METADATA_KEYS,
      ...prefixed('spec', POD_SPEC_KEYS),
      ...CONDITIONS,
      'status.podIPs': 'ip',
      'status.hostIPs': 'ip',
    },
    fieldSelectors: {
      'spec.nodeName': (o) => getPath(o, 'spec.nodeName'),
      'spec.restartPolicy': (o) => getPath(o, 'spec.restartPolicy'),
      'spec.schedulerName': (o) => getPath(o, 'spec.schedulerName'),
      'spec.serviceAccountName': (o) => getPath(o, 'spec.serviceAccountName'),
      'spec.hostNetwork': (o) => String(getPath(o, 'spec.hostNetwork') === true),
      'status.phase': (o) => getPath(o, 'status.phase'),
      'status.podIP': (o) => getPath(o, 'status.podIP'),
      'status.nominatedNodeName': (o) => getPath(o, 'status.nominatedNodeName'),
    },
    prepareCreate: defaultPod,
    prepareUpdate: addDefaultTolerations,
    validate: validatePod,
  }),
  resource({
    version: 'v1',
    kind: 'Binding',
    plural: 'bindings',
    verbs: ['create'],
    virtual: true,
    fields: ['target'],
  }),
  resource({
    version: 'v1',
    kind: 'Node',
    plural: 'nodes',
    shortNames: ['no'],
    namespaced: false,
    subresources: ['status'],
    columns: nodeColumns,
    fields: ['spec', 'status'],
    mergeKeys: { ...METADATA_KEYS, ...CONDITIONS, 'status.addresses': 'type', 'spec.podCIDRs': '' },
    fieldSelectors: { 'spec.unschedulable': (o) => String(getPath(o, 'spec.unschedulable') === true) },
    validate: validateNode,
  }),
  resource({
    version: 'v1',
    kind: 'Event',
    plural: 'events',
    shortNames: ['ev'],
    columns: eventColumns,
    createOnUpdate: true,
    mergeKeys: METADATA_KEYS,
    fields: [
      'involvedObject',
      'reason',
      'message',
      'source',
      'firstTimestamp',
      'lastTimestamp',
      'count',
      'type',
      'eventTime',
      'series',
      'action',
      'related',
      'reportingComponent',
      'reportingInstance',
    ],
    fieldSelectors: {
      ...involvedObjectSelectors('involvedObject', [
        'kind',
        'namespace',
        'name',
        'uid',
        'apiVersion',
        'resourceVersion',
        'fieldPath',
      ]),
      reason: (o) => o.reason,
      reportingComponent: (o) => o.reportingComponent,
      source: (o) => str(getPath(o, 'source.component')) || str(o.reportingComponent),
      type: (o) => o.type,
    },
  }),
  resource({
    version: 'v1',
    kind: 'ConfigMap',
    plural: 'configmaps',
    shortNames: ['cm'],
    columns: configMapColumns,
    mergeKeys: METADATA_KEYS,
    fields: ['data', 'binaryData', 'immutable'],
    validate: validateConfigData,
  }),
  resource({
    version: 'v1',
    kind: 'Secret',
    plural: 'secrets',
    columns: secretColumns,
    mergeKeys: METADATA_KEYS,
    fields: ['data', 'stringData', 'type', 'immutable'],
    fieldSelectors: { type: (o) => o.type },
    prepareCreate: defaultSecret,
    prepareUpdate: normaliseSecretData,
    validate: validateConfigData,
  }),
  resource({
    version: 'v1',
    kind: 'Service',
    plural: 'services',
    shortNames: ['svc'],
    categories: ['all'],
    subresources: ['status'],
    columns: serviceColumns,
    nameRule: 'dns1035',
    fields: ['spec', 'status'],
    mergeKeys: { ...METADATA_KEYS, 'spec.ports': 'port', ...CONDITIONS },
    prepareCreate: (o, ctx) => defaultService(o, ctx.clusterIps),
    prepareUpdate: (o, old) => {
      // The allocated IP survives an update that leaves it out (kubectl apply of the manifest).
      const spec = o.spec as Record<string, unknown> | undefined;
      if (spec && (spec.clusterIP === undefined || spec.clusterIP === '')) {
        spec.clusterIP = getPath(old, 'spec.clusterIP');
        spec.clusterIPs ??= getPath(old, 'spec.clusterIPs');
      }
    },
    validate: validateService,
  }),
  resource({
    version: 'v1',
    kind: 'Endpoints',
    plural: 'endpoints',
    singular: 'endpoints',
    shortNames: ['ep'],
    createOnUpdate: true,
    mergeKeys: METADATA_KEYS,
    fields: ['subsets'],
  }),
  resource({
    version: 'v1',
    kind: 'ServiceAccount',
    plural: 'serviceaccounts',
    shortNames: ['sa'],
    subresources: ['token'],
    mergeKeys: { ...METADATA_KEYS, secrets: 'name' },
    fields: ['secrets', 'imagePullSecrets', 'automountServiceAccountToken'],
  }),
  resource({
    version: 'v1',
    kind: 'PersistentVolumeClaim',
    plural: 'persistentvolumeclaims',
    shortNames: ['pvc'],
    subresources: ['status'],
    columns: pvcColumns,
    fields: ['spec', 'status'],
    mergeKeys: { ...METADATA_KEYS, ...CONDITIONS },
    prepareCreate: (o) => {
      o.status = { phase: 'Pending' };
    },
  }),
  resource({
    version: 'v1',
    kind: 'PersistentVolume',
    plural: 'persistentvolumes',
    shortNames: ['pv'],
    namespaced: false,
    subresources: ['status'],
    columns: pvColumns,
    fields: ['spec', 'status'],
    mergeKeys: METADATA_KEYS,
    prepareCreate: (o) => {
      o.status = { phase: 'Available' };
    },
  }),
  resource({
    group: 'apps',
    version: 'v1',
    kind: 'Deployment',
    plural: 'deployments',
    shortNames: ['deploy'],
    categories: ['all'],
    subresources: ['status', 'scale'],
    columns: deploymentColumns,
    fields: ['spec', 'status'],
    mergeKeys: TEMPLATE_KEYS,
    prepareCreate: defaultWorkload,
    validate: validateWorkload,
  }),
  resource({
    group: 'apps',
    version: 'v1',
    kind: 'StatefulSet',
    plural: 'statefulsets',
    shortNames: ['sts'],
    categories: ['all'],
    subresources: ['status', 'scale'],
    columns: statefulSetColumns,
    fields: ['spec', 'status'],
    mergeKeys: TEMPLATE_KEYS,
    prepareCreate: defaultWorkload,
    validate: validateWorkload,
  }),
  resource({
    group: 'coordination.k8s.io',
    version: 'v1',
    kind: 'Lease',
    plural: 'leases',
    columns: leaseColumns,
    createOnUpdate: true,
    mergeKeys: METADATA_KEYS,
    fields: ['spec'],
    validate: validateLease,
  }),
  resource({
    group: 'events.k8s.io',
    version: 'v1',
    kind: 'Event',
    plural: 'events',
    shortNames: ['ev'],
    columns: eventColumns,
    createOnUpdate: true,
    mergeKeys: METADATA_KEYS,
    fields: [
      'eventTime',
      'series',
      'reportingController',
      'reportingInstance',
      'action',
      'reason',
      'regarding',
      'related',
      'note',
      'type',
      'deprecatedSource',
      'deprecatedFirstTimestamp',
      'deprecatedLastTimestamp',
      'deprecatedCount',
    ],
    // Selectors see the stored (core/v1) shape.
    fieldSelectors: {
      ...involvedObjectSelectors('regarding', ['kind', 'namespace', 'name', 'uid']),
      reason: (o) => o.reason,
      reportingController: (o) => o.reportingComponent,
      type: (o) => o.type,
    },
    view: { storage: '/events', toStorage: eventToCore, fromStorage: coreToEvent },
  }),
  resource({
    group: 'certificates.k8s.io',
    version: 'v1',
    kind: 'CertificateSigningRequest',
    plural: 'certificatesigningrequests',
    shortNames: ['csr'],
    namespaced: false,
    subresources: ['status', 'approval'],
    columns: csrColumns,
    fields: ['spec', 'status'],
    mergeKeys: { ...METADATA_KEYS, ...CONDITIONS },
    fieldSelectors: { 'spec.signerName': (o) => getPath(o, 'spec.signerName') },
    prepareCreate: clearStatus,
    validate: validateCsr,
  }),
  resource({
    group: 'authentication.k8s.io',
    version: 'v1',
    kind: 'TokenReview',
    plural: 'tokenreviews',
    namespaced: false,
    verbs: ['create'],
    virtual: true,
    fields: ['spec', 'status'],
  }),
  resource({
    group: 'authentication.k8s.io',
    version: 'v1',
    kind: 'SelfSubjectReview',
    plural: 'selfsubjectreviews',
    namespaced: false,
    verbs: ['create'],
    virtual: true,
    fields: ['status'],
  }),
  resource({
    group: 'authorization.k8s.io',
    version: 'v1',
    kind: 'SubjectAccessReview',
    plural: 'subjectaccessreviews',
    namespaced: false,
    verbs: ['create'],
    virtual: true,
    fields: ['spec', 'status'],
  }),
  resource({
    group: 'authorization.k8s.io',
    version: 'v1',
    kind: 'SelfSubjectAccessReview',
    plural: 'selfsubjectaccessreviews',
    namespaced: false,
    verbs: ['create'],
    virtual: true,
    fields: ['spec', 'status'],
  }),
  resource({
    group: 'authorization.k8s.io',
    version: 'v1',
    kind: 'LocalSubjectAccessReview',
    plural: 'localsubjectaccessreviews',
    verbs: ['create'],
    virtual: true,
    fields: ['spec', 'status'],
  }),
  resource({
    group: 'apiextensions.k8s.io',
    version: 'v1',
    kind: 'CustomResourceDefinition',
    plural: 'customresourcedefinitions',
    shortNames: ['crd', 'crds'],
    namespaced: false,
    categories: ['api-extensions'],
    subresources: ['status'],
    columns: createdAtColumns,
    fields: ['spec', 'status'],
    mergeKeys: { ...METADATA_KEYS, ...CONDITIONS, 'spec.versions': 'name' },
    // Validation and status come from crd.ts, attached when the emulator is assembled.
  }),
  resource({
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    kind: 'Role',
    plural: 'roles',
    columns: createdAtColumns,
    mergeKeys: METADATA_KEYS,
    nameRule: 'path',
    fields: ['rules'],
  }),
  resource({
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    kind: 'RoleBinding',
    plural: 'rolebindings',
    columns: roleBindingColumns,
    mergeKeys: METADATA_KEYS,
    nameRule: 'path',
    fields: ['subjects', 'roleRef'],
  }),
  resource({
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    kind: 'ClusterRole',
    plural: 'clusterroles',
    namespaced: false,
    columns: createdAtColumns,
    mergeKeys: METADATA_KEYS,
    nameRule: 'path',
    fields: ['rules', 'aggregationRule'],
  }),
  resource({
    group: 'rbac.authorization.k8s.io',
    version: 'v1',
    kind: 'ClusterRoleBinding',
    plural: 'clusterrolebindings',
    namespaced: false,
    columns: roleBindingColumns,
    mergeKeys: METADATA_KEYS,
    nameRule: 'path',
    fields: ['subjects', 'roleRef'],
  }),
  resource({
    group: 'storage.k8s.io',
    version: 'v1',
    kind: 'StorageClass',
    plural: 'storageclasses',
    shortNames: ['sc'],
    namespaced: false,
    columns: storageClassColumns,
    mergeKeys: METADATA_KEYS,
    fields: [
      'provisioner',
      'parameters',
      'reclaimPolicy',
      'mountOptions',
      'allowVolumeExpansion',
      'volumeBindingMode',
      'allowedTopologies',
    ],
  }),
  resource({
    group: 'policy',
    version: 'v1',
    kind: 'PodDisruptionBudget',
    plural: 'poddisruptionbudgets',
    shortNames: ['pdb'],
    subresources: ['status'],
    columns: pdbColumns,
    fields: ['spec', 'status'],
    mergeKeys: { ...METADATA_KEYS, ...CONDITIONS },
    prepareCreate: (o) => {
      o.status = { disruptionsAllowed: 0, currentHealthy: 0, desiredHealthy: 0, expectedPods: 0 };
    },
  }),
];

// metrics.k8s.io, as metrics-server adds it: `kubectl top` reads these.
BUILTIN_RESOURCES.push(
  resource({
    group: 'metrics.k8s.io',
    version: 'v1beta1',
    kind: 'PodMetrics',
    plural: 'pods',
    singular: '',
    verbs: ['get', 'list'],
    metrics: 'pods',
  }),
  resource({
    group: 'metrics.k8s.io',
    version: 'v1beta1',
    kind: 'NodeMetrics',
    plural: 'nodes',
    singular: '',
    namespaced: false,
    verbs: ['get', 'list'],
    metrics: 'nodes',
  }),
);

/** `group/plural`: versions of one kind share storage, like the real server's storage per resource. */
export function storageKey(def: ResourceDef): string {
  return def.view?.storage ?? `${def.group}/${def.plural}`;
}

export function groupVersion(def: { group: string; version: string }): string {
  return def.group ? `${def.group}/${def.version}` : def.version;
}

/** The set of served resources, indexed by group/version and plural; CRDs add and remove entries. */
export class ResourceRegistry {
  private readonly byGv = new Map<string, Map<string, ResourceDef>>();
  private changeListeners: (() => void)[] = [];

  constructor(defs: ResourceDef[] = BUILTIN_RESOURCES) {
    for (const d of defs) this.add(d);
  }

  add(def: ResourceDef): void {
    const gv = groupVersion(def);
    let m = this.byGv.get(gv);
    if (!m) this.byGv.set(gv, (m = new Map()));
    m.set(def.plural, def);
    this.changed();
  }

  remove(group: string, version: string, plural: string): void {
    const gv = groupVersion({ group, version });
    const m = this.byGv.get(gv);
    if (!m) return;
    m.delete(plural);
    if (m.size === 0) this.byGv.delete(gv);
    this.changed();
  }

  get(group: string, version: string, plural: string): ResourceDef | undefined {
    return this.byGv.get(groupVersion({ group, version }))?.get(plural);
  }

  groupVersions(): string[] {
    return [...this.byGv.keys()];
  }

  inGroupVersion(gv: string): ResourceDef[] {
    return [...(this.byGv.get(gv)?.values() ?? [])];
  }

  all(): ResourceDef[] {
    return [...this.byGv.values()].flatMap((m) => [...m.values()]);
  }

  /** Called after every add/remove (discovery and OpenAPI caches listen). */
  onChange(fn: () => void): void {
    this.changeListeners.push(fn);
  }

  private changed(): void {
    for (const fn of this.changeListeners) fn();
  }
}
