/**
 * The cell manager against real etcd and the Compute Engine emulator (no hypervisor: VMs reach
 * RUNNING but no agent answers), for what happens before an agent is involved: the record is
 * written before the insert, the metering hook hears RUNNING and the completed delete, and a
 * second manager on the same etcd adopts the cell instead of making another VM.
 */
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { createLogger } from '../../lib/log.ts';
import { createCA } from '../../lib/tls.ts';
import { providerClientCertificate } from '../certificates.ts';
import { GceCloudProvider } from '../cloud/gce-cloud-provider.ts';
import { InstanceObserver } from '../cloud/instance-observer.ts';
import { CellStore } from '../state/cells.ts';
import { StateStore } from '../state/store.ts';
import { startEtcd, type TestEtcd } from '../testing/etcd.ts';
import { eventually } from '../testing/kube.ts';
import { startGceEmulator, type GceEmulator } from '../../test/support/gce.ts';
import { CellManager } from './cell-manager.ts';
import type { PodEventRecorder } from './events.ts';
import type { CellStartedUsage, CellStoppedUsage } from './types.ts';

describe('cell manager (etcd, GCE emulator)', function () {
  this.timeout(60_000);
  let etcd: TestEtcd;
  let emu: GceEmulator;
  let state: StateStore;
  const log = createLogger('test', 'silent');
  const clusterId = `kip-cm${process.pid}`;

  before(async () => {
    [etcd, emu] = await Promise.all([
      startEtcd(),
      startGceEmulator({ config: { delays: { provisioningMs: 50, stagingMs: 50 } } }),
    ]);
    state = await StateStore.open({ endpoints: [etcd.endpoint], prefix: '/kip-cm-test/', log });
  });
  after(async () => {
    state?.close();
    await emu?.stop();
    await etcd?.stop();
  });

  async function manager() {
    const cloud = new GceCloudProvider({
      project: emu.project,
      zones: emu.zones,
      network: 'default',
      clusterId,
      endpoint: { host: emu.host, port: emu.port },
      log,
    });
    const observer = new InstanceObserver({ provider: cloud, intervalMs: 200, log });
    const ca = await createCA('test');
    const started: CellStartedUsage[] = [];
    const stopped: CellStoppedUsage[] = [];
    const events: { reason: string; message: string }[] = [];
    const recorder: PodEventRecorder = {
      record: (_pod, _type, reason, message) => {
        events.push({ reason, message });
        return Promise.resolve();
      },
    };
    const cells = new CellStore(state.ns);
    const m = new CellManager({
      cloud,
      observer,
      cells,
      clusterId,
      ca,
      client: await providerClientCertificate(ca, clusterId),
      agentPort: 6421,
      insecureRegistries: [],
      resolveDispatch: () => Promise.reject(new Error('no agent in this test')),
      events: recorder,
      meter: {
        cellStarted: (u) => void started.push(u),
        cellStopped: (u) => void stopped.push(u),
      },
      log,
    });
    const statuses: V1Pod[] = [];
    m.notifyPods((p) => statuses.push(p));
    observer.start();
    return { m, cloud, observer, cells, started, stopped, events, statuses };
  }

  const pod: V1Pod = {
    metadata: { name: 'metered', namespace: 'default', uid: '6b1f0c4e-7d2a-4e9b-9f3c-2a1b0c9d8e7f' },
    spec: {
      containers: [{ name: 'c', image: 'busybox', resources: { requests: { cpu: '1', memory: '2Gi' } } }],
    },
  };

  it('meters RUNNING and the completed delete; a second manager adopts the cell without a second VM', async () => {
    const a = await manager();
    await a.m.createPod(pod);
    const rec = await a.cells.get(pod.metadata!.uid!);
    assert.ok(rec, 'the record exists once createPod returns');
    const started = await eventually(async () => a.started[0], 20_000, 'cellStarted');
    assert.equal(started.podUid, pod.metadata!.uid);
    assert.equal(started.namespace, 'default');
    assert.equal(started.podName, 'metered');
    assert.ok(emu.zones.includes(started.zone));
    assert.ok(started.vcpus >= 1 && started.memoryMiB >= 2048, `shape ${started.machineType}`);
    assert.equal(started.spot, false);
    assert.equal(started.cellName, rec.record.cellName);
    // No agent answers in this emulator: the pod honestly waits for it.
    const waiting = () => a.statuses.at(-1)?.status?.containerStatuses?.[0]?.state?.waiting;
    await eventually(
      async () => Promise.resolve(/waiting for its cell agent/.test(waiting()?.message ?? '')),
      10_000,
      'booting status',
    );
    assert.equal(waiting()!.reason, 'CellBooting');
    assert.ok(a.events.some((e) => e.reason === 'CellCreated'));
    await a.m.stop();
    a.observer.stop();

    const b = await manager();
    await b.m.createPod(pod);
    const vms = (await b.cloud.list()).filter((v) => v.pod?.uid === pod.metadata!.uid);
    assert.equal(vms.length, 1, 'one VM');
    assert.equal(vms[0]!.name, started.cellName);
    assert.equal(b.started.length, 0, 'an adopted running cell is not metered again');

    await b.m.deletePod(pod);
    assert.equal(b.stopped.length, 1);
    assert.equal(b.stopped[0]!.cellName, started.cellName);
    assert.equal(
      (await b.cloud.list()).filter((v) => v.pod?.uid === pod.metadata!.uid && v.status !== 'TERMINATED')
        .length,
      0,
    );
    assert.equal(await b.cells.get(pod.metadata!.uid!), null, 'the record is gone after the VM');
    assert.equal(await b.m.getPod('default', 'metered'), null);
    await b.m.stop();
    b.observer.stop();
  });
});
