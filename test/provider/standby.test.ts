/**
 * Standby cells end to end on real parts: etcd, the Kubernetes API emulator (with kubectl), a
 * docker-registry, the Compute Engine emulator whose netns hypervisor boots the real cell agent,
 * and the provider as a child process with `cells.standby: [{machineType: e2-small, count: 1}]`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InstancesClient } from '@google-cloud/compute';
import type { CoreV1Event, V1Pod } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { labelValue } from '../../provider/cloud/instance-names.ts';
import { startEtcd, type TestEtcd } from '../../provider/testing/etcd.ts';
import { eventually, startTestKube, type TestKube } from '../../provider/testing/kube.ts';
import { forwardTcp } from '../cell-agent/support.ts';
import { startGceEmulator, type GceEmulator } from '../support/gce.ts';
import { buildImage, pushImage } from '../support/images.ts';
import { startProcess, type StartedProcess } from '../support/process.ts';
import { startRegistry, type StartedRegistry } from '../support/registry.ts';

interface Vm {
  name: string;
  status: string;
  machineType: string;
  ip?: string;
  podUid?: string;
  standby: boolean;
}

describe('provider standby cells (kube emulator, GCE emulator with netns cells, real agent)', function () {
  this.timeout(150_000);
  let etcd: TestEtcd;
  let kube: TestKube;
  let emu: GceEmulator;
  let registry: StartedRegistry;
  let forward: { host: string; close(): void };
  let provider: StartedProcess | undefined;
  let dir: string;
  let configPath: string;
  let image: string;

  const startProvider = async () => {
    provider = await startProcess(
      process.execPath,
      ['--import', 'tsx', 'provider/main.ts', '--config', configPath],
      { timeoutMs: 60_000, env: { LOG_LEVEL: 'info' } },
    );
  };

  const vms = async (): Promise<Vm[]> => {
    const client = new InstancesClient(emu.clientOptions);
    const out: Vm[] = [];
    for (const zone of emu.zones) {
      const [items] = await client.list({ project: emu.project, zone });
      for (const i of items)
        if (i.status !== 'STOPPING' && i.status !== 'TERMINATED')
          out.push({
            name: i.name!,
            status: i.status!,
            machineType: (i.machineType ?? '').split('/').pop()!,
            ip: i.networkInterfaces?.[0]?.networkIP ?? undefined,
            podUid: i.labels?.['kip-pod-uid'],
            standby: i.labels?.['kip-standby'] === 'true',
          });
    }
    await client.close();
    return out;
  };
  const standbyVms = async () => (await vms()).filter((v) => v.standby);
  const inserts = async () => (await emu.admin.calls()).byMethod['compute.instances.insert']?.total ?? 0;
  const metrics = async () => (await fetch((provider!.ready as { metrics: string }).metrics)).text();

  const getPod = async (name: string): Promise<V1Pod | undefined> => {
    try {
      return await kube.kubectlJson<V1Pod>('get', 'pod', name);
    } catch {
      return undefined;
    }
  };
  const events = async (pod: string) =>
    (
      await kube.kubectlJson<{ items: CoreV1Event[] }>(
        'get',
        'events',
        '--field-selector',
        `involvedObject.name=${pod}`,
      )
    ).items;
  const apply = async (name: string, annotations: Record<string, string> = {}) => {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(
      file,
      stringify({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace: 'default', annotations },
        spec: {
          nodeName: 'kip',
          terminationGracePeriodSeconds: 2,
          tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
          containers: [{ name: 'app', image }],
        },
      }),
    );
    await kube.kubectl('apply', '-f', file);
  };
  const running = (name: string, timeoutMs = 60_000) =>
    eventually(
      async () => {
        const p = await getPod(name);
        const ready = p?.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
        return p?.status?.phase === 'Running' && ready ? p : undefined;
      },
      timeoutMs,
      `pod ${name} Running and Ready`,
    );
  /** The one ready standby VM, once the provider's metrics say it is ready. */
  const oneReadyStandby = async (timeoutMs = 60_000) =>
    eventually(
      async () => {
        const m = await metrics();
        if (!/^kip_standby_cells_ready\{machine_type="e2-small",capacity_type="on-demand"\} 1$/m.test(m))
          return undefined;
        const s = await standbyVms();
        return s.length === 1 && s[0]!.status === 'RUNNING' ? s[0] : undefined;
      },
      timeoutMs,
      'one ready standby cell',
    );

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), `kip-standby-${process.pid}-`));
    [etcd, kube, registry, emu] = await Promise.all([
      startEtcd(),
      startTestKube(),
      startRegistry(),
      startGceEmulator({
        hypervisor: 'netns',
        config: { delays: { provisioningMs: 50, stagingMs: 50 }, hypervisor: { stopGraceMs: 1000 } },
      }),
    ]);
    forward = await forwardTcp(emu.network.gateway, registry.host);
    const layout = await buildImage({
      name: 'kip-standby-test',
      tag: '1',
      entrypoint: ['/bin/sh', '-c'],
      cmd: ['echo hello from the cell; exec sleep 3600'],
    });
    await pushImage(layout, '1', registry.host);
    image = `${forward.host}/kip-standby-test:1`;
    configPath = join(dir, 'provider.yaml');
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
        cells: {
          insecureRegistries: [forward.host],
          defaultMachineType: 'e2-small',
          standby: [{ machineType: 'e2-small', count: 1 }],
        },
        etcd: { endpoints: [etcd.endpoint], prefix: `/kip-standby-${process.pid}/` },
        kubeletApi: { listen: '127.0.0.1:0', authentication: 'none' },
        metrics: { listen: '127.0.0.1:0' },
      }),
    );
    await startProvider();
  });

  after(async () => {
    await provider?.stop(10_000);
    forward?.close();
    await emu?.stop();
    await Promise.all([registry?.stop(), kube?.stop(), etcd?.stop()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && provider) console.error(provider.stderr().slice(-6000));
  });

  let first: Vm;

  it('boots one standby cell of the configured shape, with no pod labels', async () => {
    first = await oneReadyStandby();
    assert.equal(first.machineType, 'e2-small');
    assert.equal(first.podUid, undefined);
    assert.equal((await vms()).length, 1, 'only the standby VM exists');
  });

  it('runs an e2-small pod on the standby VM at once, inserts no VM for it, and replenishes the pool', async () => {
    const before = new Set((await vms()).map((v) => v.name));
    const insertsBefore = await inserts();
    const t0 = Date.now();
    await apply('quick');
    const pod = await running('quick', 30_000);
    const seconds = (Date.now() - t0) / 1000;
    assert.equal(pod.status!.podIP, first.ip, 'the pod runs on the standby VM');
    assert.ok(seconds < 20, `Running after ${seconds}s`);
    // The claimed VM is relabelled for the pod; no VM was inserted for the pod itself.
    const mine = await eventually(
      async () => {
        const v = (await vms()).find((x) => x.name === first.name);
        return v?.podUid === labelValue(pod.metadata!.uid!) && !v.standby ? v : undefined;
      },
      20_000,
      'the standby VM relabelled for the pod',
    );
    assert.equal(mine.machineType, 'e2-small');
    const uidHex = pod.metadata!.uid!.replace(/-/g, '');
    assert.ok(!(await vms()).some((v) => v.name.includes(uidHex)), 'no VM named for the pod');
    const reasons = (await events('quick')).map((e) => e.reason);
    assert.ok(reasons.includes('StandbyCellClaimed'), `events: ${reasons.join(',')}`);
    assert.ok(!reasons.includes('CellCreated'), `events: ${reasons.join(',')}`);

    // Replenished: a new standby VM, still exactly one.
    const next = await oneReadyStandby();
    assert.notEqual(next.name, first.name);
    assert.ok(!before.has(next.name));
    assert.equal((await inserts()) - insertsBefore, 1, 'one insert: the replacement standby cell only');
    assert.match(
      await metrics(),
      /^kip_standby_cells_claimed_total\{machine_type="e2-small",capacity_type="on-demand"\} 1$/m,
    );
    first = next;
  });

  it('boots its own VM for a pod of another shape or other placement, leaving the standby cell alone', async () => {
    await apply('bigger', { 'pod.elotl.co/instance-type': 'e2-medium' });
    // The standby shape, but a bigger disk than the standby cell has.
    await apply('placed', { 'pod.elotl.co/volume-size': '20Gi' });
    const pod = await running('bigger');
    const placed = await running('placed');
    const placedVm = (await vms()).filter((v) => v.podUid === labelValue(placed.metadata!.uid!));
    assert.equal(placedVm.length, 1);
    assert.equal(placedVm[0]!.machineType, 'e2-small');
    assert.notEqual(placedVm[0]!.name, first.name);
    const own = (await vms()).filter((v) => v.podUid === labelValue(pod.metadata!.uid!));
    assert.equal(own.length, 1);
    assert.equal(own[0]!.machineType, 'e2-medium');
    assert.notEqual(own[0]!.name, first.name);
    assert.equal(pod.status!.podIP, own[0]!.ip);
    const s = await standbyVms();
    assert.deepEqual(
      s.map((v) => v.name),
      [first.name],
    );
  });

  it('keeps the standby cell across a provider restart (no second standby VM)', async () => {
    await provider!.stop(10_000);
    const insertsBefore = await inserts();
    await startProvider();
    const again = await oneReadyStandby();
    assert.equal(again.name, first.name);
    // Several listings later there is still only the one standby VM, and the pods' VMs remain.
    await new Promise((r) => setTimeout(r, 3000));
    assert.deepEqual(
      (await standbyVms()).map((v) => v.name),
      [first.name],
    );
    assert.equal((await vms()).length, 4, 'standby + the three pods');
    assert.equal(await inserts(), insertsBefore, 'no VM inserted after the restart');
    await running('quick', 10_000);
  });

  it('deleting the pods deletes their VMs, including the one that was a standby cell; the pool stays', async () => {
    await kube.kubectl('delete', 'pod', 'quick', 'bigger', 'placed', '--wait=false');
    await eventually(
      async () => {
        const all = await vms();
        const left = await Promise.all(['quick', 'bigger', 'placed'].map(getPod));
        return all.length === 1 && all[0]!.name === first.name && left.every((p) => !p) ? all : undefined;
      },
      60_000,
      'only the standby VM left',
    );
  });
});
