/**
 * Everything the cell agent needs besides the pod spec, resolved on the provider side (the agent
 * has no Kubernetes credentials): ConfigMap, Secret, projected, downwardAPI and service-account-
 * token volume files, env from configMapKeyRef/secretKeyRef and envFrom, image pull secrets as
 * `.dockerconfigjson` documents, and the cluster DNS settings.
 */
import type {
  CoreV1Api,
  V1ConfigMap,
  V1EnvVar,
  V1ObjectFieldSelector,
  V1Pod,
  V1Secret,
} from '@kubernetes/client-node';
import { apiStatus } from '../api-status.ts';
import { KubeDnsAddress } from './cluster-dns.ts';
import type { PodDnsConfig, PutPodRequest, VolumeFiles } from '../../lib/cell-agent-api.ts';

/** A ConfigMap, Secret or token the pod needs is missing or unreadable; retry once it exists. */
export class DispatchConfigError extends Error {
  constructor(
    message: string,
    /** The pod field that names the missing object, e.g. `spec.containers[0].env[1]`. */
    readonly field: string,
  ) {
    super(message);
    this.name = 'DispatchConfigError';
  }
}

export interface DispatchOptions {
  core: CoreV1Api;
  /** The cluster's DNS domain. Default `cluster.local`. */
  clusterDomain?: string;
  /** Token lifetime when a projected token does not ask for one. Default 3607 s, as the kubelet. */
  defaultTokenSeconds?: number;
  /** Where the cluster DNS address is read (and cached); default: read for each pod. */
  kubeDns?: KubeDnsAddress;
}

export interface ResolvedDispatch {
  request: PutPodRequest;
  /** The earliest service account token expiry, when the pod has tokens. */
  tokenExpiry?: Date;
  /** Things resolved with a fallback the user should hear about (a missing pull secret). */
  warnings: string[];
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** Reads ConfigMaps and Secrets once per dispatch; a 404 is `null`. */
class ObjectReader {
  private readonly configMaps = new Map<string, Promise<V1ConfigMap | null>>();
  private readonly secrets = new Map<string, Promise<V1Secret | null>>();

  constructor(
    private readonly core: CoreV1Api,
    private readonly namespace: string,
  ) {}

  private async read<T>(fn: () => Promise<T>): Promise<T | null> {
    try {
      return await fn();
    } catch (err) {
      if (apiStatus(err) === 404) return null;
      throw err;
    }
  }

  configMap(name: string): Promise<V1ConfigMap | null> {
    let p = this.configMaps.get(name);
    if (!p) {
      p = this.read(() => this.core.readNamespacedConfigMap({ name, namespace: this.namespace }));
      this.configMaps.set(name, p);
    }
    return p;
  }

  secret(name: string): Promise<V1Secret | null> {
    let p = this.secrets.get(name);
    if (!p) {
      p = this.read(() => this.core.readNamespacedSecret({ name, namespace: this.namespace }));
      this.secrets.set(name, p);
    }
    return p;
  }
}

/** Key → base64 content of a ConfigMap (data and binaryData). */
function configMapContent(cm: V1ConfigMap): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(cm.data ?? {})) out[k] = b64(v);
  for (const [k, v] of Object.entries(cm.binaryData ?? {})) out[k] = v;
  return out;
}

/** Selects `items` (key → path) from `content`, or every key. A missing listed key is an error. */
function selectItems(
  content: Record<string, string>,
  items: { key: string; path: string }[] | undefined,
  what: string,
  field: string,
  optional: boolean,
): Record<string, string> {
  if (!items?.length) return { ...content };
  const out: Record<string, string> = {};
  for (const it of items) {
    const v = content[it.key];
    if (v === undefined) {
      if (optional) continue;
      throw new DispatchConfigError(`${what} has no key "${it.key}"`, field);
    }
    out[it.path] = v;
  }
  return out;
}

function fieldValue(pod: V1Pod, ref: V1ObjectFieldSelector, field: string): string {
  const path = ref.fieldPath;
  const m = /^metadata\.(labels|annotations)\['(.+)'\]$/.exec(path);
  if (m) return (pod.metadata?.[m[1] as 'labels' | 'annotations'] ?? {})[m[2]!] ?? '';
  switch (path) {
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'metadata.labels':
    case 'metadata.annotations': {
      const map = pod.metadata?.[path === 'metadata.labels' ? 'labels' : 'annotations'] ?? {};
      return Object.entries(map)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
        .join('\n');
    }
    default:
      throw new DispatchConfigError(`downward API field "${path}" is not supported in volumes`, field);
  }
}

/**
 * Resolves what the agent needs to run `pod` (its spec is copied, never changed). Throws
 * DispatchConfigError naming the field when a required ConfigMap, Secret, key or token is missing.
 */
export async function resolveDispatch(pod: V1Pod, opts: DispatchOptions): Promise<ResolvedDispatch> {
  const namespace = pod.metadata?.namespace ?? 'default';
  const reader = new ObjectReader(opts.core, namespace);
  const spec = structuredClone(pod.spec!);
  const warnings: string[] = [];
  const volumes: Record<string, VolumeFiles> = {};
  let tokenExpiry: Date | undefined;

  const token = async (
    audience: string | undefined,
    expirationSeconds: number | undefined,
    field: string,
  ): Promise<string> => {
    const sa = spec.serviceAccountName || 'default';
    try {
      const tr = await opts.core.createNamespacedServiceAccountToken({
        name: sa,
        namespace,
        body: {
          spec: {
            audiences: audience ? [audience] : [],
            expirationSeconds: expirationSeconds ?? opts.defaultTokenSeconds ?? 3607,
            boundObjectRef: {
              apiVersion: 'v1',
              kind: 'Pod',
              name: pod.metadata!.name,
              uid: pod.metadata!.uid,
            },
          },
        },
      });
      const exp = tr.status?.expirationTimestamp ? new Date(tr.status.expirationTimestamp) : undefined;
      if (exp && (!tokenExpiry || exp < tokenExpiry)) tokenExpiry = exp;
      if (!tr.status?.token) throw new Error('the TokenRequest reply carries no token');
      return tr.status.token;
    } catch (err) {
      throw new DispatchConfigError(
        `cannot get a token for service account "${sa}": ${(err as Error).message}`,
        field,
      );
    }
  };

  for (const [i, v] of (spec.volumes ?? []).entries()) {
    const field = `spec.volumes[${i}]`;
    if (v.configMap) {
      const cm = await reader.configMap(v.configMap.name!);
      if (!cm && !v.configMap.optional)
        throw new DispatchConfigError(`configmap "${v.configMap.name}" not found`, `${field}.configMap`);
      volumes[v.name] = {
        files: cm
          ? selectItems(
              configMapContent(cm),
              v.configMap.items,
              `configmap "${v.configMap.name}"`,
              field,
              !!v.configMap.optional,
            )
          : {},
      };
    } else if (v.secret) {
      const s = await reader.secret(v.secret.secretName!);
      if (!s && !v.secret.optional)
        throw new DispatchConfigError(`secret "${v.secret.secretName}" not found`, `${field}.secret`);
      volumes[v.name] = {
        files: s
          ? selectItems(
              s.data ?? {},
              v.secret.items,
              `secret "${v.secret.secretName}"`,
              field,
              !!v.secret.optional,
            )
          : {},
      };
    } else if (v.downwardAPI) {
      const files: Record<string, string> = {};
      for (const it of v.downwardAPI.items ?? [])
        if (it.fieldRef) files[it.path] = b64(fieldValue(pod, it.fieldRef, `${field}.downwardAPI`));
      volumes[v.name] = { files };
    } else if (v.projected) {
      const files: Record<string, string> = {};
      for (const [j, src] of (v.projected.sources ?? []).entries()) {
        const sf = `${field}.projected.sources[${j}]`;
        if (src.configMap) {
          const cm = await reader.configMap(src.configMap.name!);
          if (!cm && !src.configMap.optional)
            throw new DispatchConfigError(`configmap "${src.configMap.name}" not found`, `${sf}.configMap`);
          if (cm)
            Object.assign(
              files,
              selectItems(
                configMapContent(cm),
                src.configMap.items,
                `configmap "${src.configMap.name}"`,
                sf,
                !!src.configMap.optional,
              ),
            );
        } else if (src.secret) {
          const s = await reader.secret(src.secret.name!);
          if (!s && !src.secret.optional)
            throw new DispatchConfigError(`secret "${src.secret.name}" not found`, `${sf}.secret`);
          if (s)
            Object.assign(
              files,
              selectItems(
                s.data ?? {},
                src.secret.items,
                `secret "${src.secret.name}"`,
                sf,
                !!src.secret.optional,
              ),
            );
        } else if (src.downwardAPI) {
          for (const it of src.downwardAPI.items ?? [])
            if (it.fieldRef) files[it.path] = b64(fieldValue(pod, it.fieldRef, `${sf}.downwardAPI`));
        } else if (src.serviceAccountToken) {
          const t = src.serviceAccountToken;
          files[t.path] = b64(await token(t.audience, t.expirationSeconds, `${sf}.serviceAccountToken`));
        }
      }
      volumes[v.name] = { files };
    }
  }

  // Env: envFrom first, explicit env after it wins, as the kubelet orders them.
  for (const [ci, c] of [...(spec.initContainers ?? []), ...spec.containers].entries()) {
    const kind = ci < (spec.initContainers?.length ?? 0) ? 'initContainers' : 'containers';
    const idx = kind === 'initContainers' ? ci : ci - (spec.initContainers?.length ?? 0);
    const cf = `spec.${kind}[${idx}]`;
    const env: V1EnvVar[] = [];
    for (const [k, from] of (c.envFrom ?? []).entries()) {
      const prefix = from.prefix ?? '';
      if (from.configMapRef) {
        const cm = await reader.configMap(from.configMapRef.name!);
        if (!cm && !from.configMapRef.optional)
          throw new DispatchConfigError(
            `configmap "${from.configMapRef.name}" not found`,
            `${cf}.envFrom[${k}]`,
          );
        for (const [key, value] of Object.entries(cm?.data ?? {})) env.push({ name: prefix + key, value });
      } else if (from.secretRef) {
        const s = await reader.secret(from.secretRef.name!);
        if (!s && !from.secretRef.optional)
          throw new DispatchConfigError(`secret "${from.secretRef.name}" not found`, `${cf}.envFrom[${k}]`);
        for (const [key, value] of Object.entries(s?.data ?? {}))
          env.push({ name: prefix + key, value: Buffer.from(value, 'base64').toString('utf8') });
      }
    }
    for (const [k, e] of (c.env ?? []).entries()) {
      const ef = `${cf}.env[${k}]`;
      const cmRef = e.valueFrom?.configMapKeyRef;
      const sRef = e.valueFrom?.secretKeyRef;
      if (cmRef) {
        const cm = await reader.configMap(cmRef.name!);
        const value = cm?.data?.[cmRef.key];
        if (value === undefined) {
          if (cmRef.optional) continue;
          throw new DispatchConfigError(
            cm
              ? `configmap "${cmRef.name}" has no key "${cmRef.key}"`
              : `configmap "${cmRef.name}" not found`,
            ef,
          );
        }
        env.push({ name: e.name, value });
      } else if (sRef) {
        const s = await reader.secret(sRef.name!);
        const value = s?.data?.[sRef.key];
        if (value === undefined) {
          if (sRef.optional) continue;
          throw new DispatchConfigError(
            s ? `secret "${sRef.name}" has no key "${sRef.key}"` : `secret "${sRef.name}" not found`,
            ef,
          );
        }
        env.push({ name: e.name, value: Buffer.from(value, 'base64').toString('utf8') });
      } else {
        env.push(e);
      }
    }
    // Later entries of the same name win (the kubelet's rule), keeping the first position.
    const byName = new Map<string, V1EnvVar>();
    for (const e of env) byName.set(e.name, e);
    c.env = [...byName.values()];
    delete c.envFrom;
  }

  const imagePullSecrets: string[] = [];
  for (const ref of spec.imagePullSecrets ?? []) {
    const s = ref.name ? await reader.secret(ref.name) : null;
    const data = s?.data ?? {};
    if (data['.dockerconfigjson'])
      imagePullSecrets.push(Buffer.from(data['.dockerconfigjson'], 'base64').toString());
    else if (data['.dockercfg'])
      imagePullSecrets.push(
        JSON.stringify({
          auths: JSON.parse(Buffer.from(data['.dockercfg'], 'base64').toString()) as unknown,
        }),
      );
    else
      warnings.push(
        `image pull secret "${ref.name}" ${s ? 'is not of type kubernetes.io/dockerconfigjson' : 'not found'}; pulling without it`,
      );
  }

  const dns = await clusterDns(pod, opts);
  const request: PutPodRequest = {
    pod: { ...pod, spec },
    volumes,
    ...(imagePullSecrets.length ? { imagePullSecrets } : {}),
    ...(dns ? { dns } : {}),
  };
  return { request, warnings, ...(tokenExpiry ? { tokenExpiry } : {}) };
}

/**
 * resolv.conf for ClusterFirst pods: kube-dns's service IP when the cluster has one, the cluster
 * search path and ndots 5, as the kubelet writes it. `Default` (and ClusterFirst without kube-dns)
 * keep the cell's own resolver; `None` leaves everything to `spec.dnsConfig`.
 */
export async function clusterDns(pod: V1Pod, opts: DispatchOptions): Promise<PodDnsConfig | undefined> {
  const policy = pod.spec?.dnsPolicy ?? 'ClusterFirst';
  if (policy !== 'ClusterFirst' && policy !== 'ClusterFirstWithHostNet') return undefined;
  const ip = await (opts.kubeDns ?? new KubeDnsAddress(opts.core)).get();
  if (!ip) return undefined;
  const domain = opts.clusterDomain ?? 'cluster.local';
  const ns = pod.metadata?.namespace ?? 'default';
  return {
    nameservers: [ip],
    searches: [`${ns}.svc.${domain}`, `svc.${domain}`, domain],
    options: [{ name: 'ndots', value: '5' }],
  };
}
