import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { CoreV1Api } from '@kubernetes/client-node';
import { createLogger } from '../../lib/log.ts';
import { createCA } from '../../lib/tls.ts';
import { kubeletServingCertificate } from '../certificates.ts';
import { validateProviderConfig } from '../config.ts';
import { NodeController } from '../node/node-controller.ts';
import { desiredNode } from '../node/node-object.ts';
import { startTestKube, type TestKube } from '../testing/kube.ts';
import { startKubeletApiServer, type KubeletApiServer } from './server.ts';
import { testHandlers } from './testing.ts';

const log = createLogger('kubectl-logs-test', 'silent');

describe('kubectl logs through the API server to the kubelet API', function () {
  this.timeout(60_000);
  let kube: TestKube;
  let server: KubeletApiServer;
  let t: ReturnType<typeof testHandlers>;
  const stop = new AbortController();
  let nodeLoop: Promise<void>;

  before(async () => {
    kube = await startTestKube();
    t = testHandlers();
    const ca = await createCA('kubelet-serving');
    // The emulator, like an API server without a kubelet client certificate, sends no credentials.
    server = await startKubeletApiServer({
      listen: '127.0.0.1:0',
      tls: await kubeletServingCertificate(ca, 'kip', ['127.0.0.1']),
      auth: null,
      handlers: t.handlers,
      log,
    });
    const cfg = validateProviderConfig({ nodeName: 'kip', cloud: { project: 'kip-lab-project' } });
    const nodeCtl = new NodeController({
      core: kube.kc.makeApiClient(CoreV1Api),
      node: desiredNode(cfg, { internalIP: '127.0.0.1', kubeletPort: server.port, clusterId: 'kip-test' }),
      health: [],
      log,
    });
    nodeLoop = nodeCtl.run(stop.signal);
    await nodeCtl.ready;
    const core = kube.kc.makeApiClient(CoreV1Api);
    for (const name of ['web', 'ghost']) {
      await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name },
          spec: { nodeName: 'kip', containers: [{ name: 'nginx', image: 'nginx' }] },
        },
      });
    }
  });

  after(async () => {
    stop.abort();
    await nodeLoop;
    await server?.close();
    await kube?.stop();
  });

  it('passes kubectl’s options to the logs handler and prints what it returns', async () => {
    t.seen.logs.length = 0;
    assert.equal(await kube.kubectl('logs', 'web', '--tail=2', '--timestamps'), 'line 2\nline 3\n');
    const first = t.seen.logs[0]!;
    assert.deepEqual(first.target, { namespace: 'default', pod: 'web', container: 'nginx' });
    assert.equal(first.opts.tailLines, 2);
    assert.equal(first.opts.timestamps, true);
    assert.equal(
      await kube.kubectl('logs', 'web', '-c', 'nginx', '--since=5s', '--limit-bytes=9'),
      'line 1\nli',
    );
    assert.equal(t.seen.logs[1]!.opts.sinceSeconds, 5);
    assert.equal(t.seen.logs[1]!.opts.limitBytes, 9);
    await kube.kubectl('logs', 'web', '--previous');
    assert.equal(t.seen.logs[2]!.opts.previous, true);
  });

  it('follows with kubectl logs -f until kubectl goes away', async () => {
    const child = spawn('kubectl', ['--kubeconfig', kube.kubeconfigPath, 'logs', '-f', 'web', '--tail=1']);
    let out = '';
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('line 6\n')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`kubectl exited ${code}: ${out}`)));
    });
    child.kill('SIGTERM');
    assert.ok(out.startsWith('line 3\nline 4\nline 5\n'), out);
    assert.equal(t.seen.logs.at(-1)!.opts.follow, true);
    await t.followEnded;
  });

  it('shows the handler’s error for a pod it does not know', async () => {
    await assert.rejects(kube.kubectl('logs', 'ghost'), (e: { stderr: string }) => {
      assert.match(e.stderr, /pod "ghost" not found/);
      return true;
    });
  });
});
