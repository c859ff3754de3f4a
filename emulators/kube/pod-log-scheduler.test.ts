import assert from 'node:assert/strict';
import { once } from 'node:events';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { WebSocketServer } from 'ws';
import { createCA, issueCertificate } from '../../lib/tls.ts';
import { startKubeEmulator, type KubeEmulatorHandle } from '../../test/support/kube.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('kube emulator: pods/log proxy and scheduler', function () {
  this.timeout(30_000);
  let emu: KubeEmulatorHandle;
  let core: k8s.CoreV1Api;
  let kubelet: https.Server;
  const asked: URL[] = [];

  const node = (
    name: string,
    opts: { port?: number; ready?: boolean; taint?: boolean; labels?: Record<string, string> },
  ): k8s.V1Node => ({
    metadata: { name, labels: { 'kubernetes.io/hostname': name, ...opts.labels } },
    spec: opts.taint
      ? { taints: [{ key: 'virtual-kubelet.io/provider', value: 'kip', effect: 'NoSchedule' }] }
      : {},
    status: {
      conditions: [
        { type: 'Ready', status: opts.ready === false ? 'False' : 'True', reason: 'KubeletReady' },
      ],
      addresses: [{ type: 'InternalIP', address: '127.0.0.1' }],
      daemonEndpoints: { kubeletEndpoint: { Port: opts.port ?? 10250 } },
    },
  });

  before(async () => {
    // A stand-in kubelet with a certificate the API server does not verify, as in a real cluster.
    const ca = await createCA('test-kubelet-ca');
    const cert = await issueCertificate(ca, { commonName: 'vk-logs', hosts: ['127.0.0.1'], usage: 'server' });
    kubelet = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
      const url = new URL(req.url!, 'https://kubelet');
      asked.push(url);
      if (url.pathname === '/stats/summary') {
        const t = new Date().toISOString();
        const use = (cores: number, mib: number) => ({
          cpu: { time: t, usageNanoCores: cores * 1e6 },
          memory: { time: t, workingSetBytes: mib * 1048576 },
        });
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(
          JSON.stringify({
            node: { nodeName: 'vk-logs', ...use(250, 512) },
            pods: [
              {
                podRef: { name: 'logger', namespace: 'default' },
                containers: [
                  { name: 'app', ...use(12, 40) },
                  { name: 'sidecar', ...use(3, 8) },
                ],
              },
            ],
          }),
        );
        return;
      }
      if (url.pathname === '/containerLogs/default/logger/app') {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        if (url.searchParams.get('follow') === 'true') {
          res.write('line 1\n');
          setTimeout(() => res.end('line 2\n'), 700);
        } else res.end('hello from app\nsecond line\n');
        return;
      }
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end(`container not found (${url.pathname})`);
    });
    // exec over WebSocket (v5.channel.k8s.io): stdout on channel 1, the exit status on channel 3.
    const wss = new WebSocketServer({
      noServer: true,
      handleProtocols: (p) => (p.has('v5.channel.k8s.io') ? 'v5.channel.k8s.io' : false),
    });
    kubelet.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url!, 'https://kubelet');
      asked.push(url);
      if (url.pathname !== '/exec/default/logger/app') {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => {
        const cmd = url.searchParams.getAll('command').join(' ');
        const code = cmd.includes('fail') ? 3 : 0;
        const status = code
          ? {
              metadata: {},
              status: 'Failure',
              reason: 'NonZeroExitCode',
              message: `command terminated with non-zero exit code: ${code}`,
              details: { causes: [{ reason: 'ExitCode', message: String(code) }] },
            }
          : { metadata: {}, status: 'Success' };
        ws.send(Buffer.concat([Buffer.from([1]), Buffer.from(`ran: ${cmd}\n`)]));
        ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify(status))]));
        ws.close(1000);
      });
    });
    kubelet.listen(0, '127.0.0.1');
    await once(kubelet, 'listening');
    emu = await startKubeEmulator({ scheduler: true });
    core = emu.kubeConfig.makeApiClient(k8s.CoreV1Api);
    const port = (kubelet.address() as AddressInfo).port;
    await core.createNode({
      body: node('vk-logs', { port, taint: true, labels: { type: 'virtual-kubelet' } }),
    });
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'logger' },
        spec: {
          nodeName: 'vk-logs',
          containers: [
            { name: 'app', image: 'app:1' },
            { name: 'sidecar', image: 'side:1' },
          ],
        },
      },
    });
  });
  after(async () => {
    await emu?.stop();
    kubelet?.close();
  });

  describe('logs', () => {
    it('proxies kubectl logs to the node kubelet with the query passed through', async () => {
      const out = await emu.kubectlOk(['logs', 'logger', '-c', 'app', '--tail=1', '--timestamps']);
      assert.equal(out, 'hello from app\nsecond line\n');
      const last = asked.at(-1)!;
      assert.equal(last.pathname, '/containerLogs/default/logger/app');
      assert.equal(last.searchParams.get('tailLines'), '1');
      assert.equal(last.searchParams.get('timestamps'), 'true');
      assert.equal(last.searchParams.get('container'), null, 'the container travels in the path');
    });

    it('streams kubectl logs -f as the kubelet writes', async () => {
      const chunks: [number, string][] = [];
      const start = Date.now();
      const r = await emu.kubectl(['logs', '-f', 'logger', '-c', 'app'], {
        onStdout: (d) => chunks.push([Date.now() - start, d]),
      });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'line 1\nline 2\n');
      assert.ok(chunks.length >= 2, 'arrived in pieces');
      assert.ok(chunks.at(-1)![0] - chunks[0]![0] >= 500, 'the second line came later');
      assert.equal(asked.at(-1)!.searchParams.get('follow'), 'true');
    });

    it('serves readNamespacedPodLog for client-node', async () => {
      const text = await core.readNamespacedPodLog({
        name: 'logger',
        namespace: 'default',
        container: 'app',
        sinceSeconds: 10,
      });
      assert.equal(text, 'hello from app\nsecond line\n');
      assert.equal(asked.at(-1)!.searchParams.get('sinceSeconds'), '10');
    });

    it('explains what is missing: container name, host, kubelet answer', async () => {
      const err = async (p: Promise<unknown>) => {
        try {
          await p;
        } catch (e) {
          if (e instanceof k8s.ApiException)
            return { code: e.code, message: (JSON.parse(e.body as string) as { message: string }).message };
          throw e;
        }
        assert.fail('expected an error');
      };
      const noContainer = await err(core.readNamespacedPodLog({ name: 'logger', namespace: 'default' }));
      assert.equal(noContainer.code, 400);
      assert.equal(
        noContainer.message,
        'a container name must be specified for pod logger, choose one of: [app sidecar]',
      );
      const wrong = await err(
        core.readNamespacedPodLog({ name: 'logger', namespace: 'default', container: 'nope' }),
      );
      assert.equal(wrong.message, 'container nope is not valid for pod logger');
      const fromKubelet = await err(
        core.readNamespacedPodLog({ name: 'logger', namespace: 'default', container: 'sidecar' }),
      );
      assert.equal(fromKubelet.code, 404);
      assert.match(fromKubelet.message, /container not found/);
      await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name: 'nowhere' },
          spec: { schedulerName: 'other', containers: [{ name: 'c', image: 'c' }] },
        },
      });
      const r = await emu.kubectl(['logs', 'nowhere']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /pod nowhere does not have a host assigned/);
    });
  });

  describe('exec', () => {
    it('proxies kubectl exec to the kubelet, exit codes included', async () => {
      const ok = await emu.kubectl(['exec', 'logger', '-c', 'app', '--', 'echo', 'hi']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout, 'ran: echo hi\n');
      const last = asked.at(-1)!;
      assert.deepEqual(last.searchParams.getAll('command'), ['echo', 'hi']);
      assert.equal(last.searchParams.get('stdout'), 'true');
      const failed = await emu.kubectl(['exec', 'logger', '-c', 'app', '--', 'sh', '-c', 'fail']);
      assert.equal(failed.code, 3);
      assert.match(failed.stderr, /command terminated with exit code 3/);
      const missing = await emu.kubectl(['exec', 'logger', '-c', 'sidecar', '--', 'true']);
      assert.notEqual(missing.code, 0, 'the kubelet refusal reaches kubectl');
      const noHost = await emu.kubectl(['exec', 'nowhere', '--', 'true']);
      assert.equal(noHost.code, 1);
      assert.match(noHost.stderr, /does not have a host assigned/);
    });
  });

  describe('metrics', () => {
    it("serves kubectl top from the kubelets' /stats/summary", async () => {
      const pods = (await emu.kubectlOk(['top', 'pod', 'logger', '--containers']))
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/));
      assert.deepEqual(pods, [
        ['POD', 'NAME', 'CPU(cores)', 'MEMORY(bytes)'],
        ['logger', 'app', '12m', '40Mi'],
        ['logger', 'sidecar', '3m', '8Mi'],
      ]);
      const nodes = (await emu.kubectlOk(['top', 'node', 'vk-logs']))
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/));
      assert.deepEqual(nodes[0]!.slice(0, 2), ['NAME', 'CPU(cores)']);
      assert.deepEqual([nodes[1]![0], nodes[1]![1]], ['vk-logs', '250m']);
    });
  });

  describe('scheduler', () => {
    const nodeOf = (name: string) =>
      until(
        `${name} to be bound`,
        async () => (await core.readNamespacedPod({ name, namespace: 'default' })).spec!.nodeName,
      );

    it('binds a pod to a Ready node matching its nodeSelector whose taint it tolerates', async () => {
      await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name: 'virtual' },
          spec: {
            nodeSelector: { type: 'virtual-kubelet' },
            tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
            containers: [{ name: 'c', image: 'c' }],
          },
        },
      });
      assert.equal(await nodeOf('virtual'), 'vk-logs');
      const p = await core.readNamespacedPod({ name: 'virtual', namespace: 'default' });
      assert.deepEqual(
        p.status!.conditions!.map((c) => [c.type, c.status]),
        [['PodScheduled', 'True']],
      );
    });

    it('leaves a pod Unschedulable with the reasons, and binds it once a fitting node appears', async () => {
      await core.createNamespacedPod({
        namespace: 'default',
        body: { metadata: { name: 'picky' }, spec: { containers: [{ name: 'c', image: 'c' }] } },
      });
      await core.createNode({ body: node('down', { ready: false }) });
      const cond = await until('PodScheduled=False', async () =>
        (await core.readNamespacedPod({ name: 'picky', namespace: 'default' })).status!.conditions?.find(
          (c) => c.type === 'PodScheduled' && c.status === 'False',
        ),
      );
      assert.equal(cond.reason, 'Unschedulable');
      assert.match(cond.message!, /0\/2 nodes are available/);
      assert.match(cond.message!, /untolerated taint \{virtual-kubelet.io\/provider: kip\}/);
      assert.match(cond.message!, /not ready/);
      await core.createNode({ body: node('plain', {}) });
      assert.equal(await nodeOf('picky'), 'plain');
      const ready = (
        await core.readNamespacedPod({ name: 'picky', namespace: 'default' })
      ).status!.conditions!.find((c) => c.type === 'PodScheduled');
      assert.equal(ready!.status, 'True');
    });

    it('honours required node affinity and leaves other schedulers alone', async () => {
      await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name: 'affine' },
          spec: {
            affinity: {
              nodeAffinity: {
                requiredDuringSchedulingIgnoredDuringExecution: {
                  nodeSelectorTerms: [
                    {
                      matchExpressions: [
                        { key: 'kubernetes.io/hostname', operator: 'In', values: ['plain'] },
                      ],
                    },
                  ],
                },
              },
            },
            containers: [{ name: 'c', image: 'c' }],
          },
        },
      });
      assert.equal(await nodeOf('affine'), 'plain');
      await sleep(200);
      const other = await core.readNamespacedPod({ name: 'nowhere', namespace: 'default' });
      assert.equal(other.spec!.nodeName, undefined, 'a pod for another scheduler stays unbound');
    });

    it('binds through the pods/binding subresource once, as the real API does', async () => {
      await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name: 'manual' },
          spec: { schedulerName: 'mine', containers: [{ name: 'c', image: 'c' }] },
        },
      });
      await core.createNamespacedBinding({
        namespace: 'default',
        body: { metadata: { name: 'manual' }, target: { kind: 'Node', name: 'plain' } },
      });
      assert.equal(
        (await core.readNamespacedPod({ name: 'manual', namespace: 'default' })).spec!.nodeName,
        'plain',
      );
      await assert.rejects(
        core.createNamespacedBinding({
          namespace: 'default',
          body: { metadata: { name: 'manual' }, target: { kind: 'Node', name: 'vk-logs' } },
        }),
        (e: unknown) => e instanceof k8s.ApiException && e.code === 409,
      );
    });
  });
});
