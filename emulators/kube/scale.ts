/**
 * The `scale` subresource of deployments and statefulsets: an autoscaling/v1 Scale view of
 * spec.replicas (what `kubectl scale` reads and patches). Writing it changes only spec.replicas.
 */
import { badRequest, conflict, STALE_OBJECT } from './api-errors.ts';
import { getPath, isPlainObject, type KObject } from './object.ts';
import { jsonPatch, mergePatch, strategicMergePatch, type PatchType } from './patch.ts';

export function scaleOf(obj: KObject): KObject {
  const matchLabels = (getPath(obj, 'spec.selector.matchLabels') ?? {}) as Record<string, string>;
  const m = obj.metadata;
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      creationTimestamp: m.creationTimestamp,
    },
    spec: { replicas: (getPath(obj, 'spec.replicas') as number | undefined) ?? 1 },
    status: {
      replicas: (getPath(obj, 'status.replicas') as number | undefined) ?? 0,
      selector: Object.entries(matchLabels)
        .map(([k, v]) => `${k}=${v}`)
        .join(','),
    },
  };
}

/** The object with spec.replicas taken from a Scale; a stale resourceVersion is 409. */
export function applyScale(obj: KObject, scale: unknown, plural: string, group: string): KObject {
  if (!isPlainObject(scale)) throw badRequest('the body must be an autoscaling/v1 Scale');
  const rv = getPath(scale, 'metadata.resourceVersion');
  if (rv && rv !== obj.metadata.resourceVersion)
    throw conflict(plural, group, obj.metadata.name!, STALE_OBJECT);
  const replicas = getPath(scale, 'spec.replicas');
  if (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0) {
    throw badRequest(`Scale.spec.replicas must be a non-negative integer, got ${JSON.stringify(replicas)}`);
  }
  return { ...obj, spec: { ...((obj.spec as object) ?? {}), replicas } };
}

export function patchScale(obj: KObject, type: PatchType, body: unknown): unknown {
  const view = scaleOf(obj);
  switch (type) {
    case 'json':
      return jsonPatch(view, body);
    case 'merge':
    case 'apply':
      return mergePatch(view, body);
    case 'strategic':
      return strategicMergePatch(view, body, {});
  }
}
