/** The kubeconfig file the emulator writes for kubectl and client libraries. */
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';

export interface KubeconfigOptions {
  server: string;
  token: string;
}

const NAME = 'kip-emulator';

/**
 * Writes a kubeconfig with one cluster, user and context (namespace `default`), readable by its
 * owner only. `insecure-skip-tls-verify` is set because @kubernetes/client-node refuses plain-http
 * servers without it; kubectl ignores it for http.
 */
export function writeKubeconfig(path: string, opts: KubeconfigOptions): void {
  const yaml = stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: NAME, cluster: { server: opts.server, 'insecure-skip-tls-verify': true } }],
    users: [{ name: `${NAME}-admin`, user: { token: opts.token } }],
    contexts: [{ name: NAME, context: { cluster: NAME, user: `${NAME}-admin`, namespace: 'default' } }],
    'current-context': NAME,
    preferences: {},
  });
  writeFileSync(path, yaml, { mode: 0o600 });
}
