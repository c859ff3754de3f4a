/**
 * The OpenAPI v3 documents kubectl create/apply download: an index of group/versions and, per
 * group/version, a PATCH operation for each kind carrying x-kubernetes-group-version-kind and a
 * fieldValidation parameter. That is what tells kubectl the server validates fields itself, so
 * it sends fieldValidation=Strict instead of needing full schemas.
 */
import { createHash } from 'node:crypto';
import { KUBE_VERSION } from './discovery.ts';
import type { ResourceDef, ResourceRegistry } from './resources.ts';

function operation(def: ResourceDef, verb: string, action: string): object {
  return {
    operationId: `${verb}${def.kind}`,
    'x-kubernetes-action': action,
    'x-kubernetes-group-version-kind': { group: def.group, version: def.version, kind: def.kind },
    parameters: [
      { name: 'dryRun', in: 'query', schema: { type: 'string', uniqueItems: true } },
      { name: 'fieldManager', in: 'query', schema: { type: 'string', uniqueItems: true } },
      { name: 'fieldValidation', in: 'query', schema: { type: 'string', uniqueItems: true } },
    ],
    responses: { '200': { description: 'OK' } },
  };
}

function pathsFor(def: ResourceDef): Record<string, object> {
  const prefix = def.group ? `/apis/${def.group}/${def.version}` : `/api/${def.version}`;
  const collection = def.namespaced
    ? `${prefix}/namespaces/{namespace}/${def.plural}`
    : `${prefix}/${def.plural}`;
  const item = `${collection}/{name}`;
  const paths: Record<string, object> = {
    [collection]: { post: operation(def, 'create', 'post') },
  };
  if (!def.virtual) {
    paths[item] = { patch: operation(def, 'patch', 'patch'), put: operation(def, 'replace', 'put') };
    for (const sub of def.subresources.filter((s) => s === 'status' || s === 'approval')) {
      paths[`${item}/${sub}`] = { patch: operation(def, 'patch', 'patch') };
    }
  } else {
    // Create-only kinds still get the PATCH marker kubectl looks for to trust server-side validation.
    paths[item] = { patch: operation(def, 'patch', 'patch') };
  }
  return paths;
}

function schemaFor(def: ResourceDef): object {
  const schema = def.custom?.schema ?? { type: 'object', 'x-kubernetes-preserve-unknown-fields': true };
  return {
    ...schema,
    'x-kubernetes-group-version-kind': [{ group: def.group, version: def.version, kind: def.kind }],
  };
}

/** Caches the documents and their hashes until the registry changes. */
export class OpenApiDocuments {
  private cache: Map<string, { body: string; hash: string }> | undefined;

  constructor(private readonly registry: ResourceRegistry) {
    registry.onChange(() => (this.cache = undefined));
  }

  private build(): Map<string, { body: string; hash: string }> {
    if (this.cache) return this.cache;
    const out = new Map<string, { body: string; hash: string }>();
    for (const gv of this.registry.groupVersions()) {
      const defs = this.registry.inGroupVersion(gv);
      const paths: Record<string, object> = {};
      const schemas: Record<string, object> = {};
      for (const d of defs.filter((x) => !x.metrics)) {
        Object.assign(paths, pathsFor(d));
        schemas[
          `${d.group ? d.group.split('.').reverse().join('.') : 'io.k8s.api.core'}.${d.version}.${d.kind}`
        ] = schemaFor(d);
      }
      const body = JSON.stringify({
        openapi: '3.0.0',
        info: { title: 'Kubernetes', version: KUBE_VERSION },
        paths,
        components: { schemas },
      });
      const hash = createHash('sha512').update(body).digest('hex').slice(0, 64).toUpperCase();
      out.set(gv === 'v1' ? 'api/v1' : `apis/${gv}`, { body, hash });
    }
    this.cache = out;
    return out;
  }

  index(): object {
    const paths: Record<string, object> = {};
    for (const [p, { hash }] of this.build())
      paths[p] = { serverRelativeURL: `/openapi/v3/${p}?hash=${hash}` };
    return { paths };
  }

  /** The document for `api/v1` or `apis/<group>/<version>`, undefined when not served. */
  document(path: string): string | undefined {
    return this.build().get(path)?.body;
  }
}

/**
 * An OpenAPI v2 document with no definitions. kubectl fetches v2 only to validate kinds the v3
 * documents do not describe; an empty schema makes it skip validation so an unknown kind fails
 * with "no matches for kind", as against a real server, instead of "failed to download openapi".
 * kubectl asks for protobuf (gnostic openapi_v2.Document): swagger (field 1) and info (field 2).
 */
export function openApiV2(accept: string | undefined): { contentType: string; body: Buffer } {
  if ((accept ?? '').includes('protobuf')) {
    const str = (field: number, s: string) =>
      Buffer.concat([Buffer.from([(field << 3) | 2, Buffer.byteLength(s)]), Buffer.from(s)]);
    const info = Buffer.concat([str(1, 'Kubernetes'), str(2, KUBE_VERSION)]);
    const body = Buffer.concat([str(1, '2.0'), Buffer.from([(2 << 3) | 2, info.length]), info]);
    return { contentType: 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf', body };
  }
  const json = JSON.stringify({
    swagger: '2.0',
    info: { title: 'Kubernetes', version: KUBE_VERSION },
    paths: {},
    definitions: {},
  });
  return { contentType: 'application/json', body: Buffer.from(json) };
}
