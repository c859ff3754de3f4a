import type { CoreV1Api } from '@kubernetes/client-node';
import { apiStatus } from '../api-status.ts';

/**
 * The cluster DNS server's address (the `kube-dns` Service's clusterIP in kube-system), read
 * once and kept for `ttlMs`. A kubelet has it as a flag; the provider reads it from the cluster,
 * and without the cache a burst of pods would read the same Service once per pod. Concurrent
 * lookups share one request; a failed read is not kept.
 */
export class KubeDnsAddress {
  private cached?: { at: number; ip: Promise<string | undefined> };

  constructor(
    private readonly core: CoreV1Api,
    private readonly ttlMs = 30_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The clusterIP, or undefined when the cluster has no kube-dns Service (or it is headless). */
  get(): Promise<string | undefined> {
    const at = this.now();
    if (this.cached && at - this.cached.at < this.ttlMs) return this.cached.ip;
    const ip = this.read();
    const entry = { at, ip };
    this.cached = entry;
    ip.catch(() => {
      if (this.cached === entry) this.cached = undefined;
    });
    return ip;
  }

  private async read(): Promise<string | undefined> {
    try {
      const svc = await this.core.readNamespacedService({ name: 'kube-dns', namespace: 'kube-system' });
      const ip = svc.spec?.clusterIP;
      return ip && ip !== 'None' ? ip : undefined;
    } catch (err) {
      if (apiStatus(err) === 404) return undefined;
      throw err;
    }
  }
}
