import { DOCKER_HUB } from './reference.ts';

/** A username and password for one registry. */
export interface RegistryCredential {
  username: string;
  password: string;
  /** The dockerconfigjson key it came from, for log lines. */
  source: string;
}

interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
}

const HUB_ALIASES = new Set([
  DOCKER_HUB,
  'index.docker.io',
  'registry-1.docker.io',
  'registry.hub.docker.com',
]);

function decodeEntry(key: string, e: AuthEntry): RegistryCredential | undefined {
  if (typeof e.username === 'string' && typeof e.password === 'string' && e.username !== '') {
    return { username: e.username, password: e.password, source: key };
  }
  if (typeof e.auth === 'string' && e.auth !== '') {
    const plain = Buffer.from(e.auth, 'base64').toString('utf8');
    const i = plain.indexOf(':');
    if (i > 0) return { username: plain.slice(0, i), password: plain.slice(i + 1), source: key };
  }
  return undefined;
}

/** Splits a dockerconfigjson key (`https://host:port/path`, `host/path`, `*.host`) into host and path. */
function splitKey(key: string): { host: string; path: string } {
  let k = key.trim();
  k = k.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  const slash = k.indexOf('/');
  const host = (slash >= 0 ? k.slice(0, slash) : k).toLowerCase();
  const path = slash >= 0 ? k.slice(slash + 1).replace(/\/+$/, '') : '';
  return { host, path };
}

function hostMatches(pattern: string, host: string): boolean {
  if (HUB_ALIASES.has(pattern) && HUB_ALIASES.has(host)) return true;
  const [pHost, pPort] = splitPort(pattern);
  const [hHost, hPort] = splitPort(host);
  if (pPort !== hPort) return false;
  // The kubelet's glob: `*` stands for exactly one DNS label.
  const pl = pHost.split('.');
  const hl = hHost.split('.');
  if (pl.length !== hl.length) return false;
  return pl.every((p, i) => p === '*' || p === hl[i]);
}

function splitPort(h: string): [string, string] {
  const m = /^(.*?)(?::(\d+))?$/.exec(h)!;
  return [m[1]!, m[2] ?? ''];
}

/**
 * Finds the credentials for `registry`/`repository` in dockerconfigjson documents (the
 * `.dockerconfigjson` of imagePullSecrets, `{"auths": {...}}`, or the older bare map), matching
 * keys like the kubelet: scheme ignored, `*` globs one DNS label, the port must match, a key with
 * a path matches repositories under that path, and Docker Hub's aliases match each other. Keys
 * with a longer path come first. Unreadable documents are skipped: a bad secret must not hide a
 * good one.
 */
export function findCredentials(
  dockerConfigs: string[],
  registry: string,
  repository: string,
): RegistryCredential[] {
  const found: { cred: RegistryCredential; specificity: number; order: number }[] = [];
  let order = 0;
  for (const doc of dockerConfigs) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(doc);
    } catch {
      continue;
    }
    if (!parsed || typeof parsed !== 'object') continue;
    const auths = ((parsed as { auths?: unknown }).auths ?? parsed) as Record<string, unknown>;
    if (!auths || typeof auths !== 'object') continue;
    for (const [key, entry] of Object.entries(auths)) {
      if (!entry || typeof entry !== 'object') continue;
      const { host, path } = splitKey(key);
      if (!hostMatches(host, registry.toLowerCase())) continue;
      // Docker Hub keys carry the legacy `/v1/` API path, which is not a repository prefix.
      const repoPath = HUB_ALIASES.has(host) && /^v[12]$/.test(path) ? '' : path;
      if (repoPath !== '' && repository !== repoPath && !repository.startsWith(`${repoPath}/`)) continue;
      const cred = decodeEntry(key, entry as AuthEntry);
      if (cred) found.push({ cred, specificity: repoPath.length, order: order++ });
    }
  }
  found.sort((a, b) => b.specificity - a.specificity || a.order - b.order);
  return found.map((f) => f.cred);
}
