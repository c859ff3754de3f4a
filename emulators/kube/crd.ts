/**
 * CustomResourceDefinitions: validation, the Established/NamesAccepted status the real server
 * sets, and the controller that turns each served version into a resource table entry (and drops
 * the entries and every custom object when the CRD is deleted).
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { fieldError, type StatusCause } from './api-errors.ts';
import { deepEqual, getPath, isPlainObject, nowIso, type KObject } from './object.ts';
import { resource, storageKey, type ResourceDef, type ResourceRegistry } from './resources.ts';
import type { Store } from './store.ts';
import { ageColumn, jsonPathColumn, type ColumnDef } from './tables.ts';

interface CrdVersion {
  name: string;
  served: boolean;
  storage: boolean;
  schema?: { openAPIV3Schema?: Record<string, unknown> };
  subresources?: { status?: object; scale?: object };
  additionalPrinterColumns?: {
    name: string;
    type: string;
    jsonPath: string;
    priority?: number;
    description?: string;
  }[];
}

interface CrdSpec {
  group: string;
  scope: string;
  names: {
    plural: string;
    singular?: string;
    kind: string;
    listKind?: string;
    shortNames?: string[];
    categories?: string[];
  };
  versions: CrdVersion[];
}

export const CRD_KEY = 'apiextensions.k8s.io/customresourcedefinitions';

export function validateCrd(obj: KObject, old?: KObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const spec = obj.spec as Partial<CrdSpec> | undefined;
  if (!isPlainObject(spec)) return [fieldError('Required', 'spec', '')];
  if (typeof spec.group !== 'string' || spec.group === '')
    causes.push(fieldError('Required', 'spec.group', ''));
  else if (!spec.group.includes('.'))
    causes.push(fieldError('Invalid', 'spec.group', 'should be a domain with at least one dot', spec.group));
  const names = spec.names;
  if (!isPlainObject(names)) causes.push(fieldError('Required', 'spec.names', ''));
  else {
    if (!names.plural) causes.push(fieldError('Required', 'spec.names.plural', ''));
    if (!names.kind) causes.push(fieldError('Required', 'spec.names.kind', ''));
  }
  if (spec.scope !== 'Namespaced' && spec.scope !== 'Cluster') {
    causes.push(
      fieldError('NotSupported', 'spec.scope', 'supported values: "Cluster", "Namespaced"', spec.scope ?? ''),
    );
  }
  if (!Array.isArray(spec.versions) || spec.versions.length === 0)
    causes.push(
      fieldError('Required', 'spec.versions', 'must have exactly one version marked as storage version'),
    );
  else {
    if (spec.versions.filter((v) => v?.storage).length !== 1) {
      causes.push(
        fieldError(
          'Invalid',
          'spec.versions',
          'must have exactly one version marked as storage version',
          spec.versions.map((v) => v?.name),
        ),
      );
    }
    spec.versions.forEach((v, i) => {
      if (!v || typeof v.name !== 'string' || v.name === '')
        causes.push(fieldError('Required', `spec.versions[${i}].name`, ''));
    });
  }
  if (names?.plural && spec.group && obj.metadata.name !== `${names.plural}.${spec.group}`) {
    causes.push(
      fieldError('Invalid', 'metadata.name', 'must be spec.names.plural+"."+spec.group', obj.metadata.name),
    );
  }
  if (old) {
    if (getPath(old, 'spec.group') !== spec.group)
      causes.push(fieldError('Invalid', 'spec.group', 'field is immutable', spec.group));
    if (getPath(old, 'spec.names.plural') !== names?.plural)
      causes.push(fieldError('Invalid', 'spec.names.plural', 'field is immutable', names?.plural));
  }
  return causes;
}

/** What the real apiextensions controller writes into status once the names are accepted. */
export function establish(obj: KObject): void {
  const spec = obj.spec as CrdSpec;
  const now = nowIso();
  const names = {
    ...spec.names,
    singular: spec.names.singular || spec.names.kind.toLowerCase(),
    listKind: spec.names.listKind || `${spec.names.kind}List`,
  };
  spec.names = names;
  const conds = [
    {
      type: 'NamesAccepted',
      status: 'True',
      reason: 'NoConflicts',
      message: 'no conflicts found',
      lastTransitionTime: now,
    },
    {
      type: 'Established',
      status: 'True',
      reason: 'InitialNamesAccepted',
      message: 'the initial names have been accepted',
      lastTransitionTime: now,
    },
  ];
  const old = obj.status as { conditions?: unknown; acceptedNames?: unknown } | undefined;
  obj.status = {
    conditions: old && deepEqual(old.acceptedNames, names) ? old.conditions : conds,
    acceptedNames: names,
    storedVersions: spec.versions.filter((v) => v.storage).map((v) => v.name),
  };
}

function columnsFor(v: CrdVersion): ColumnDef[] {
  if (!v.additionalPrinterColumns?.length) return [ageColumn];
  return v.additionalPrinterColumns.map((c) =>
    jsonPathColumn(
      c.name,
      (['integer', 'number', 'boolean', 'date'].includes(c.type) ? c.type : 'string') as ColumnDef['type'],
      c.jsonPath,
      c.priority ?? 0,
      c.description ?? '',
    ),
  );
}

const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, verbose: true });

/** Drops what JSON Schema does not know from a structural schema (x-kubernetes-* keywords). */
function jsonSchemaOf(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(jsonSchemaOf);
  if (!isPlainObject(schema)) return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k.startsWith('x-kubernetes-')) continue;
    out[k] =
      k === 'properties' && isPlainObject(v)
        ? Object.fromEntries(Object.entries(v).map(([pk, pv]) => [pk, jsonSchemaOf(pv)]))
        : jsonSchemaOf(v);
  }
  return out;
}

/**
 * A validator for a version's openAPIV3Schema: types, required fields, enums, bounds and
 * patterns, reported like the real server (`spec.x: Invalid value: "integer": spec.x in body must
 * be of type string: "integer"`). Unknown fields are not pruned.
 */
function schemaValidator(schema: Record<string, unknown> | undefined): ResourceDef['validate'] {
  if (!schema) return undefined;
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(jsonSchemaOf(schema) as object);
  } catch {
    return undefined;
  }
  return (obj) => {
    // metadata is the server's business, not the schema's.
    const { metadata: _m, ...rest } = obj;
    if (validate(rest)) return [];
    return (validate.errors ?? []).map((e: ErrorObject) => {
      const parts = e.instancePath.split('/').slice(1);
      if (e.keyword === 'required') parts.push(String(e.params.missingProperty));
      const field = parts.reduce(
        (acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p),
        '',
      );
      if (e.keyword === 'required') return fieldError('Required', field, '');
      if (e.keyword === 'type') {
        const actual = Array.isArray(e.data)
          ? 'array'
          : e.data === null
            ? 'null'
            : Number.isInteger(e.data)
              ? 'integer'
              : typeof e.data;
        return fieldError(
          'Invalid',
          field,
          `${field} in body must be of type ${String(e.params.type)}: "${actual}"`,
          actual,
        );
      }
      if (e.keyword === 'enum') {
        const allowed = (e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ');
        return fieldError('NotSupported', field, `supported values: ${allowed}`, e.data);
      }
      return fieldError('Invalid', field, `${field} in body ${e.message ?? 'is invalid'}`, e.data);
    });
  };
}

/** One resource table entry per served version of the CRD. */
function crdResources(crd: KObject): ResourceDef[] {
  const spec = crd.spec as CrdSpec;
  const storageVersion = spec.versions.find((v) => v.storage)?.name ?? spec.versions[0]!.name;
  return spec.versions
    .filter((v) => v.served)
    .map((v) => {
      const schema = v.schema?.openAPIV3Schema;
      const props = isPlainObject(schema?.properties) ? Object.keys(schema.properties) : undefined;
      const open = schema === undefined || schema['x-kubernetes-preserve-unknown-fields'] === true;
      return resource({
        group: spec.group,
        version: v.name,
        kind: spec.names.kind,
        plural: spec.names.plural,
        singular: spec.names.singular || spec.names.kind.toLowerCase(),
        shortNames: spec.names.shortNames ?? [],
        categories: spec.names.categories ?? [],
        namespaced: spec.scope === 'Namespaced',
        subresources: v.subresources?.status ? ['status'] : [],
        columns: columnsFor(v),
        mergeKeys: {},
        fields:
          open || !props ? undefined : props.filter((p) => !['apiVersion', 'kind', 'metadata'].includes(p)),
        custom: { crdName: crd.metadata.name!, storageVersion, schema },
        validate: schemaValidator(schema),
      });
    });
}

/** Keeps the resource table in step with stored CRDs. */
export class CrdController {
  private readonly served = new Map<string, ResourceDef[]>();

  constructor(
    private readonly registry: ResourceRegistry,
    private readonly store: Store,
  ) {}

  start(): () => void {
    return this.store.hub.subscribe(CRD_KEY, (ev) => {
      const name = ev.obj.metadata.name!;
      const old = this.served.get(name) ?? [];
      for (const d of old) this.registry.remove(d.group, d.version, d.plural);
      this.served.delete(name);
      if (ev.type === 'DELETED') {
        const key = old[0] ? storageKey(old[0]) : undefined;
        // After the current event is delivered: the custom objects go with their definition.
        if (key) queueMicrotask(() => this.store.removeAll(key));
        return;
      }
      const defs = crdResources(ev.obj);
      for (const d of defs) this.registry.add(d);
      this.served.set(name, defs);
    });
  }
}
