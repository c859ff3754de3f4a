import assert from 'node:assert/strict';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { createLogger } from '../lib/log.ts';
import { Informer, type InformerEvent } from './informer.ts';
import { eventually, startTestKube, type TestKube } from './testing/kube.ts';

const log = createLogger('informer-test', 'silent');

/** An HTTP proxy to the emulator that a test can break: it then cuts open streams and answers 500. */
async function breakableProxy(
  target: string,
): Promise<{ url: string; broken: boolean; cut(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const state = {
    url: '',
    broken: false,
    cut() {
      for (const s of sockets) s.destroy();
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (state.broken) {
      res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          message: 'injected outage',
          code: 500,
        }),
      );
      return;
    }
    const up = request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const origClose = state.close;
  state.close = async () => {
    state.cut();
    await origClose();
  };
  return state;
}

function pod(name: string, nodeName: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'default' },
    spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] },
  };
}

describe('informer (kube emulator behind a breakable proxy)', function () {
  this.timeout(60_000);
  let kube: TestKube;
  let proxy: Awaited<ReturnType<typeof breakableProxy>>;
  let informer: Informer<V1Pod>;
  let core: CoreV1Api;
  const events: [string, InformerEvent][] = [];

  before(async () => {
    // A short watch history, so an outage can outlast it and force a relist.
    kube = await startTestKube({ historySize: 16 });
    proxy = await breakableProxy(kube.emulator.url);
    core = kube.kc.makeApiClient(CoreV1Api);
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'p', server: proxy.url, skipTLSVerify: true }],
      users: [{ name: 'u', token: kube.emulator.adminToken }],
      contexts: [{ name: 'c', cluster: 'p', user: 'u' }],
      currentContext: 'c',
    });
    const proxied = kc.makeApiClient(CoreV1Api);
    await core.createNamespacedPod({ namespace: 'default', body: pod('mine-1', 'kip') });
    await core.createNamespacedPod({ namespace: 'default', body: pod('other-1', 'elsewhere') });
    informer = new Informer<V1Pod>({
      kc,
      name: 'pods',
      path: '/api/v1/pods',
      fieldSelector: 'spec.nodeName=kip',
      list: () => proxied.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=kip' }),
      log,
      restartBackoff: { initialMs: 50, maxMs: 400 },
    });
    informer.onChange((key, ev) => events.push([key, ev]));
    informer.start();
    await informer.ready;
  });

  after(async () => {
    await informer?.stop();
    await proxy?.close();
    await kube?.stop();
  });

  it('lists only the node’s pods, then follows changes by key', async () => {
    assert.deepEqual(
      informer.list().map((p) => p.metadata!.name),
      ['mine-1'],
    );
    assert.deepEqual(events, [['default/mine-1', 'add']]);
    await core.createNamespacedPod({ namespace: 'default', body: pod('mine-2', 'kip') });
    await core.createNamespacedPod({ namespace: 'default', body: pod('other-2', 'elsewhere') });
    await eventually(async () => informer.get('default/mine-2'), 5000, 'mine-2');
    await kube.kubectl('label', 'pod', 'mine-2', 'x=y');
    await eventually(
      async () => informer.get('default/mine-2')?.metadata?.labels?.x === 'y',
      5000,
      'the update',
    );
    await kube.kubectl('delete', 'pod', 'mine-1', '--grace-period=0', '--force');
    await eventually(async () => !informer.get('default/mine-1'), 5000, 'the delete');
    assert.equal(
      informer.lastKnown('default/mine-1')?.metadata?.name,
      'mine-1',
      'the deleted pod’s last state is kept',
    );
    assert.ok(!events.some(([k]) => k.includes('other')), 'other nodes’ pods never show up');
    assert.deepEqual(events.slice(1), [
      ['default/mine-2', 'add'],
      ['default/mine-2', 'update'],
      ['default/mine-1', 'delete'],
    ]);
  });

  it('restarts after a failure and resumes from where it was', async () => {
    const before = informer.stats();
    proxy.broken = true;
    proxy.cut();
    await core.createNamespacedPod({ namespace: 'default', body: pod('mine-3', 'kip') });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(informer.get('default/mine-3'), undefined, 'nothing arrives during the outage');
    proxy.broken = false;
    await eventually(async () => informer.get('default/mine-3'), 5000, 'mine-3 after the outage');
    const after = informer.stats();
    assert.ok(after.restarts > before.restarts, 'the informer was restarted');
    assert.equal(after.lists, before.lists, 'resumed from its resourceVersion without relisting');
  });

  it('relists when its resourceVersion expired during an outage', async () => {
    const before = informer.stats();
    proxy.broken = true;
    proxy.cut();
    // More writes than the emulator's history holds: the informer's resourceVersion expires.
    await core.createNamespacedPod({ namespace: 'default', body: pod('mine-4', 'kip') });
    for (let i = 0; i < 20; i++) await kube.kubectl('annotate', 'pod', 'other-1', `n=${i}`, '--overwrite');
    await core.deleteNamespacedPod({ name: 'mine-2', namespace: 'default', gracePeriodSeconds: 0 });
    proxy.broken = false;
    await eventually(
      async () => informer.get('default/mine-4') && !informer.get('default/mine-2'),
      10_000,
      'the relist',
    );
    assert.ok(informer.stats().lists > before.lists, 'the informer listed again');
    assert.ok(
      events.some(([k, e]) => k === 'default/mine-2' && e === 'delete'),
      'the relist reported the deletion',
    );
    assert.deepEqual(
      informer
        .list()
        .map((p) => p.metadata!.name)
        .sort(),
      ['mine-3', 'mine-4'],
    );
  });
});
