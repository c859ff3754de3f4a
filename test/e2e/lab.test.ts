/**
 * The lab itself, through real kubectl: the virtual node and its lease, the scheduler binding
 * the examples to it, the seeded registry, and `make local`'s idempotence.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'mocha';
import { labUp } from '../../scripts/lab/lab.ts';
import { startLab, type TestLab } from '../support/lab.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('local lab (e2e)', function () {
  this.timeout(120_000);
  let lab: TestLab;

  before(async () => {
    lab = await startLab();
  });
  after(async () => {
    await lab?.stop();
  });

  it('records every endpoint, pid and log file in lab.json', () => {
    const s = lab.state;
    assert.equal(s.complete, true);
    assert.match(s.kube!.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(s.etcd!.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(s.compute!.project, 'kip-lab');
    assert.ok(s.compute!.zones.length >= 1);
    assert.ok(s.compute!.network.bridge, 'netns hypervisor has a bridge');
    assert.equal(s.registry!.host.split(':')[0], s.compute!.network.gateway);
    assert.match(s.provider!.kubeletApi, /^127\.0\.0\.1:\d+$/);
    assert.match(s.provider!.metrics, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    for (const p of [s.etcd, s.compute, s.registry, s.kube, s.provider]) {
      assert.ok(p!.pid > 0);
      assert.ok(existsSync(p!.log), p!.log);
    }
  });

  it('running it again finds the lab up and starts nothing', async () => {
    const again = await labUp({ dir: lab.state.dir });
    assert.equal(again.alreadyUp, true);
    assert.equal(again.state.provider!.pid, lab.state.provider!.pid);
  });

  it('seeds the registry with the example image', async () => {
    const res = await fetch(`http://${lab.state.registry!.host}/v2/kip-examples/busybox/tags/list`);
    assert.equal(res.status, 200);
    assert.deepEqual(((await res.json()) as { tags: string[] }).tags, ['1']);
    assert.equal(lab.image, `${lab.state.registry!.host}/kip-examples/busybox:1`);
  });

  it('kubectl shows the virtual node Ready with its labels and taint', async () => {
    const out = await lab.kubectlOk(['get', 'nodes']);
    assert.match(out, /^kip\s+Ready\s+agent\s/m);
    const node = JSON.parse(await lab.kubectlOk(['get', 'node', 'kip', '-o', 'json'])) as {
      metadata: { labels: Record<string, string> };
      spec: { taints: { key: string; value: string; effect: string }[] };
      status: { daemonEndpoints: { kubeletEndpoint: { Port: number } } };
    };
    assert.equal(node.metadata.labels.type, 'virtual-kubelet');
    assert.deepEqual(node.spec.taints, [
      { key: 'virtual-kubelet.io/provider', value: 'kip', effect: 'NoSchedule' },
    ]);
    assert.equal(node.status.daemonEndpoints.kubeletEndpoint.Port, lab.state.provider!.kubeletPort);
  });

  it("renews the node's Lease", async function () {
    this.timeout(40_000);
    const first = await lab.leaseRenewTime();
    assert.ok(first, 'the lease has a renewTime');
    let now = first;
    for (let i = 0; i < 30 && now === first; i++) {
      await sleep(1000);
      now = await lab.leaseRenewTime();
    }
    assert.ok(Date.parse(now) > Date.parse(first), `renewTime moved on from ${first} (now ${now})`);
  });

  it('the scheduler binds the examples to the virtual node, and not a pod without the toleration', async () => {
    await lab.kubectlOk(['apply', '-f', '-'], { input: lab.example('hello.yaml') });
    const bare = lab
      .example('hello.yaml')
      .replace(/ {2}tolerations:\n.*\n.*\n/, '')
      .replace('name: hello', 'name: bare');
    await lab.kubectlOk(['apply', '-f', '-'], { input: bare });
    let node = '';
    for (let i = 0; i < 50 && !node; i++) {
      node = (await lab.kubectlOk(['get', 'pod', 'hello', '-o', 'jsonpath={.spec.nodeName}'])).trim();
      if (!node) await sleep(200);
    }
    assert.equal(node, 'kip');
    const cond = JSON.parse(
      await lab.kubectlOk(['get', 'pod', 'bare', '-o', 'jsonpath={.status.conditions[0]}']),
    ) as { type: string; status: string; reason: string; message: string };
    assert.equal(cond.type, 'PodScheduled');
    assert.equal(cond.status, 'False');
    assert.equal(cond.reason, 'Unschedulable');
    assert.match(cond.message, /untolerated taint/);
    await lab.kubectlOk(['delete', 'pod', 'bare', '--wait=false']);
  });
});
