/**
 * The HTTP front of the emulator: routes Kubernetes API paths to the resource table and answers
 * with the real server's shapes (objects, lists, Tables, watch streams, Status errors).
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Counter } from 'prom-client';
import type { Logger } from '../../lib/log.ts';
import { reviewAccess, type AccessRules } from './access-review.ts';
import {
  ApiError,
  badRequest,
  conflict,
  internalError,
  invalid,
  fieldError,
  methodNotAllowed,
  notFound,
  resourceNotFound,
} from './api-errors.ts';
import { stampRequester } from './csr.ts';
import { decodeObject, fieldValidationOf, parseBody } from './decode.ts';
import { apiGroup, apiGroupList, apiResourceList, apiVersions, SERVER_VERSION } from './discovery.ts';
import { readBody, sendError, sendJson, sendText } from './http-io.ts';
import type { NamespaceLifecycle } from './namespaces.ts';
import { clone, getPath, isoSeconds, isPlainObject, nowIso, type KObject } from './object.ts';
import type { DeleteOptions, ObjectService } from './objects.ts';
import { openApiV2, type OpenApiDocuments } from './openapi.ts';
import { patchTypeOf } from './patch.ts';
import { kubeletLogUrl, proxyLogs } from './pod-log.ts';
import { kubeletStreamUrl, proxyUpgrade, rejectUpgrade, STREAM_SUBRESOURCES } from './pod-stream.ts';
import { groupVersion, storageKey, type ResourceDef, type ResourceRegistry } from './resources.ts';
import { nodeMetrics, podMetrics } from './metrics-api.ts';
import { applyScale, patchScale, scaleOf } from './scale.ts';
import { bindPod } from './scheduler.ts';
import { parseFieldSelector, parseLabelSelector } from './selectors.ts';
import { compareKeys, type Store, type Stored } from './store.ts';
import { columnDefinitions, tableRow } from './tables.ts';
import { ADMIN_USER, serviceAccountUser, type TokenIssuer, type UserInfo } from './tokens.ts';
import { serveWatch, watchTimeout, type WatchOptions, type WatchSettings } from './watch-handler.ts';

export interface ServerDeps {
  registry: ResourceRegistry;
  store: Store;
  objects: ObjectService;
  namespaces: NamespaceLifecycle;
  openapi: OpenApiDocuments;
  tokens: TokenIssuer;
  rules: AccessRules;
  watch: WatchSettings;
  log: Logger;
  requests: Counter<'verb' | 'resource' | 'code'>;
  watchEvents: Counter;
  metricsText: () => Promise<{ contentType: string; body: string }>;
  serverAddress: () => string;
}

interface Route {
  def: ResourceDef;
  namespace?: string;
  name?: string;
  sub?: string;
  watch: boolean;
}

const UNAUTHORIZED = new ApiError(401, 'Unauthorized', 'Unauthorized');

/** What the real server answers to a Binding: a Status, not the Binding. */
const BINDING_CREATED = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 };

function wantsTable(req: IncomingMessage): boolean {
  const accept = req.headers.accept ?? '';
  return /as=Table/.test(accept) && /g=meta\.k8s\.io/.test(accept);
}

/** Serves an object in the version the URL names (only multi-version CRDs ever differ). */
function serveJson(def: ResourceDef, obj: KObject, json: string): string {
  if (def.view) return JSON.stringify(def.view.fromStorage(obj));
  const gv = groupVersion(def);
  if (obj.apiVersion === gv) return json;
  return JSON.stringify({ ...obj, apiVersion: gv });
}

/** Serves an object just written, which has no stored JSON at hand. */
function serveWritten(def: ResourceDef, obj: KObject): string {
  return serveJson(def, obj, JSON.stringify(obj));
}

function serveObject(def: ResourceDef, obj: KObject): KObject {
  if (def.view) return def.view.fromStorage(obj);
  const gv = groupVersion(def);
  return obj.apiVersion === gv || obj.apiVersion === undefined ? obj : { ...obj, apiVersion: gv };
}

interface ContinueToken {
  rv: number;
  ns: string;
  name: string;
}

function decodeContinue(token: string): ContinueToken {
  try {
    const t = JSON.parse(Buffer.from(token, 'base64url').toString()) as ContinueToken;
    if (typeof t.rv === 'number' && typeof t.ns === 'string' && typeof t.name === 'string') return t;
  } catch {
    // fall through
  }
  throw badRequest(
    'continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)',
  );
}

export interface Handlers {
  request: (req: IncomingMessage, res: ServerResponse) => void;
  /** For the server's `upgrade` event: exec, attach and portforward streams. */
  upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
}

export function createHandler(deps: ServerDeps): Handlers {
  const { registry, store, objects, log } = deps;

  function authenticate(req: IncomingMessage): UserInfo {
    const auth = req.headers.authorization;
    if (!auth?.startsWith('Bearer ')) return ADMIN_USER;
    const token = auth.slice(7).trim();
    if (!deps.tokens.isOurs(token)) return ADMIN_USER;
    const claims = deps.tokens.verify(token);
    if ('error' in claims) throw UNAUTHORIZED;
    return serviceAccountUser(claims);
  }

  /** The Node a pod is bound to, if it is bound and the Node exists. */
  function nodeOf(pod: KObject): KObject | undefined {
    const nodeName = getPath(pod, 'spec.nodeName') as string | undefined;
    return nodeName ? store.get('/nodes', '', nodeName)?.obj : undefined;
  }

  function parseRoute(segs: string[], group: string, version: string, query: URLSearchParams): Route {
    let watch = query.get('watch') === 'true' || query.get('watch') === '1';
    if (segs[0] === 'watch') {
      watch = true;
      segs = segs.slice(1);
    }
    if (segs.length === 0) throw resourceNotFound();
    if (segs[0] === 'namespaces' && segs.length >= 3) {
      const def = registry.get(group, version, segs[2]!);
      if (def?.namespaced) {
        if (segs.length > 5) throw resourceNotFound();
        return { def, namespace: segs[1], name: segs[3], sub: segs[4], watch };
      }
      if (segs.length === 3 && group === '' && !def) {
        return { def: registry.get('', 'v1', 'namespaces')!, name: segs[1], sub: segs[2], watch };
      }
      throw resourceNotFound();
    }
    const def = registry.get(group, version, segs[0]!);
    if (!def || segs.length > 3) throw resourceNotFound();
    if (def.namespaced && segs.length > 1) throw resourceNotFound();
    return { def, name: segs[1], sub: segs[2], watch };
  }

  function listObjects(
    route: Route,
    query: URLSearchParams,
  ): { items: Stored[]; rv: number; cont?: string; remaining?: number } {
    const { def } = route;
    const labels = parseLabelSelector(query.get('labelSelector'));
    const fields = parseFieldSelector(query.get('fieldSelector'), def.fieldSelectors);
    const limitRaw = query.get('limit');
    const limit = limitRaw ? Number(limitRaw) : 0;
    if (limitRaw && (!Number.isInteger(limit) || limit < 0)) throw badRequest(`invalid limit: ${limitRaw}`);
    const contRaw = query.get('continue');
    const rvParam = query.get('resourceVersion');
    const rvMatch = query.get('resourceVersionMatch');
    let snapshotRv = store.currentRv();
    let after: ContinueToken | undefined;
    if (contRaw) {
      if (rvParam)
        throw invalid('ListOptions', 'meta.k8s.io', '', [
          fieldError(
            'Forbidden',
            'resourceVersion',
            'specifying resource version is not allowed when using continue',
          ),
        ]);
      after = decodeContinue(contRaw);
      snapshotRv = after.rv;
    } else if (rvMatch === 'Exact' && rvParam) {
      if (!/^\d+$/.test(rvParam)) throw badRequest(`invalid resource version "${rvParam}"`);
      snapshotRv = Number(rvParam);
    }
    const all =
      snapshotRv === store.currentRv()
        ? store.list(storageKey(def), route.namespace)
        : store.listAt(storageKey(def), snapshotRv, route.namespace);
    const key = after ? ({ metadata: { namespace: after.ns, name: after.name } } as KObject) : undefined;
    const items: Stored[] = [];
    let cont: string | undefined;
    let remaining = 0;
    for (const s of all) {
      if (key && compareKeys(s.obj, key) <= 0) continue;
      if (!labels(s.obj) || !fields(s.obj)) continue;
      if (limit > 0 && items.length >= limit) {
        remaining++;
        continue;
      }
      items.push(s);
    }
    if (remaining > 0) {
      const last = items[items.length - 1]!.obj;
      cont = Buffer.from(
        JSON.stringify({ rv: snapshotRv, ns: last.metadata.namespace ?? '', name: last.metadata.name }),
      ).toString('base64url');
    }
    return { items, rv: snapshotRv, cont, remaining: cont ? remaining : undefined };
  }

  function tableJson(
    def: ResourceDef,
    objs: KObject[],
    meta: Record<string, unknown>,
    query: URLSearchParams,
    headers = true,
  ): string {
    const now = Date.now();
    const include = query.get('includeObject') ?? 'Metadata';
    const rows = objs.map((o) => {
      const row = tableRow(o, def.columns, now);
      if (include === 'Object') row.object = serveObject(def, o);
      else if (include === 'None') delete row.object;
      return row;
    });
    return JSON.stringify({
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      metadata: meta,
      columnDefinitions: headers ? columnDefinitions(def.columns) : null,
      rows,
    });
  }

  async function readObject(
    req: IncomingMessage,
    route: Route,
    query: URLSearchParams,
    kind?: string,
    apiVersion?: string,
  ) {
    const body = parseBody(await readBody(req), req.headers['content-type']);
    const decoded = decodeObject(body, route.def, fieldValidationOf(query), kind, apiVersion);
    // A view's objects are written in their storage shape.
    if (route.def.view && kind === undefined) decoded.obj = route.def.view.toStorage(decoded.obj);
    return decoded;
  }

  /** A PATCH body: an apply configuration is read as YAML, every other patch type as JSON. */
  async function readPatch(req: IncomingMessage) {
    const type = patchTypeOf(req.headers['content-type']);
    const body = parseBody(await readBody(req), type === 'apply' ? 'application/yaml' : 'application/json');
    return { type, body };
  }

  function deleteOptions(body: unknown, query: URLSearchParams): DeleteOptions {
    const opts: DeleteOptions = {};
    const b = isPlainObject(body) ? body : {};
    const grace = b.gracePeriodSeconds ?? query.get('gracePeriodSeconds') ?? undefined;
    if (grace !== undefined && grace !== null) {
      const n = Number(grace);
      if (!Number.isInteger(n)) throw badRequest(`invalid gracePeriodSeconds: ${String(grace)}`);
      opts.gracePeriodSeconds = n;
    }
    if (isPlainObject(b.preconditions))
      opts.preconditions = b.preconditions as DeleteOptions['preconditions'];
    const dry = Array.isArray(b.dryRun) ? b.dryRun : query.getAll('dryRun');
    opts.dryRun = dry.includes('All');
    return opts;
  }

  function deletedStatus(def: ResourceDef, obj: KObject): object {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Success',
      details: {
        name: obj.metadata.name,
        ...(def.group ? { group: def.group } : {}),
        kind: def.plural,
        uid: obj.metadata.uid,
      },
    };
  }

  async function handleVirtual(
    route: Route,
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
    user: UserInfo,
  ): Promise<void> {
    const { def } = route;
    const { obj } = await readObject(req, route, query);
    const body = obj as Record<string, unknown>;
    let out: Record<string, unknown>;
    switch (def.kind) {
      case 'TokenReview': {
        const token = getPath(body, 'spec.token');
        if (typeof token !== 'string' || token === '')
          throw invalid('TokenReview', 'authentication.k8s.io', '', [
            fieldError('Required', 'spec.token', ''),
          ]);
        out = {
          ...body,
          metadata: { creationTimestamp: null },
          status: tokenReview(token, (getPath(body, 'spec.audiences') ?? []) as string[]),
        };
        break;
      }
      case 'Binding':
        bind(route.namespace!, obj.metadata.name ?? '', body, query);
        sendJson(res, 201, BINDING_CREATED);
        return;
      case 'SelfSubjectReview':
        out = { ...body, metadata: { creationTimestamp: null }, status: { userInfo: user } };
        break;
      case 'SelfSubjectAccessReview':
        out = reviewAccess(deps.rules, def.kind, body, user);
        break;
      default:
        out = reviewAccess(deps.rules, def.kind, body, undefined, route.namespace);
    }
    sendJson(res, 201, out);
  }

  function tokenReview(token: string, audiences: string[]): Record<string, unknown> {
    const wanted = audiences.length ? audiences : [deps.tokens.issuer];
    // The kubeconfig's token (or any other bearer token) is the administrator.
    if (!deps.tokens.isOurs(token)) return { authenticated: true, user: ADMIN_USER, audiences: wanted };
    const claims = deps.tokens.verify(token);
    if ('error' in claims) return { authenticated: false, user: {}, error: claims.error };
    const matched = wanted.filter((a) => claims.aud.includes(a));
    if (matched.length === 0)
      return {
        authenticated: false,
        user: {},
        error: 'token audiences do not match the requested audiences',
      };
    const k = claims['kubernetes.io'];
    const sa = store.get('/serviceaccounts', k.namespace, k.serviceaccount.name);
    if (!sa || sa.obj.metadata.uid !== k.serviceaccount.uid) {
      return {
        authenticated: false,
        user: {},
        error: `service account ${k.namespace}/${k.serviceaccount.name} has been deleted`,
      };
    }
    if (k.pod) {
      const pod = store.get('/pods', k.namespace, k.pod.name);
      if (!pod || pod.obj.metadata.uid !== k.pod.uid)
        return { authenticated: false, user: {}, error: `pod ${k.namespace}/${k.pod.name} has been deleted` };
    }
    return { authenticated: true, user: serviceAccountUser(claims), audiences: matched };
  }

  async function tokenRequest(
    route: Route,
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
  ): Promise<void> {
    const saDef = route.def;
    const sa = objects.get(saDef, route.namespace!, route.name!).obj;
    const body = parseBody(await readBody(req), req.headers['content-type']);
    const { obj } = decodeObject(
      body,
      { ...saDef, fields: ['spec', 'status'] },
      fieldValidationOf(query),
      'TokenRequest',
      'authentication.k8s.io/v1',
    );
    const spec = (isPlainObject(obj.spec) ? obj.spec : {}) as Record<string, unknown>;
    const expiration = spec.expirationSeconds === undefined ? 3600 : Number(spec.expirationSeconds);
    if (!Number.isInteger(expiration) || expiration < 600) {
      throw invalid('TokenRequest', 'authentication.k8s.io', route.name!, [
        fieldError(
          'Invalid',
          'spec.expirationSeconds',
          'may not specify a duration less than 10 minutes',
          spec.expirationSeconds,
        ),
      ]);
    }
    const audiences =
      Array.isArray(spec.audiences) && spec.audiences.length
        ? (spec.audiences as string[])
        : [deps.tokens.issuer];
    const claims: Parameters<TokenIssuer['sign']>[0]['kubernetes.io'] = {
      namespace: route.namespace!,
      serviceaccount: { name: sa.metadata.name!, uid: sa.metadata.uid! },
    };
    const bound = spec.boundObjectRef as { kind?: string; name?: string; uid?: string } | undefined;
    if (bound) {
      const kind = bound.kind ?? '';
      if (!['Pod', 'Secret', 'Node'].includes(kind)) {
        throw invalid('TokenRequest', 'authentication.k8s.io', route.name!, [
          fieldError(
            'NotSupported',
            'spec.boundObjectRef.kind',
            'supported values: "Pod", "Secret", "Node"',
            kind,
          ),
        ]);
      }
      const plural = `${kind.toLowerCase()}s`;
      // Pods and secrets are bound in the service account's namespace; nodes have none.
      const target = store.get(`/${plural}`, kind === 'Node' ? '' : route.namespace!, bound.name ?? '');
      if (!target) throw notFound(plural, '', bound.name ?? '');
      if (bound.uid && bound.uid !== target.obj.metadata.uid) {
        throw new ApiError(
          409,
          'Conflict',
          `the UID in the bound object reference (${bound.uid}) does not match the UID in record. The object might have been deleted and then recreated`,
        );
      }
      const ref = { name: target.obj.metadata.name!, uid: target.obj.metadata.uid! };
      if (kind === 'Pod') {
        claims.pod = ref;
        const node = nodeOf(target.obj);
        if (node) claims.node = { name: node.metadata.name!, uid: node.metadata.uid! };
      } else if (kind === 'Secret') claims.secret = ref;
      else claims.node = ref;
    }
    const now = Math.floor(Date.now() / 1000);
    const token = deps.tokens.sign({
      iss: deps.tokens.issuer,
      sub: `system:serviceaccount:${route.namespace}:${sa.metadata.name}`,
      aud: audiences,
      iat: now,
      nbf: now,
      exp: now + expiration,
      jti: randomUUID(),
      'kubernetes.io': claims,
    });
    sendJson(res, 201, {
      kind: 'TokenRequest',
      apiVersion: 'authentication.k8s.io/v1',
      metadata: { name: sa.metadata.name, namespace: route.namespace, creationTimestamp: nowIso() },
      spec: { audiences, expirationSeconds: expiration, boundObjectRef: bound ?? null },
      status: {
        token,
        expirationTimestamp: isoSeconds((now + expiration) * 1000),
      },
    });
  }

  /** A Binding (pods/binding or the bindings collection): assigns a pod to a node once. */
  function bind(namespace: string, name: string, body: unknown, query: URLSearchParams): void {
    const def = registry.get('', 'v1', 'pods')!;
    const target = getPath(body, 'target.name');
    if (typeof target !== 'string' || target === '') {
      throw invalid('Binding', '', name, [fieldError('Required', 'target.name', '')]);
    }
    const pod = objects.get(def, namespace, name).obj;
    const uid = getPath(body, 'metadata.uid');
    if (uid && uid !== pod.metadata.uid) {
      throw conflict(
        'pods/binding',
        '',
        name,
        `Precondition failed: UID in precondition: ${String(uid)}, UID in object meta: ${pod.metadata.uid}`,
      );
    }
    if (!query.getAll('dryRun').includes('All')) bindPod(store, pod, target);
  }

  /** A watch stream; `scope` says which objects it follows (the query gives the rest). */
  function watch(
    def: ResourceDef,
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
    scope: Pick<WatchOptions, 'namespace' | 'name' | 'labels' | 'fields' | 'sendInitialEvents' | 'render'>,
  ): void {
    serveWatch(
      store,
      def,
      {
        ...scope,
        resourceVersion: query.get('resourceVersion'),
        timeoutSeconds: watchTimeout(query.get('timeoutSeconds')),
        allowBookmarks: query.get('allowWatchBookmarks') === 'true',
        serve: (o, json) => serveJson(def, o, json),
      },
      deps.watch,
      req,
      res,
      () => deps.watchEvents.inc(),
    );
  }

  async function handleResource(
    route: Route,
    req: IncomingMessage,
    res: ServerResponse,
    query: URLSearchParams,
    user: UserInfo,
  ): Promise<void> {
    const { def, namespace = '', name, sub } = route;
    const method = req.method ?? 'GET';
    const dryRun = query.getAll('dryRun').includes('All');
    const table = wantsTable(req);

    if (def.metrics) {
      if (method !== 'GET' || sub !== undefined || route.watch) throw methodNotAllowed();
      const nodes = store.list('/nodes').map((x) => x.obj);
      const items =
        def.metrics === 'pods'
          ? await podMetrics(
              store.list('/pods', route.namespace).map((x) => x.obj),
              new Map(nodes.map((n) => [n.metadata.name!, n])),
              route.namespace,
              name,
            )
          : await nodeMetrics(nodes, name);
      if (name !== undefined) {
        if (!items[0]) throw notFound(def.plural, def.group, name);
        sendJson(res, 200, items[0]);
        return;
      }
      const labels = parseLabelSelector(query.get('labelSelector'));
      sendJson(res, 200, {
        kind: `${def.kind}List`,
        apiVersion: groupVersion(def),
        metadata: {},
        items: items.filter((i) => labels(i)),
      });
      return;
    }
    if (def.virtual) {
      if (method !== 'POST' || name) throw methodNotAllowed();
      await handleVirtual(route, req, res, query, user);
      return;
    }
    if (def.namespaced && name !== undefined && route.namespace === undefined) throw resourceNotFound();

    if (name === undefined) {
      if (method === 'GET') {
        if (route.watch) {
          watch(def, req, res, query, {
            namespace: route.namespace,
            labels: parseLabelSelector(query.get('labelSelector')),
            fields: parseFieldSelector(query.get('fieldSelector'), def.fieldSelectors),
            sendInitialEvents: query.get('sendInitialEvents') === 'true',
            render: table
              ? (o, first) =>
                  tableJson(def, [o], { resourceVersion: o.metadata.resourceVersion }, query, first)
              : undefined,
          });
          return;
        }
        const page = listObjects(route, query);
        const meta: Record<string, unknown> = { resourceVersion: String(page.rv) };
        if (page.cont) meta.continue = page.cont;
        if (page.remaining !== undefined) meta.remainingItemCount = page.remaining;
        if (table) {
          sendJson(
            res,
            200,
            tableJson(
              def,
              page.items.map((s) => s.obj),
              meta,
              query,
            ),
          );
        } else {
          const items = page.items.map((s) => serveJson(def, s.obj, s.json)).join(',');
          sendJson(
            res,
            200,
            `{"kind":"${def.kind}List","apiVersion":"${groupVersion(def)}","metadata":${JSON.stringify(meta)},"items":[${items}]}`,
          );
        }
        return;
      }
      if (method === 'POST') {
        if (def.namespaced && route.namespace === undefined) throw methodNotAllowed();
        const { obj, warnings } = await readObject(req, route, query);
        if (def.kind === 'CertificateSigningRequest') stampRequester(obj, user);
        const created = objects.create(def, namespace, obj, dryRun);
        sendJson(res, 201, serveWritten(def, created), warnings);
        return;
      }
      if (method === 'DELETE') {
        const body = req.headers['content-length'] !== '0' ? await readBody(req) : Buffer.alloc(0);
        const opts = deleteOptions(body.length ? parseBody(body, 'application/json') : {}, query);
        const page = listObjects(route, query);
        const out: KObject[] = [];
        for (const s of page.items) {
          const n = s.obj.metadata.name!;
          if (def.kind === 'Namespace') deps.namespaces.guardDelete(n);
          out.push(objects.delete(def, s.obj.metadata.namespace ?? '', n, opts).obj);
        }
        sendJson(res, 200, {
          kind: `${def.kind}List`,
          apiVersion: groupVersion(def),
          metadata: { resourceVersion: String(store.currentRv()) },
          items: out.map((o) => serveObject(def, o)),
        });
        return;
      }
      throw methodNotAllowed();
    }

    if (sub === undefined || sub === 'status' || sub === 'approval' || sub === 'finalize') {
      const s = sub ?? '';
      if (s !== '' && !def.subresources.includes(s)) throw resourceNotFound();
      switch (method) {
        case 'GET': {
          if (route.watch && s === '') {
            watch(def, req, res, query, {
              namespace: route.namespace,
              name,
              labels: () => true,
              fields: () => true,
              sendInitialEvents: false,
            });
            return;
          }
          const cur = objects.get(def, namespace, name);
          if (table)
            sendJson(
              res,
              200,
              tableJson(def, [cur.obj], { resourceVersion: cur.obj.metadata.resourceVersion }, query),
            );
          else sendJson(res, 200, serveJson(def, cur.obj, cur.json));
          return;
        }
        case 'PUT': {
          const { obj, warnings } = await readObject(req, route, query);
          let result;
          if (s === 'finalize') {
            const cur = objects.get(def, namespace, name).obj;
            const next = clone(cur);
            (next.spec as Record<string, unknown>).finalizers = getPath(obj, 'spec.finalizers') ?? [];
            next.metadata.resourceVersion = obj.metadata.resourceVersion;
            result = objects.update(def, namespace, name, next, '', dryRun);
          } else result = objects.update(def, namespace, name, obj, s, dryRun);
          sendJson(res, result.created ? 201 : 200, serveWritten(def, result.obj), warnings);
          return;
        }
        case 'PATCH': {
          if (s === 'finalize') throw methodNotAllowed();
          const { type, body } = await readPatch(req);
          const validation = fieldValidationOf(query);
          const warnings: string[] = [];
          const decode = (o: KObject) => {
            const d = decodeObject(o, def, validation, def.kind, String(o.apiVersion ?? groupVersion(def)));
            warnings.push(...d.warnings);
            return d.obj;
          };
          const result = objects.patch(def, namespace, name, type, body, s, dryRun, decode);
          sendJson(res, result.created ? 201 : 200, serveWritten(def, result.obj), warnings);
          return;
        }
        case 'DELETE': {
          if (s !== '') throw methodNotAllowed();
          const raw = await readBody(req);
          const opts = deleteOptions(raw.length ? parseBody(raw, req.headers['content-type']) : {}, query);
          if (def.kind === 'Namespace') deps.namespaces.guardDelete(name);
          const result = objects.delete(def, namespace, name, opts);
          if (result.deleted && !(def.kind === 'Pod' && def.group === ''))
            sendJson(res, 200, deletedStatus(def, result.obj));
          else sendJson(res, 200, serveWritten(def, result.obj));
          return;
        }
        default:
          throw methodNotAllowed();
      }
    }

    if (!def.subresources.includes(sub)) throw resourceNotFound();
    if (STREAM_SUBRESOURCES.includes(sub)) throw badRequest('Upgrade request required');
    if (sub === 'scale') {
      const cur = objects.get(def, namespace, name).obj;
      if (method === 'GET') {
        sendJson(res, 200, scaleOf(cur));
        return;
      }
      let next: KObject;
      if (method === 'PUT') {
        next = applyScale(
          cur,
          parseBody(await readBody(req), req.headers['content-type']),
          def.plural,
          def.group,
        );
      } else if (method === 'PATCH') {
        const { type, body } = await readPatch(req);
        next = applyScale(cur, patchScale(cur, type, body), def.plural, def.group);
      } else throw methodNotAllowed();
      const result = objects.update(def, namespace, name, clone(next), '', dryRun);
      sendJson(res, 200, scaleOf(result.obj));
      return;
    }
    if (sub === 'log') {
      if (method !== 'GET') throw methodNotAllowed();
      const pod = objects.get(def, namespace, name).obj;
      const target = kubeletLogUrl(pod, nodeOf(pod), query);
      proxyLogs(target, req, res, (err) => sendError(res, err));
      return;
    }
    if (sub === 'token') {
      if (method !== 'POST') throw methodNotAllowed();
      await tokenRequest(route, req, res, query);
      return;
    }
    if (sub === 'binding') {
      if (method !== 'POST') throw methodNotAllowed();
      const body = parseBody(await readBody(req), req.headers['content-type']);
      bind(namespace, name, body, query);
      sendJson(res, 201, BINDING_CREATED);
      return;
    }
    throw resourceNotFound();
  }

  async function handleAdmin(path: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (path === '/emulator/v1/authz/deny-rules') {
      if (req.method === 'GET') return sendJson(res, 200, { deny: deps.rules.list() });
      if (req.method === 'PUT' || req.method === 'POST') {
        const body = parseBody(await readBody(req), req.headers['content-type']);
        deps.rules.replace(isPlainObject(body) ? body.deny : body);
        return sendJson(res, 200, { deny: deps.rules.list() });
      }
      if (req.method === 'DELETE') {
        deps.rules.replace([]);
        return sendJson(res, 200, { deny: [] });
      }
      throw methodNotAllowed();
    }
    throw resourceNotFound();
  }

  /** The Kubernetes verb of a request, for metrics (the real server's apiserver_request_total labels). */
  function verbOf(method: string, route: Route): string {
    if (route.def.virtual || route.sub === 'token' || route.sub === 'binding') return 'create';
    switch (method) {
      case 'GET':
        return route.watch ? 'watch' : route.name === undefined ? 'list' : 'get';
      case 'POST':
        return 'create';
      case 'PUT':
        return 'update';
      case 'PATCH':
        return 'patch';
      case 'DELETE':
        return route.name === undefined ? 'deletecollection' : 'delete';
      default:
        return method.toLowerCase();
    }
  }

  async function dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    labels: { verb: string; resource: string },
  ): Promise<void> {
    let path = url.pathname;
    if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
    const query = url.searchParams;
    const get = req.method === 'GET' || req.method === 'HEAD';

    switch (path) {
      case '/version':
        sendJson(res, 200, SERVER_VERSION);
        return;
      case '/healthz':
      case '/livez':
      case '/readyz':
        sendText(res, 200, 'ok');
        return;
      case '/metrics': {
        const m = await deps.metricsText();
        sendText(res, 200, m.body, m.contentType);
        return;
      }
      case '/api':
        sendJson(res, 200, apiVersions(deps.serverAddress()));
        return;
      case '/apis':
        sendJson(res, 200, apiGroupList(registry));
        return;
      case '/openapi/v3':
        sendJson(res, 200, deps.openapi.index());
        return;
      case '/openapi/v2': {
        const doc = openApiV2(req.headers.accept);
        res.writeHead(200, { 'Content-Type': doc.contentType, 'Content-Length': String(doc.body.length) });
        res.end(doc.body);
        return;
      }
      case '/.well-known/openid-configuration':
        sendJson(res, 200, deps.tokens.openidConfiguration());
        return;
      case '/openid/v1/jwks':
        sendJson(res, 200, deps.tokens.jwks());
        return;
    }
    if (path.startsWith('/emulator/')) {
      await handleAdmin(path, req, res);
      return;
    }
    if (path.startsWith('/openapi/v3/') && get) {
      const doc = deps.openapi.document(path.slice('/openapi/v3/'.length));
      if (!doc) throw resourceNotFound();
      sendJson(res, 200, doc);
      return;
    }
    let segs: string[];
    try {
      segs = path.split('/').slice(1).map(decodeURIComponent);
    } catch {
      throw badRequest(`malformed URL path: ${path}`);
    }
    let group: string;
    let version: string;
    let rest: string[];
    if (segs[0] === 'api' && segs.length >= 2) {
      group = '';
      version = segs[1]!;
      rest = segs.slice(2);
    } else if (segs[0] === 'apis' && segs.length >= 2) {
      group = segs[1]!;
      if (segs.length === 2) {
        const g = apiGroup(registry, group);
        if (!g || !get) throw resourceNotFound();
        sendJson(res, 200, g);
        return;
      }
      version = segs[2]!;
      rest = segs.slice(3);
    } else {
      throw resourceNotFound();
    }
    if (rest.length === 0) {
      const list = apiResourceList(registry, groupVersion({ group, version }));
      if (!list || !get) throw resourceNotFound();
      sendJson(res, 200, list);
      return;
    }
    const user = authenticate(req);
    const route = parseRoute(rest, group, version, query);
    labels.verb = verbOf(req.method ?? 'GET', route);
    labels.resource = route.sub ? `${route.def.plural}/${route.sub}` : route.def.plural;
    await handleResource(route, req, res, query, user);
  }

  const request = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://emulator');
    const labels = { verb: (req.method ?? 'GET').toLowerCase(), resource: '' };
    res.on('finish', () => deps.requests.inc({ ...labels, code: String(res.statusCode) }));
    dispatch(req, res, url, labels).catch((err: unknown) => {
      if (err instanceof ApiError) {
        sendError(res, err);
        if (err.code >= 500) log.warn({ err: err.message, path: url.pathname }, 'request failed');
      } else {
        log.error({ err, method: req.method, path: url.pathname }, 'unexpected error');
        sendError(res, internalError((err as Error)?.message ?? String(err)));
      }
    });
  };

  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://emulator');
    try {
      const m = url.pathname.match(
        /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/(exec|attach|portforward)\/?$/,
      );
      if (!m) throw resourceNotFound();
      authenticate(req); // a stale service account token is 401 here too
      const podDef = registry.get('', 'v1', 'pods')!;
      const pod = objects.get(podDef, decodeURIComponent(m[1]!), decodeURIComponent(m[2]!)).obj;
      const target = kubeletStreamUrl(m[3]!, pod, nodeOf(pod), url.searchParams);
      deps.requests.inc({ verb: 'create', resource: `pods/${m[3]}`, code: '101' });
      proxyUpgrade(target, req, socket, head);
    } catch (err) {
      const e = err instanceof ApiError ? err : internalError((err as Error)?.message ?? String(err));
      deps.requests.inc({ verb: 'create', resource: 'pods/exec', code: String(e.code) });
      rejectUpgrade(socket, e);
    }
  };

  return { request, upgrade };
}
