/**
 * API discovery in the legacy form (`/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`),
 * which kubectl falls back to when it is offered instead of the aggregated form, and `/version`.
 */
import type { ResourceDef, ResourceRegistry } from './resources.ts';

/** The Kubernetes release the emulator answers as (discovery, /version and the OpenAPI documents). */
export const KUBE_VERSION = 'v1.32.4';

export const SERVER_VERSION = {
  major: '1',
  // The gcloud kubectl dispatcher picks its kubectl by this minor version; 32 is the built-in one.
  minor: '32',
  gitVersion: `${KUBE_VERSION}-kip-emulator`,
  gitCommit: '0000000000000000000000000000000000000000',
  gitTreeState: 'clean',
  buildDate: '2025-04-22T00:00:00Z',
  goVersion: 'go1.23.6',
  compiler: 'gc',
  platform: 'linux/amd64',
};

const SUBRESOURCE_VERBS: Record<
  string,
  { kind?: string; group?: string; version?: string; verbs: string[] }
> = {
  status: { verbs: ['get', 'patch', 'update'] },
  approval: { verbs: ['get', 'patch', 'update'] },
  finalize: { verbs: ['update'] },
  log: { verbs: ['get'] },
  scale: { kind: 'Scale', group: 'autoscaling', version: 'v1', verbs: ['get', 'patch', 'update'] },
  exec: { kind: 'PodExecOptions', verbs: ['create', 'get'] },
  attach: { kind: 'PodAttachOptions', verbs: ['create', 'get'] },
  portforward: { kind: 'PodPortForwardOptions', verbs: ['create', 'get'] },
  binding: { kind: 'Binding', verbs: ['create'] },
  token: { kind: 'TokenRequest', group: 'authentication.k8s.io', version: 'v1', verbs: ['create'] },
};

/** Kubernetes version priority: GA before beta before alpha, higher numbers first. */
function compareVersions(a: string, b: string): number {
  const parse = (v: string) => {
    const m = v.match(/^v(\d+)(?:(alpha|beta)(\d+))?$/);
    if (!m) return [0, 0, 0, v] as const;
    const stage = m[2] === undefined ? 3 : m[2] === 'beta' ? 2 : 1;
    return [stage, Number(m[1]), Number(m[3] ?? 0), v] as const;
  };
  const pa = parse(a);
  const pb = parse(b);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return (pb[i] as number) - (pa[i] as number);
  return a < b ? -1 : a > b ? 1 : 0;
}

export function apiVersions(serverAddress: string): object {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

function groupEntry(name: string, versions: string[]): object {
  const sorted = [...versions].sort(compareVersions);
  const entries = sorted.map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
  return { name, versions: entries, preferredVersion: entries[0] };
}

function groupsOf(registry: ResourceRegistry): Map<string, string[]> {
  const groups = new Map<string, string[]>();
  for (const gv of registry.groupVersions()) {
    const slash = gv.indexOf('/');
    if (slash < 0) continue;
    const g = gv.slice(0, slash);
    const list = groups.get(g) ?? [];
    list.push(gv.slice(slash + 1));
    groups.set(g, list);
  }
  return groups;
}

export function apiGroupList(registry: ResourceRegistry): object {
  const groups = [...groupsOf(registry).entries()].map(([name, versions]) => groupEntry(name, versions));
  return { kind: 'APIGroupList', apiVersion: 'v1', groups };
}

export function apiGroup(registry: ResourceRegistry, group: string): object | undefined {
  const versions = groupsOf(registry).get(group);
  if (!versions) return undefined;
  return { kind: 'APIGroup', apiVersion: 'v1', ...groupEntry(group, versions) };
}

function resourceEntries(def: ResourceDef): object[] {
  const main: Record<string, unknown> = {
    name: def.plural,
    singularName: def.singular,
    namespaced: def.namespaced,
    kind: def.kind,
    verbs: def.verbs,
  };
  if (def.shortNames.length) main.shortNames = def.shortNames;
  if (def.categories.length) main.categories = def.categories;
  const out: object[] = [main];
  for (const sub of def.subresources) {
    const s = SUBRESOURCE_VERBS[sub];
    if (!s) continue;
    out.push({
      name: `${def.plural}/${sub}`,
      singularName: '',
      namespaced: def.namespaced,
      ...(s.group ? { group: s.group, version: s.version } : {}),
      kind: s.kind ?? def.kind,
      verbs: s.verbs,
    });
  }
  return out;
}

export function apiResourceList(registry: ResourceRegistry, gv: string): object | undefined {
  const defs = registry.inGroupVersion(gv);
  if (defs.length === 0) return undefined;
  return {
    kind: 'APIResourceList',
    apiVersion: 'v1',
    groupVersion: gv,
    resources: defs.flatMap(resourceEntries),
  };
}
