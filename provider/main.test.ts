import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, type V1Lease, type V1Node } from '@kubernetes/client-node';
import { startProcess, type StartedProcess } from '../test/support/process.ts';
import { startEtcd, type TestEtcd } from './testing/etcd.ts';
import { eventually, startTestKube, type TestKube } from './testing/kube.ts';

const run = promisify(execFile);

function getInsecure(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, rejectUnauthorized: false }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

describe('provider main (real etcd, kube emulator, kubectl)', function () {
  this.timeout(120_000);
  let etcd: TestEtcd;
  let kube: TestKube;
  let dir: string;
  let provider: StartedProcess | undefined;
  let configPath: string;

  before(async () => {
    [etcd, kube] = await Promise.all([startEtcd(), startTestKube()]);
    dir = mkdtempSync(join(tmpdir(), `kip-provider-${process.pid}-`));
    configPath = join(dir, 'provider.yaml');
    writeFileSync(
      configPath,
      [
        'nodeName: kip',
        `kubeconfig: ${kube.kubeconfigPath}`,
        'cloud: {project: kip-lab-project}',
        'node: {internalIP: 127.0.0.1}',
        `etcd: {endpoints: ["${etcd.endpoint}"], prefix: /kip-main-test/}`,
        'kubeletApi: {listen: "127.0.0.1:0", authentication: none}',
        'metrics: {listen: "127.0.0.1:0"}',
        '',
      ].join('\n'),
    );
  });

  // node with tsx directly (what `npm run provider` runs), so the exit code is the provider's own.
  const startProvider = () =>
    startProcess(process.execPath, ['--import', 'tsx', 'provider/main.ts', '--config', configPath], {
      timeoutMs: 60_000,
    });

  after(async () => {
    await provider?.stop();
    await kube?.stop();
    await etcd?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('starts, registers the node and its lease, and prints a ready line', async () => {
    provider = await startProvider();
    const started = provider.ready as {
      node: string;
      clusterId: string;
      kubeletPort: number;
      metrics: string;
    };
    assert.equal(started.node, 'kip');
    assert.match(started.clusterId, /^kip-[a-z0-9]{10}$/);
    const node = await kube.kubectlJson<V1Node>('get', 'node', 'kip');
    assert.equal(node.status!.daemonEndpoints!.kubeletEndpoint!.Port, started.kubeletPort);
    // No cloud.endpoint and no Google credentials here: the node is registered but says why it
    // cannot take pods.
    const ready = node.status!.conditions!.find((c) => c.type === 'Ready')!;
    assert.equal(ready.status, 'False');
    assert.match(
      ready.message ?? '',
      /cloud: no Compute API: set cloud.endpoint or give the provider Google credentials/,
    );
    assert.equal(node.metadata!.labels!.type, 'virtual-kubelet');
    const lease = await eventually(
      () => kube.kubectlJson<V1Lease>('get', 'lease', '-n', 'kube-node-lease', 'kip'),
      10_000,
      'the lease',
    );
    assert.equal(lease.metadata!.ownerReferences![0]!.uid, node.metadata!.uid);
  });

  it('serves the node’s pods on the kubelet API and counts them in its metrics', async () => {
    const ready = provider!.ready as { kubeletPort: number; metrics: string };
    const core = kube.kc.makeApiClient(CoreV1Api);
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'web' },
        spec: { nodeName: 'kip', containers: [{ name: 'c', image: 'busybox' }] },
      },
    });
    await eventually(
      async () => {
        const r = await getInsecure(ready.kubeletPort, '/pods');
        const list = JSON.parse(r.body) as { items: { metadata: { name: string } }[] };
        return list.items.some((p) => p.metadata.name === 'web');
      },
      10_000,
      'the pod on /pods',
    );
    const text = await (await fetch(ready.metrics)).text();
    assert.match(text, /^kip_pods\{phase="Pending"\} 1$/m);
    assert.match(text, /^kip_cells\{state="requested"\} 0$/m);
    assert.match(text, /^kip_kubelet_api_requests_total\{route="pods",code="200"\} \d+$/m);
    // Logs are not wired to cells yet: the route says so instead of pretending.
    const logs = await getInsecure(ready.kubeletPort, '/containerLogs/default/web/c');
    assert.equal(logs.status, 501);
  });

  it('stops cleanly on SIGTERM and keeps its cluster id across restarts', async () => {
    const first = provider!.ready.clusterId;
    assert.equal(await provider!.stop(), 0);
    provider = await startProvider();
    assert.equal(provider.ready.clusterId, first);
  });

  it('exits non-zero with one line naming the field of a bad config', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'cloud: {project: kip-lab-project}\nkubeletApi: {listen: "10250"}\n');
    const err = await run('npm', ['run', '-s', 'provider', '--', '--config', bad]).then(
      () => assert.fail('a bad config must not start'),
      (e: { code: number; stderr: string }) => e,
    );
    assert.notEqual(err.code, 0);
    const lines = err.stderr.split('\n').filter((l) => l && !l.startsWith('npm warn'));
    assert.equal(lines.length, 1, err.stderr);
    assert.match(lines[0]!, /field "kubeletApi\.listen"/);
  });
});
