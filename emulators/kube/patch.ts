/**
 * The four PATCH content types: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic
 * merge patch with the list merge keys of the resource table, and server-side apply (simplified:
 * the applied configuration is strategically merged into the live object, no field ownership).
 */
import fastJsonPatch from 'fast-json-patch';
import { ApiError, badRequest, unsupportedMediaType } from './api-errors.ts';
import { isPlainObject } from './object.ts';

const { applyPatch, JsonPatchError } = fastJsonPatch;

export type PatchType = 'json' | 'merge' | 'strategic' | 'apply';

export function patchTypeOf(contentType: string | undefined): PatchType {
  const ct = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  switch (ct) {
    case 'application/json-patch+json':
      return 'json';
    case 'application/merge-patch+json':
      return 'merge';
    case 'application/strategic-merge-patch+json':
      return 'strategic';
    case 'application/apply-patch+yaml':
    case 'application/apply-patch+json':
      return 'apply';
    default:
      throw unsupportedMediaType(ct);
  }
}

/** RFC 7386: objects merge recursively, null deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const result: Record<string, unknown> = isPlainObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete result[k];
    else result[k] = mergePatch(result[k], v);
  }
  return result;
}

const JSON_PATCH_UNPROCESSABLE = new Set([
  'TEST_OPERATION_FAILED',
  'OPERATION_PATH_UNRESOLVABLE',
  'OPERATION_PATH_CANNOT_ADD',
  'OPERATION_FROM_UNRESOLVABLE',
  'OPERATION_PATH_ILLEGAL_ARRAY_INDEX',
  'OPERATION_VALUE_OUT_OF_BOUNDS',
]);

/** RFC 6902 on a copy of `doc`; malformed patches are 400, patches that do not apply are 422. */
export function jsonPatch(doc: unknown, patch: unknown): unknown {
  if (!Array.isArray(patch)) {
    throw badRequest('json: cannot unmarshal object into Go value of type jsonpatch.Patch');
  }
  try {
    return applyPatch(structuredClone(doc), patch as fastJsonPatch.Operation[], true, true).newDocument;
  } catch (e) {
    if (e instanceof JsonPatchError) {
      const op = e.operation as { op?: string; path?: string } | undefined;
      const where = op ? `${op.op} operation on path "${op.path}"` : 'operation';
      const message = `the ${where} failed: ${e.message.split('\n')[0]}`;
      if (JSON_PATCH_UNPROCESSABLE.has(e.name)) throw new ApiError(422, 'Invalid', message);
      throw badRequest(message);
    }
    throw badRequest(`invalid JSON patch: ${(e as Error).message}`);
  }
}

function isDirectiveKey(k: string): boolean {
  return (
    k === '$patch' ||
    k === '$retainKeys' ||
    k.startsWith('$setElementOrder/') ||
    k.startsWith('$deleteFromPrimitiveList/')
  );
}

/** A patch value inserted wholesale keeps none of the patch directives. */
function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v)) {
    return v
      .filter((e) => !(isPlainObject(e) && e.$patch !== undefined && Object.keys(e).length === 1))
      .map(stripDirectives);
  }
  if (!isPlainObject(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v)) {
    if (isDirectiveKey(k) || val === null) continue;
    out[k] = stripDirectives(val);
  }
  return out;
}

const DELETE = Symbol('delete');

function smpMap(
  original: unknown,
  patch: Record<string, unknown>,
  keys: Record<string, string>,
  path: string,
  apply: boolean,
): unknown {
  const directive = patch.$patch;
  if (directive === 'delete') return DELETE;
  if (directive === 'replace') return stripDirectives(patch);
  if (directive !== undefined && directive !== 'merge')
    throw badRequest(`unknown patch type: ${String(directive)} in map`);
  const result: Record<string, unknown> = isPlainObject(original) ? { ...original } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k === '$retainKeys' || k.startsWith('$setElementOrder/')) continue;
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const field = k.slice('$deleteFromPrimitiveList/'.length);
      if (!Array.isArray(v)) throw badRequest(`invalid patch: ${k} must be a list`);
      if (Array.isArray(result[field]))
        result[field] = (result[field] as unknown[]).filter((x) => !v.includes(x));
      continue;
    }
    const child = path ? `${path}.${k}` : k;
    if (v === null) {
      if (!apply) delete result[k];
      continue;
    }
    if (isPlainObject(v)) {
      const merged = smpMap(result[k], v, keys, child, apply);
      if (merged === DELETE) delete result[k];
      else result[k] = merged;
    } else if (Array.isArray(v)) {
      result[k] = smpList(result[k], v, keys, child, apply);
    } else {
      result[k] = v;
    }
  }
  if (Array.isArray(patch.$retainKeys)) {
    const retain = new Set(patch.$retainKeys as string[]);
    for (const k of Object.keys(result)) if (!retain.has(k)) delete result[k];
  }
  return result;
}

function smpList(
  original: unknown,
  patch: unknown[],
  keys: Record<string, string>,
  path: string,
  apply: boolean,
): unknown[] {
  const mergeKey = keys[path];
  const replaceAll = patch.some((e) => isPlainObject(e) && e.$patch === 'replace');
  if (mergeKey === undefined || replaceAll || !Array.isArray(original)) {
    return stripDirectives(patch) as unknown[];
  }
  if (mergeKey === '') {
    // A set of primitives (finalizers): union, keeping the existing order.
    const out = [...original];
    for (const e of patch) if (!out.some((x) => x === e)) out.push(e);
    return out;
  }
  const out = [...original];
  for (const e of patch) {
    if (!isPlainObject(e))
      throw badRequest(`invalid patch: elements of ${path} must be objects with "${mergeKey}"`);
    const keyValue = e[mergeKey];
    if (keyValue === undefined)
      throw badRequest(`map: ${JSON.stringify(e)} does not contain declared merge key: ${mergeKey}`);
    const idx = out.findIndex((x) => isPlainObject(x) && x[mergeKey] === keyValue);
    if (e.$patch === 'delete') {
      if (idx >= 0) out.splice(idx, 1);
      continue;
    }
    if (idx >= 0) {
      const merged = smpMap(out[idx], e, keys, `${path}[]`, apply);
      if (merged === DELETE) out.splice(idx, 1);
      else out[idx] = merged;
    } else {
      out.push(stripDirectives(e));
    }
  }
  return out;
}

/** Strategic merge patch: maps merge, lists with a merge key merge by that key, others replace. */
export function strategicMergePatch(
  original: unknown,
  patch: unknown,
  keys: Record<string, string>,
): unknown {
  if (!isPlainObject(patch))
    throw badRequest('invalid strategic merge patch: the patch must be a JSON object');
  const out = smpMap(original, patch, keys, '', false);
  if (out === DELETE) throw badRequest('invalid strategic merge patch: $patch: delete at the top level');
  return out;
}

/**
 * Server-side apply, simplified: the applied configuration is merged into the live object like a
 * strategic merge patch, except that a null in the configuration leaves the live field alone.
 * Fields the configuration stops mentioning are kept (no managedFields bookkeeping).
 */
export function applyConfiguration(live: unknown, config: unknown, keys: Record<string, string>): unknown {
  if (!isPlainObject(config)) throw badRequest('invalid apply configuration: must be an object');
  return smpMap(live, config, keys, '', true);
}
