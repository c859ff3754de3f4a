/**
 * Object semantics shared by every resource: create with generateName and defaults, update with
 * optimistic concurrency and status kept apart, patch, graceful and finalizer-aware deletion.
 * Handlers, the scheduler and the namespace lifecycle all write through this class.
 */
import { randomUUID } from 'node:crypto';
import {
  alreadyExists,
  ApiError,
  badRequest,
  conflict,
  invalid,
  notFound,
  STALE_OBJECT,
  unsupportedMediaType,
} from './api-errors.ts';
import { ClusterIpAllocator } from './defaults.ts';
import {
  clone,
  deepEqual,
  getPath,
  isoSeconds,
  isPlainObject,
  nowIso,
  specEqual,
  type KObject,
} from './object.ts';
import { applyConfiguration, jsonPatch, mergePatch, strategicMergePatch, type PatchType } from './patch.ts';
import { groupVersion, storageKey, type CreateContext, type ResourceDef } from './resources.ts';
import type { Store, Stored } from './store.ts';
import { validateMeta } from './validation.ts';

export interface DeleteOptions {
  gracePeriodSeconds?: number;
  preconditions?: { uid?: string; resourceVersion?: string };
  dryRun?: boolean;
}

export interface DeleteResult {
  /** True when the object is gone; false when it waits for its grace period or finalizers. */
  deleted: boolean;
  obj: KObject;
}

const NAME_CHARS = 'bcdfghjklmnpqrstvwxz2456789';

function randomSuffix(): string {
  let s = '';
  for (let i = 0; i < 5; i++) s += NAME_CHARS[Math.floor(Math.random() * NAME_CHARS.length)];
  return s;
}

const namespaceMismatch = () =>
  badRequest('the namespace of the provided object does not match the namespace sent on the request');

const nameMismatch = (given: string, url: string) =>
  badRequest(`the name of the object (${given}) does not match the name on the URL (${url})`);

/** Fields of ObjectMeta clients may not set or change. */
function keepSystemMeta(target: KObject, from: KObject): void {
  const m = target.metadata;
  const o = from.metadata;
  m.uid = o.uid;
  m.creationTimestamp = o.creationTimestamp;
  m.name = o.name;
  if (o.namespace !== undefined) m.namespace = o.namespace;
  else delete m.namespace;
  if (o.deletionTimestamp) {
    m.deletionTimestamp = o.deletionTimestamp;
    m.deletionGracePeriodSeconds = o.deletionGracePeriodSeconds;
  } else {
    delete m.deletionTimestamp;
    delete m.deletionGracePeriodSeconds;
  }
  m.generation = o.generation;
  delete m.managedFields;
  delete m.selfLink;
}

export class ObjectService {
  readonly ctx: CreateContext = { clusterIps: new ClusterIpAllocator() };
  /** Called before a namespaced object is created, to refuse missing or terminating namespaces. */
  namespaceCheck: (namespace: string) => void = () => {};

  constructor(readonly store: Store) {}

  get(def: ResourceDef, namespace: string, name: string): Stored {
    const s = this.find(def, namespace, name);
    if (!s) throw notFound(def.plural, def.group, name);
    return s;
  }

  find(def: ResourceDef, namespace: string, name: string): Stored | undefined {
    return this.store.get(storageKey(def), def.namespaced ? namespace : '', name);
  }

  /** Stores a new object. `obj` is the caller's decoded copy and is changed in place. */
  create(def: ResourceDef, namespace: string, obj: KObject, dryRun = false): KObject {
    const meta = obj.metadata;
    if (def.namespaced) {
      if (meta.namespace && meta.namespace !== namespace) {
        throw namespaceMismatch();
      }
      meta.namespace = namespace;
      this.namespaceCheck(namespace);
    } else {
      delete meta.namespace;
    }
    if (meta.resourceVersion) throw badRequest('resourceVersion should not be set on objects to be created');
    const key = storageKey(def);
    if (!meta.name && meta.generateName) {
      for (let i = 0; i < 8; i++) {
        meta.name = `${meta.generateName}${randomSuffix()}`;
        if (!this.store.get(key, meta.namespace ?? '', meta.name)) break;
      }
    }
    const causes = validateMeta(obj, def.nameRule);
    if (causes.length) throw invalid(def.kind, def.group, meta.name ?? '', causes);
    meta.uid = randomUUID();
    meta.creationTimestamp = nowIso();
    meta.generation = 1;
    delete meta.deletionTimestamp;
    delete meta.deletionGracePeriodSeconds;
    delete meta.managedFields;
    delete meta.selfLink;
    if (def.custom) {
      obj.apiVersion = groupVersion({ group: def.group, version: def.custom.storageVersion });
      if (def.subresources.includes('status')) delete obj.status;
    }
    def.prepareCreate?.(obj, this.ctx);
    const more = def.validate?.(obj) ?? [];
    if (more.length) throw invalid(def.kind, def.group, meta.name!, more);
    if (this.store.get(key, meta.namespace ?? '', meta.name!))
      throw alreadyExists(def.plural, def.group, meta.name!);
    if (dryRun) return obj;
    return this.store.put(key, obj, 'ADDED').obj;
  }

  /**
   * Replaces an object (PUT). `sub` is '' for the object itself, or the status-like subresource
   * (`status`, `approval`) whose part alone is taken from `obj`.
   */
  update(
    def: ResourceDef,
    namespace: string,
    name: string,
    obj: KObject,
    sub = '',
    dryRun = false,
  ): { obj: KObject; created: boolean } {
    const meta = obj.metadata;
    if (meta.name && meta.name !== name) {
      throw nameMismatch(meta.name, name);
    }
    if (def.namespaced && meta.namespace && meta.namespace !== namespace) {
      throw namespaceMismatch();
    }
    const cur = this.find(def, namespace, name);
    if (!cur) {
      if (def.createOnUpdate && sub === '') {
        meta.name = name;
        delete meta.resourceVersion;
        return { obj: this.create(def, namespace, obj, dryRun), created: true };
      }
      throw notFound(def.plural, def.group, name);
    }
    if (meta.resourceVersion && meta.resourceVersion !== cur.obj.metadata.resourceVersion) {
      throw conflict(def.plural, def.group, name, STALE_OBJECT);
    }
    let next: KObject;
    if (sub === '') {
      next = obj;
      keepSystemMeta(next, cur.obj);
      if (def.custom) next.apiVersion = cur.obj.apiVersion;
      if (def.subresources.includes('status')) {
        if (cur.obj.status === undefined) delete next.status;
        else next.status = cur.obj.status;
      }
      def.prepareUpdate?.(next, cur.obj);
      if (!specEqual(cur.obj, next)) next.metadata.generation = (cur.obj.metadata.generation ?? 1) + 1;
    } else {
      // Status-like subresources take only their part of the body; spec and metadata stay as stored.
      next = { ...cur.obj, metadata: { ...cur.obj.metadata } };
      if (sub === 'approval') {
        const conds = getPath(obj, 'status.conditions');
        next.status = { ...((cur.obj.status as object) ?? {}), conditions: conds };
      } else if (obj.status === undefined) delete next.status;
      else next.status = obj.status;
    }
    const causes = [...(def.validate?.(next, cur.obj) ?? []), ...validateMeta(next, def.nameRule)];
    if (causes.length) throw invalid(def.kind, def.group, name, causes);
    const { resourceVersion: _a, ...curMeta } = cur.obj.metadata;
    const { resourceVersion: _b, ...nextMeta } = next.metadata;
    // A write that changes nothing keeps the resourceVersion and sends no watch event.
    if (deepEqual({ ...cur.obj, metadata: curMeta }, { ...next, metadata: nextMeta }))
      return { obj: cur.obj, created: false };
    if (dryRun) return { obj: next, created: false };
    if (this.finalisable(def, next)) {
      return {
        obj: this.store.remove(storageKey(def), next.metadata.namespace ?? '', name)!.obj,
        created: false,
      };
    }
    return { obj: this.store.put(storageKey(def), next, 'MODIFIED', cur.obj).obj, created: false };
  }

  /**
   * Applies a patch to the stored object, then stores it as `update` would. `decode` checks the
   * patched object like a request body (unknown fields under fieldValidation=Strict).
   */
  patch(
    def: ResourceDef,
    namespace: string,
    name: string,
    type: PatchType,
    body: unknown,
    sub = '',
    dryRun = false,
    decode: (obj: KObject) => KObject = (o) => o,
  ): { obj: KObject; created: boolean } {
    if (type === 'strategic' && def.custom) {
      throw unsupportedMediaType('');
    }
    const cur = this.find(def, namespace, name);
    if (!cur) {
      if (type === 'apply' && sub === '' && isPlainObject(body)) {
        const obj = clone(body) as KObject;
        if (!isPlainObject(obj.metadata)) obj.metadata = {};
        if (obj.metadata.name && obj.metadata.name !== name) {
          throw nameMismatch(obj.metadata.name, name);
        }
        obj.metadata.name = name;
        obj.apiVersion ??= groupVersion(def);
        obj.kind ??= def.kind;
        const decoded = decode(obj);
        return {
          obj: this.create(def, namespace, def.view ? def.view.toStorage(decoded) : decoded, dryRun),
          created: true,
        };
      }
      throw notFound(def.plural, def.group, name);
    }
    // A view is patched in the shape the client sees, then stored in its storage shape.
    const base = def.view ? def.view.fromStorage(cur.obj) : cur.obj;
    let patched: unknown;
    switch (type) {
      case 'json':
        patched = jsonPatch(base, body);
        break;
      case 'merge':
        if (!isPlainObject(body))
          throw badRequest('json: cannot unmarshal array into Go value of type map[string]interface {}');
        patched = mergePatch(base, body);
        break;
      case 'strategic':
        patched = strategicMergePatch(base, body, def.mergeKeys);
        break;
      case 'apply':
        patched = applyConfiguration(base, body, def.mergeKeys);
        break;
    }
    if (!isPlainObject(patched) || !isPlainObject(patched.metadata)) {
      throw new ApiError(422, 'Invalid', `${def.kind} "${name}" is invalid: metadata: Required value`);
    }
    const obj = patched as KObject;
    if (obj.apiVersion !== base.apiVersion || obj.kind !== base.kind) {
      throw badRequest(
        `the patch may not change apiVersion or kind (${String(obj.apiVersion)}/${String(obj.kind)})`,
      );
    }
    const decoded = decode(obj);
    return this.update(def, namespace, name, def.view ? def.view.toStorage(decoded) : decoded, sub, dryRun);
  }

  /** DELETE: immediate, graceful (bound pods) or pending finalizers, as the real server decides. */
  delete(def: ResourceDef, namespace: string, name: string, opts: DeleteOptions = {}): DeleteResult {
    const cur = this.get(def, namespace, name);
    const obj = cur.obj;
    const pre = opts.preconditions;
    if (pre?.uid && pre.uid !== obj.metadata.uid) {
      throw conflict(
        def.plural,
        def.group,
        name,
        `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${obj.metadata.uid}`,
      );
    }
    if (pre?.resourceVersion && pre.resourceVersion !== obj.metadata.resourceVersion) {
      throw conflict(
        def.plural,
        def.group,
        name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${obj.metadata.resourceVersion}`,
      );
    }
    if (
      opts.gracePeriodSeconds !== undefined &&
      (!Number.isInteger(opts.gracePeriodSeconds) || opts.gracePeriodSeconds < 0)
    ) {
      throw invalid('DeleteOptions', '', '', [
        {
          reason: 'FieldValueInvalid',
          message: `Invalid value: ${opts.gracePeriodSeconds}: must be >= 0`,
          field: 'gracePeriodSeconds',
        },
      ]);
    }
    let grace = 0;
    if (def.kind === 'Pod' && def.group === '') {
      const phase = getPath(obj, 'status.phase');
      const bound = Boolean(getPath(obj, 'spec.nodeName'));
      grace =
        opts.gracePeriodSeconds ??
        (getPath(obj, 'spec.terminationGracePeriodSeconds') as number | undefined) ??
        30;
      // Unbound and finished pods have no kubelet to wait for.
      if (!bound || phase === 'Succeeded' || phase === 'Failed') grace = 0;
    }
    const finalizers = obj.metadata.finalizers ?? [];
    const key = storageKey(def);
    const ns = obj.metadata.namespace ?? '';
    if (grace === 0 && finalizers.length === 0 && def.kind !== 'Namespace') {
      if (opts.dryRun) return { deleted: true, obj };
      return { deleted: true, obj: this.store.remove(key, ns, name)!.obj };
    }
    // Graceful or finalizer-held deletion: mark the object and let its owner finish the job.
    const existingGrace = obj.metadata.deletionGracePeriodSeconds;
    if (obj.metadata.deletionTimestamp && existingGrace !== undefined && existingGrace <= grace) {
      return { deleted: false, obj };
    }
    const next: KObject = {
      ...obj,
      metadata: {
        ...obj.metadata,
        deletionTimestamp: isoSeconds(Date.now() + grace * 1000),
        deletionGracePeriodSeconds: grace,
      },
    };
    if (def.kind === 'Namespace') next.status = { ...((obj.status as object) ?? {}), phase: 'Terminating' };
    if (opts.dryRun) return { deleted: false, obj: next };
    return { deleted: false, obj: this.store.put(key, next, 'MODIFIED', obj).obj };
  }

  /** An object marked for deletion whose finalizers are gone (and whose grace has been waived). */
  private finalisable(def: ResourceDef, obj: KObject): boolean {
    if (!obj.metadata.deletionTimestamp || (obj.metadata.finalizers ?? []).length > 0) return false;
    if (def.kind === 'Namespace') return false;
    return (obj.metadata.deletionGracePeriodSeconds ?? 0) === 0;
  }
}
