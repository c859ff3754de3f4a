import { createHash } from 'node:crypto';
import type https from 'node:https';
import { KubeConfig, type Cluster } from '@kubernetes/client-node';
import { Agent, type Dispatcher } from 'undici';

type CreateDispatcher = (cluster: Cluster | null, agentOptions: https.AgentOptions) => Dispatcher | undefined;

/**
 * A KubeConfig whose API clients reuse their connections. @kubernetes/client-node builds a new
 * undici Agent for every request when the cluster has TLS settings (a CA, a client certificate,
 * or insecure-skip-tls-verify), so every request opens a new connection (and TLS handshake) and
 * the old one lingers until its keep-alive runs out. Here one Agent is kept per distinct TLS
 * identity and proxy; a rotated client certificate gets a new one and the previous one is closed.
 */
export class PooledKubeConfig extends KubeConfig {
  private readonly dispatchers = new Map<string, { key: string; dispatcher: Dispatcher }>();

  constructor() {
    super();
    const base = (KubeConfig.prototype as unknown as { createDispatcher: CreateDispatcher }).createDispatcher;
    const pooled: CreateDispatcher = (cluster, agentOptions) => {
      const opts = this.createDispatcherOptions(cluster, agentOptions);
      if (opts.type === 'none') return undefined;
      // The TLS material is hashed, not kept as a key: it may be large and is secret.
      const key = createHash('sha256').update(JSON.stringify(opts)).digest('hex');
      const slot = cluster?.server ?? '';
      const cached = this.dispatchers.get(slot);
      if (cached?.key === key) return cached.dispatcher;
      const dispatcher =
        opts.type === 'agent' ? new Agent({ connect: opts.connect }) : base.call(this, cluster, agentOptions);
      if (!dispatcher) return undefined;
      if (cached) void cached.dispatcher.close().catch(() => undefined);
      this.dispatchers.set(slot, { key, dispatcher });
      return dispatcher;
    };
    Object.defineProperty(this, 'createDispatcher', { value: pooled });
  }

  /** Closes the kept connections (at shutdown). */
  async close(): Promise<void> {
    const all = [...this.dispatchers.values()];
    this.dispatchers.clear();
    await Promise.all(all.map((d) => d.dispatcher.close().catch(() => undefined)));
  }
}
