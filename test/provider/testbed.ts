/**
 * One provider test bed on real parts, shared by the provider suites: etcd, the Kubernetes API
 * emulator (with kubectl), a docker-registry holding a small busybox image, the Compute Engine
 * emulator whose netns hypervisor boots the real cell agent, and the provider as a child process.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InstancesClient, type protos } from '@google-cloud/compute';
import type { CoreV1Event, V1Pod } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { startEtcd, type TestEtcd } from '../../provider/testing/etcd.ts';
import { eventually, startTestKube, type TestKube } from '../../provider/testing/kube.ts';
import { forwardTcp } from '../cell-agent/support.ts';
import { startGceEmulator, type GceEmulator } from '../support/gce.ts';
import { buildImage, pushImage } from '../support/images.ts';
import { startProcess, type StartedProcess } from '../support/process.ts';
import { startRegistry, type StartedRegistry } from '../support/registry.ts';

export interface ProviderTestbed {
  etcd: TestEtcd;
  kube: TestKube;
  emu: GceEmulator;
  registry: StartedRegistry;
  /** The registry as the cells reach it, through the emulator's bridge address. */
  forward: { host: string; close(): void };
  dir: string;
  configPath: string;
  /** A busybox image that prints "hello from the cell" and sleeps. */
  image: string;
  /** The running provider, if any; a test that stops it for good sets this to undefined. */
  provider: StartedProcess | undefined;
  startProvider(): Promise<StartedProcess>;
  /** Every instance in every zone of the emulator. */
  instances(): Promise<protos.google.cloud.compute.v1.IInstance[]>;
  getPod(name: string): Promise<V1Pod | undefined>;
  events(pod: string): Promise<CoreV1Event[]>;
  /** `kubectl apply -f` of a manifest written to the bed's directory. */
  apply(manifest: Record<string, unknown>): Promise<void>;
  /** A pod bound to the node `kip` that tolerates the provider's taint. */
  podSpec(
    name: string,
    spec: Record<string, unknown>,
    annotations?: Record<string, string>,
  ): Record<string, unknown>;
  /** Waits until the pod is Running and Ready with its first container running. */
  running(name: string, timeoutMs?: number): Promise<V1Pod>;
  close(): Promise<void>;
}

/**
 * Starts the parts in parallel, writes the provider's config (`cells` merged over the defaults,
 * then `config`'s other top-level sections) and starts the provider. `name` keeps the bed's image,
 * directory and etcd prefix apart.
 */
export async function startProviderTestbed(
  name: string,
  cells: Record<string, unknown> = {},
  config: Record<string, unknown> = {},
): Promise<ProviderTestbed> {
  const dir = mkdtempSync(join(tmpdir(), `kip-${name}-${process.pid}-`));
  const [etcd, kube, registry, emu] = await Promise.all([
    startEtcd(),
    startTestKube(),
    startRegistry(),
    startGceEmulator({
      hypervisor: 'netns',
      config: { delays: { provisioningMs: 50, stagingMs: 50 }, hypervisor: { stopGraceMs: 1000 } },
    }),
  ]);
  const forward = await forwardTcp(emu.network.gateway, registry.host);
  const layout = await buildImage({
    name: `kip-${name}-test`,
    tag: '1',
    entrypoint: ['/bin/sh', '-c'],
    cmd: ['echo hello from the cell; exec sleep 3600'],
  });
  await pushImage(layout, '1', registry.host);
  const configPath = join(dir, 'provider.yaml');
  writeFileSync(
    configPath,
    stringify({
      nodeName: 'kip',
      kubeconfig: kube.kubeconfigPath,
      node: { internalIP: '127.0.0.1' },
      cloud: {
        project: emu.project,
        zones: emu.zones,
        endpoint: { host: emu.host, port: emu.port, protocol: 'http' },
        listIntervalSeconds: 0.5,
      },
      cells: { insecureRegistries: [forward.host], ...cells },
      etcd: { endpoints: [etcd.endpoint], prefix: `/kip-${name}-${process.pid}/` },
      kubeletApi: { listen: '127.0.0.1:0', authentication: 'none' },
      metrics: { listen: '127.0.0.1:0' },
      ...config,
    }),
  );

  const getPod = async (pod: string): Promise<V1Pod | undefined> => {
    try {
      return await kube.kubectlJson<V1Pod>('get', 'pod', pod);
    } catch {
      return undefined;
    }
  };
  const bed: ProviderTestbed = {
    etcd,
    kube,
    emu,
    registry,
    forward,
    dir,
    configPath,
    image: `${forward.host}/kip-${name}-test:1`,
    provider: undefined,
    async startProvider() {
      bed.provider = await startProcess(
        process.execPath,
        ['--import', 'tsx', 'provider/main.ts', '--config', configPath],
        { timeoutMs: 60_000, env: { LOG_LEVEL: 'info' } },
      );
      return bed.provider;
    },
    async instances() {
      const client = new InstancesClient(emu.clientOptions);
      try {
        const all = [];
        for (const zone of emu.zones) all.push(...(await client.list({ project: emu.project, zone }))[0]);
        return all;
      } finally {
        await client.close();
      }
    },
    getPod,
    async events(pod) {
      const list = await kube.kubectlJson<{ items: CoreV1Event[] }>(
        'get',
        'events',
        '--field-selector',
        `involvedObject.name=${pod}`,
      );
      return list.items;
    },
    async apply(manifest) {
      const file = join(dir, `${(manifest.metadata as { name: string }).name}.yaml`);
      writeFileSync(file, stringify(manifest));
      await kube.kubectl('apply', '-f', file);
    },
    podSpec: (pod, spec, annotations = {}) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: pod, namespace: 'default', annotations },
      spec: {
        nodeName: 'kip',
        terminationGracePeriodSeconds: 2,
        tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
        ...spec,
      },
    }),
    running: (pod, timeoutMs = 60_000) =>
      eventually(
        async () => {
          const p = await getPod(pod);
          const ready = p?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
          return p?.status?.phase === 'Running' && p.status.containerStatuses?.[0]?.state?.running && ready
            ? p
            : undefined;
        },
        timeoutMs,
        `pod ${pod} Running and Ready`,
      ),
    async close() {
      await bed.provider?.stop(10_000);
      forward.close();
      await emu.stop();
      await Promise.all([registry.stop(), kube.stop(), etcd.stop()]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await bed.startProvider();
  } catch (err) {
    await bed.close();
    throw err;
  }
  return bed;
}
