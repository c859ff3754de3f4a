import type { CoreV1Api, V1Pod } from '@kubernetes/client-node';
import type { Logger } from '../lib/log.ts';

/**
 * The dockerconfigjson documents of a pod's imagePullSecrets, read from its namespace. A missing
 * or unreadable secret is logged and skipped, as the kubelet does: the pull is then tried with
 * the others (and anonymously).
 */
export async function pullSecretConfigs(core: CoreV1Api, pod: V1Pod, log: Logger): Promise<string[]> {
  const namespace = pod.metadata?.namespace ?? 'default';
  const out: string[] = [];
  for (const ref of pod.spec?.imagePullSecrets ?? []) {
    if (!ref.name) continue;
    try {
      const secret = await core.readNamespacedSecret({ name: ref.name, namespace });
      const data = secret.data ?? {};
      const doc = data['.dockerconfigjson'] ?? data['.dockercfg'];
      if (doc) out.push(Buffer.from(doc, 'base64').toString('utf8'));
      else log.warn({ namespace, secret: ref.name }, 'imagePullSecret has no .dockerconfigjson; skipped');
    } catch (err) {
      log.warn(
        { namespace, secret: ref.name, err: (err as Error).message },
        'imagePullSecret unreadable; skipped',
      );
    }
  }
  return out;
}

/** Every image a pod's containers, init containers and ephemeral containers use. */
export function podImages(pod: V1Pod): string[] {
  const s = pod.spec;
  const all = [...(s?.initContainers ?? []), ...(s?.containers ?? []), ...(s?.ephemeralContainers ?? [])];
  return [...new Set(all.map((c) => c.image).filter((i): i is string => !!i))];
}
