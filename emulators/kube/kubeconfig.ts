/** The kubeconfig file the emulator writes for kubectl and client libraries. */
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';

export interface KubeconfigOptions {
  server: string;
  token: string;
  namespace?: string;
  name?: string;
}

/**
 * A kubeconfig with one cluster, user and context. `insecure-skip-tls-verify` is set because
 * @kubernetes/client-node refuses plain-http servers without it; kubectl ignores it for http.
 */
function kubeconfigYaml(opts: KubeconfigOptions): string {
  const name = opts.name ?? 'kip-emulator';
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server: opts.server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: `${name}-admin`, user: { token: opts.token } }],
    contexts: [
      { name, context: { cluster: name, user: `${name}-admin`, namespace: opts.namespace ?? 'default' } },
    ],
    'current-context': name,
    preferences: {},
  });
}

export function writeKubeconfig(path: string, opts: KubeconfigOptions): void {
  writeFileSync(path, kubeconfigYaml(opts), { mode: 0o600 });
}
