import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { root, type KubeObject } from './render.ts';

/**
 * Validates rendered objects against the Kubernetes OpenAPI schemas (the ones `kubernetes-models`
 * ships for every built-in kind) and custom resources against their CRD's openAPIV3Schema in
 * manifest/. Returns one message per problem, naming the object and the field.
 */
export async function validateKubeObject(obj: KubeObject): Promise<string[]> {
  const id = `${obj.kind}/${obj.metadata?.name ?? '?'}`;
  const problems: string[] = [];
  const name = obj.metadata?.name ?? '';
  // Most kinds need DNS-subdomain names; RBAC objects only need a path segment (mpdev uses ':').
  const rbac = obj.apiVersion.startsWith('rbac.authorization.k8s.io/');
  const nameRe = rbac ? /^[^/%]+$/ : /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
  if (!nameRe.test(name) || name.length > 253)
    problems.push(`${id}: metadata.name "${name}" is not a valid name`);
  for (const [k, v] of Object.entries(obj.metadata?.labels ?? {})) {
    if (typeof v !== 'string' || v.length > 63 || !/^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v))
      problems.push(`${id}: label ${k}="${String(v)}" is not a valid label value`);
  }
  if (obj.apiVersion === 'app.k8s.io/v1beta1') return problems.concat(validateWithCrd(obj, id));
  const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
  const modulePath = `kubernetes-models/${group ? `${group}/` : ''}${version}/${obj.kind}`;
  let mod: Record<string, new (o: unknown) => { validate(): void }>;
  try {
    mod = (await import(modulePath)) as typeof mod;
  } catch {
    return problems.concat(`${id}: no Kubernetes schema for ${obj.apiVersion} ${obj.kind}`);
  }
  try {
    new mod[obj.kind]!(obj).validate();
  } catch (e) {
    problems.push(`${id}: ${(e as Error).message}`);
  }
  return problems;
}

let crdValidator: (((o: unknown) => boolean) & { errors?: unknown }) | undefined;

function validateWithCrd(obj: KubeObject, id: string): string[] {
  if (!crdValidator) {
    const crd = parseYaml(readFileSync(join(root, 'manifest/app-crd.yaml'), 'utf8')) as {
      spec: { versions: Array<{ name: string; schema: { openAPIV3Schema: object } }> };
    };
    const schema = crd.spec.versions.find((v) => v.name === 'v1beta1')!.schema.openAPIV3Schema;
    // Only fields the CRD declares are kept by the API server; refuse the rest so none is lost.
    crdValidator = new Ajv({ strict: false, allErrors: true }).compile(closeObjects(schema) as object);
  }
  if (crdValidator(obj)) return [];
  return (
    (crdValidator.errors ?? []) as Array<{ instancePath: string; message?: string; params: object }>
  ).map((e) => `${id}: ${e.instancePath || '(root)'} ${e.message ?? ''} ${JSON.stringify(e.params)}`);
}

/** A structural schema with additionalProperties: false wherever properties are listed. */
function closeObjects(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(closeObjects);
  if (!s || typeof s !== 'object') return s;
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s)) o[k] = closeObjects(v);
  if (o.properties && !('additionalProperties' in o) && !o['x-kubernetes-preserve-unknown-fields'])
    o.additionalProperties = false;
  // metadata is validated by the API server itself, not the CRD.
  if (o.properties && (o.properties as Record<string, unknown>).metadata)
    (o.properties as Record<string, unknown>).metadata = { type: 'object' };
  return o;
}
