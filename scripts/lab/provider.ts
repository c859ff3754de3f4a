/** The lab's provider: its config file (written once, so a restart keeps its ports) and its process. */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startDaemon } from './daemon.ts';
import { tsxCommand } from './compute.ts';
import { freePort } from '../../lib/free-port.ts';
import type { LabState } from './state.ts';

export const LAB_NODE_NAME = 'kip';

/**
 * The provider config of a lab. The kube emulator's kubelet proxy presents no client
 * certificate (docs/kube-emulator.md), so the kubelet API runs with authentication `none`.
 */
export async function labProviderConfig(
  state: Pick<LabState, 'kubeconfig' | 'etcd' | 'compute' | 'registry'>,
  extra: { cells?: Record<string, unknown>; cloud?: Record<string, unknown> } = {},
): Promise<Record<string, unknown>> {
  const { etcd, compute, registry } = state;
  if (!etcd || !compute || !registry) throw new Error('provider config needs etcd, compute and registry');
  return {
    nodeName: LAB_NODE_NAME,
    kubeconfig: state.kubeconfig,
    node: { internalIP: '127.0.0.1' },
    cloud: {
      project: compute.project,
      region: compute.region,
      zones: compute.zones,
      endpoint: { host: compute.host, port: compute.port, protocol: 'http' },
      listIntervalSeconds: 1,
      ...extra.cloud,
    },
    cells: { insecureRegistries: [registry.host], ...extra.cells },
    etcd: { endpoints: [etcd.endpoint] },
    kubeletApi: { listen: `127.0.0.1:${await freePort()}`, authentication: 'none' },
    metrics: { listen: `127.0.0.1:${await freePort()}` },
  };
}

/** Starts (or restarts) the provider with the lab's config file, writing it first when absent. */
export async function startLabProvider(
  dir: string,
  repo: string,
  state: LabState,
  opts: { env?: NodeJS.ProcessEnv; extraConfig?: Parameters<typeof labProviderConfig>[1] } = {},
): Promise<NonNullable<LabState['provider']>> {
  const config = join(dir, 'provider.yaml');
  if (!existsSync(config)) writeFileSync(config, stringify(await labProviderConfig(state, opts.extraConfig)));
  const log = join(dir, 'logs', 'provider.log');
  const d = await startDaemon({
    part: 'provider',
    ...tsxCommand(repo, 'provider/main.ts', ['--config', config]),
    cwd: repo,
    env: opts.env,
    logFile: log,
    ready: 'line',
    timeoutMs: 90_000,
  });
  const r = d.ready as {
    node: string;
    clusterId: string;
    kubeletApi: string;
    kubeletPort: number;
    metrics: string;
  };
  return {
    pid: d.pid,
    log,
    config,
    node: r.node,
    clusterId: r.clusterId,
    kubeletApi: r.kubeletApi,
    kubeletPort: r.kubeletPort,
    metrics: r.metrics,
  };
}
