import assert from 'node:assert/strict';
import { CoordinationV1Api, CoreV1Api, type V1Lease, type V1Node } from '@kubernetes/client-node';
import { createLogger } from '../../lib/log.ts';
import { validateProviderConfig } from '../config.ts';
import { eventually, startTestKube, type TestKube } from '../testing/kube.ts';
import { LeaseController } from './lease-controller.ts';
import { NodeController } from './node-controller.ts';
import { desiredNode } from './node-object.ts';

const log = createLogger('node-test', 'silent');

describe('virtual node and lease (kube emulator, kubectl)', function () {
  this.timeout(60_000);
  let kube: TestKube;
  let stop: AbortController;
  let nodeCtl: NodeController;
  let leaseCtl: LeaseController;
  let etcdHealthy = true;
  let running: Promise<unknown>;

  before(async () => {
    kube = await startTestKube();
    const cfg = validateProviderConfig({
      nodeName: 'kip',
      cloud: { project: 'kip-lab-project' },
      node: {
        labels: { 'example.com/team': 'infra' },
        capacity: { cpu: '64', memory: '256Gi', pods: '110', 'nvidia.com/gpu': '4' },
      },
    });
    nodeCtl = new NodeController({
      core: kube.kc.makeApiClient(CoreV1Api),
      node: desiredNode(cfg, { internalIP: '127.0.0.1', kubeletPort: 10250, clusterId: 'kip-test' }),
      health: [
        { name: 'cloud', ping: async () => {} },
        {
          name: 'etcd',
          ping: async () => {
            if (!etcdHealthy) throw new Error('connection refused');
          },
        },
      ],
      log,
      // Status far apart: a deleted node must be noticed by the ping-interval check.
      statusIntervalMs: 60_000,
      pingIntervalMs: 100,
    });
    leaseCtl = new LeaseController({
      coordination: kube.kc.makeApiClient(CoordinationV1Api),
      nodeName: 'kip',
      nodeUid: () => nodeCtl.nodeUid(),
      log,
      renewIntervalMs: 200,
    });
    stop = new AbortController();
    running = Promise.all([nodeCtl.run(stop.signal), leaseCtl.run(stop.signal)]);
    await nodeCtl.ready;
  });

  after(async () => {
    stop?.abort();
    await running;
    await kube?.stop();
  });

  it('registers the node with labels, taint, capacity, addresses, kubelet port and nodeInfo', async () => {
    const node = await kube.kubectlJson<V1Node>('get', 'node', 'kip');
    const labels = node.metadata!.labels!;
    assert.equal(labels.type, 'virtual-kubelet');
    assert.equal(labels['kubernetes.io/role'], 'agent');
    assert.equal(labels['kubernetes.io/os'], 'linux');
    assert.equal(labels['node.kubernetes.io/exclude-from-external-load-balancers'], 'true');
    assert.equal(labels['example.com/team'], 'infra');
    assert.deepEqual(node.spec!.taints, [
      { key: 'virtual-kubelet.io/provider', value: 'kip', effect: 'NoSchedule' },
    ]);
    assert.deepEqual(node.status!.capacity, {
      cpu: '64',
      memory: '256Gi',
      pods: '110',
      'nvidia.com/gpu': '4',
    });
    assert.deepEqual(node.status!.allocatable, node.status!.capacity);
    assert.deepEqual(node.status!.addresses, [
      { type: 'InternalIP', address: '127.0.0.1' },
      { type: 'Hostname', address: 'kip' },
    ]);
    assert.equal(node.status!.daemonEndpoints!.kubeletEndpoint!.Port, 10250);
    assert.equal(node.status!.nodeInfo!.operatingSystem, 'linux');
    assert.match(node.status!.nodeInfo!.kubeletVersion, /^v1\.32\./);
    const ready = node.status!.conditions!.find((c) => c.type === 'Ready')!;
    assert.equal(ready.status, 'True');
    assert.equal(ready.reason, 'KubeletReady');
    const table = await kube.kubectl('get', 'node', 'kip');
    assert.match(table, /kip\s+Ready\s+agent/);
  });

  it('keeps a lease in kube-node-lease owned by the node and renews it', async () => {
    const node = await kube.kubectlJson<V1Node>('get', 'node', 'kip');
    const first = await kube.kubectlJson<V1Lease>('get', 'lease', '-n', 'kube-node-lease', 'kip');
    assert.equal(first.spec!.holderIdentity, 'kip');
    assert.equal(first.spec!.leaseDurationSeconds, 40);
    assert.deepEqual(
      first.metadata!.ownerReferences!.map((o) => [o.apiVersion, o.kind, o.name, o.uid]),
      [['v1', 'Node', 'kip', node.metadata!.uid]],
    );
    assert.match(String(first.spec!.renewTime), /\.\d{6}Z$/, 'renewTime is a MicroTime');
    const renewed = await eventually(
      async () => {
        const l = await kube.kubectlJson<V1Lease>('get', 'lease', '-n', 'kube-node-lease', 'kip');
        return String(l.spec!.renewTime) !== String(first.spec!.renewTime) && l;
      },
      5000,
      'a renewal',
    );
    assert.ok(Date.parse(String(renewed.spec!.renewTime)) > Date.parse(String(first.spec!.renewTime)));
    assert.match(await kube.kubectl('get', 'lease', '-n', 'kube-node-lease'), /^kip\s+kip\s/m);
  });

  it('recovers from a conflicting lease write', async () => {
    // Someone else updates the lease: the controller's cached copy is now stale.
    const coordination = kube.kc.makeApiClient(CoordinationV1Api);
    // The controller may renew between our read and write; then we simply write again.
    await eventually(
      async () => {
        const lease = await coordination.readNamespacedLease({ name: 'kip', namespace: 'kube-node-lease' });
        lease.metadata!.annotations = { touched: 'yes' };
        return coordination.replaceNamespacedLease({
          name: 'kip',
          namespace: 'kube-node-lease',
          body: lease,
        });
      },
      5000,
      'an outside lease write',
    );
    const before = leaseCtl.renewCount();
    await eventually(async () => leaseCtl.renewCount() >= before + 2, 5000, 'renewals after a conflict');
    const lease = await coordination.readNamespacedLease({ name: 'kip', namespace: 'kube-node-lease' });
    assert.equal(lease.metadata!.annotations?.touched, 'yes', 'the renewal kept the other writer’s change');
  });

  it('turns NotReady when a health check fails, and Ready again when it passes', async () => {
    etcdHealthy = false;
    const notReady = await eventually(
      async () => {
        const node = await kube.kubectlJson<V1Node>('get', 'node', 'kip');
        const ready = node.status!.conditions!.find((c) => c.type === 'Ready')!;
        return ready.status === 'False' && ready;
      },
      5000,
      'Ready=False',
    );
    assert.equal(notReady.reason, 'KubeletNotReady');
    assert.equal(notReady.message, 'etcd: connection refused');
    assert.match(await kube.kubectl('get', 'node', 'kip'), /kip\s+NotReady/);
    etcdHealthy = true;
    await eventually(
      async () => {
        const node = await kube.kubectlJson<V1Node>('get', 'node', 'kip');
        return node.status!.conditions!.find((c) => c.type === 'Ready')!.status === 'True';
      },
      5000,
      'Ready=True',
    );
  });

  it('keeps conditions other controllers wrote', async () => {
    await kube.kubectl(
      'patch',
      'node',
      'kip',
      '--subresource=status',
      '--type=strategic',
      '-p',
      JSON.stringify({
        status: { conditions: [{ type: 'ExampleCheck', status: 'True', reason: 'Fine', message: 'ok' }] },
      }),
    );
    const before = nodeCtl.nodeUid();
    // A readiness change makes the controller write its status.
    etcdHealthy = false;
    const node = await eventually(
      async () => {
        const n = await kube.kubectlJson<V1Node>('get', 'node', 'kip');
        return n.status!.conditions!.find((c) => c.type === 'Ready')!.status === 'False' && n;
      },
      5000,
      'a status write',
    );
    etcdHealthy = true;
    assert.ok(node.status!.conditions!.some((c) => c.type === 'ExampleCheck'));
    assert.equal(nodeCtl.nodeUid(), before);
    await eventually(async () => nodeCtl.health().ok, 5000, 'healthy again');
  });

  it('re-creates the node after it is deleted, and moves the lease owner to it', async () => {
    const old = (await kube.kubectlJson<V1Node>('get', 'node', 'kip')).metadata!.uid;
    await kube.kubectl('delete', 'node', 'kip');
    const node = await eventually(
      async () => {
        const n = await kube.kubectlJson<V1Node>('get', 'node', 'kip');
        return n.metadata!.uid !== old && n;
      },
      10_000,
      'the node to come back',
    );
    assert.equal(node.spec!.taints![0]!.key, 'virtual-kubelet.io/provider');
    assert.equal(node.metadata!.labels!.type, 'virtual-kubelet');
    await eventually(
      async () => {
        const l = await kube.kubectlJson<V1Lease>('get', 'lease', '-n', 'kube-node-lease', 'kip');
        return l.metadata!.ownerReferences![0]!.uid === node.metadata!.uid;
      },
      5000,
      'the lease owner to follow',
    );
    await eventually(
      async () => {
        const n = await kube.kubectlJson<V1Node>('get', 'node', 'kip');
        return n.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True';
      },
      5000,
      'status on the new node',
    );
  });
});
