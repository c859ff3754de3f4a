/**
 * Turning a request body into an object the way the real server's decoder does: JSON or YAML,
 * apiVersion/kind defaulted from the URL and checked against it, type errors and unknown fields
 * reported (fieldValidation=Strict) as 400 BadRequest with the decoder's wording.
 */
import { parse as parseYaml } from 'yaml';
import { ApiError, badRequest } from './api-errors.ts';
import { isPlainObject, type KObject } from './object.ts';
import { decodeProtobufObject } from './protobuf.ts';
import { groupVersion, type ResourceDef } from './resources.ts';

export type FieldValidation = 'Strict' | 'Warn' | 'Ignore';

const METADATA_FIELDS = new Set([
  'name',
  'generateName',
  'namespace',
  'selfLink',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'labels',
  'annotations',
  'ownerReferences',
  'finalizers',
  'managedFields',
]);

/** Parses a body by its Content-Type; malformed input is a 400 naming the parser's complaint. */
export function parseBody(raw: Buffer, contentType: string | undefined): unknown {
  const ct = (contentType ?? 'application/json').split(';')[0]!.trim().toLowerCase();
  const text = raw.toString('utf8');
  if (text.trim() === '') throw badRequest('the body of the request was empty');
  if (ct === 'application/vnd.kubernetes.protobuf') return decodeProtobufObject(raw);
  if (ct.includes('protobuf') || ct.includes('cbor')) {
    throw new ApiError(
      415,
      'UnsupportedMediaType',
      `the emulator does not decode ${ct} request bodies; send JSON or YAML`,
    );
  }
  if (ct.includes('yaml')) {
    try {
      return parseYaml(text);
    } catch (e) {
      throw badRequest(`error converting YAML to JSON: yaml: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw badRequest(`couldn't get version/kind; json parse error: ${(e as Error).message}`);
  }
}

function typeName(v: unknown): string {
  if (Array.isArray(v)) return 'array';
  if (v === null) return 'null';
  return typeof v === 'object' ? 'object' : typeof v;
}

/**
 * Checks a decoded body against the endpoint's kind. Returns the object and the warnings to send
 * (`Warning` headers) under fieldValidation=Warn; unknown fields are dropped, like the real server.
 */
export function decodeObject(
  body: unknown,
  def: ResourceDef,
  validation: FieldValidation,
  expectKind = def.kind,
  expectVersion = groupVersion(def),
): { obj: KObject; warnings: string[] } {
  const asA = `${expectKind} in version "${def.version}" cannot be handled as a ${expectKind}`;
  if (!isPlainObject(body)) {
    throw badRequest(`${asA}: json: cannot unmarshal ${typeName(body)} into Go value of type struct`);
  }
  const obj = body as KObject;
  if (obj.apiVersion === undefined || obj.apiVersion === '') obj.apiVersion = expectVersion;
  if (obj.kind === undefined || obj.kind === '') obj.kind = expectKind;
  if (obj.apiVersion !== expectVersion) {
    throw badRequest(
      `the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${expectVersion})`,
    );
  }
  if (obj.kind !== expectKind) {
    throw badRequest(
      `${asA}: the kind in the data (${String(obj.kind)}) does not match the expected kind (${expectKind})`,
    );
  }
  if (obj.metadata === undefined || obj.metadata === null) obj.metadata = {};
  const typeError = (field: string, v: unknown, want: string) =>
    badRequest(`${asA}: json: cannot unmarshal ${typeName(v)} into Go struct field ${field} of type ${want}`);
  if (!isPlainObject(obj.metadata)) throw typeError('.metadata', obj.metadata, 'v1.ObjectMeta');
  const meta = obj.metadata;
  for (const f of ['name', 'generateName', 'namespace', 'uid', 'resourceVersion']) {
    if (meta[f] !== undefined && meta[f] !== null && typeof meta[f] !== 'string')
      throw typeError(`ObjectMeta.metadata.${f}`, meta[f], 'string');
  }
  for (const f of ['labels', 'annotations']) {
    const m = meta[f];
    if (m === undefined || m === null) continue;
    if (!isPlainObject(m)) throw typeError(`ObjectMeta.metadata.${f}`, m, 'map[string]string');
    for (const v of Object.values(m))
      if (typeof v !== 'string') throw typeError(`ObjectMeta.metadata.${f}`, v, 'string');
  }
  if (meta.finalizers !== undefined && meta.finalizers !== null) {
    if (!Array.isArray(meta.finalizers) || meta.finalizers.some((f) => typeof f !== 'string')) {
      throw typeError('ObjectMeta.metadata.finalizers', meta.finalizers, '[]string');
    }
  }
  const unknown: string[] = [];
  for (const k of Object.keys(meta)) {
    if (!METADATA_FIELDS.has(k)) {
      unknown.push(`metadata.${k}`);
      delete meta[k];
    }
  }
  if (def.fields) {
    const allowed = new Set(['apiVersion', 'kind', 'metadata', ...def.fields]);
    for (const k of Object.keys(obj)) {
      if (!allowed.has(k)) {
        unknown.push(k);
        delete obj[k];
      }
    }
  }
  if (unknown.length && validation === 'Strict') {
    const list = unknown.map((u) => `unknown field "${u}"`).join(', ');
    throw badRequest(`${asA}: strict decoding error: ${list}`);
  }
  return { obj, warnings: validation === 'Warn' ? unknown.map((u) => `unknown field "${u}"`) : [] };
}

export function fieldValidationOf(query: URLSearchParams): FieldValidation {
  const v = query.get('fieldValidation');
  if (v === null || v === '') return 'Warn';
  if (v === 'Strict' || v === 'Warn' || v === 'Ignore') return v;
  throw badRequest(`fieldValidation parameter unsupported: ${v}; must be one of: Strict, Warn, Ignore`);
}
