import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { startKubeEmulator, type KubeEmulatorHandle } from '../../test/support/kube.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 8000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('kube emulator: informers, reconnects and 410 Expired', function () {
  this.timeout(30_000);
  let emu: KubeEmulatorHandle;
  let core: k8s.CoreV1Api;
  let informer: k8s.Informer<k8s.V1Pod> & k8s.ObjectCache<k8s.V1Pod>;
  const events: [string, string][] = [];
  const errors: unknown[] = [];
  let stopping = false;

  const pod = (name: string): k8s.V1Pod => ({
    metadata: { name },
    spec: { containers: [{ name: 'c', image: 'busybox' }] },
  });
  const cached = () =>
    informer
      .list('default')
      .map((p) => p.metadata!.name!)
      .sort();
  const podLists = async () => {
    const text = await (await fetch(`${emu.url}/metrics`)).text();
    const line = text
      .split('\n')
      .find(
        (l) =>
          l.startsWith('kube_emulator_requests_total{') &&
          l.includes('verb="list"') &&
          l.includes('resource="pods"') &&
          l.includes('code="200"'),
      );
    return line ? Number(line.split(' ').at(-1)) : 0;
  };

  before(async () => {
    // Watches end after 1-2 s and history keeps 40 events, so reconnects and expiry happen quickly.
    emu = await startKubeEmulator({ args: ['--min-request-timeout', '1', '--history-size', '40'] });
    core = emu.kubeConfig.makeApiClient(k8s.CoreV1Api);
    informer = k8s.makeInformer(emu.kubeConfig, '/api/v1/namespaces/default/pods', () =>
      core.listNamespacedPod({ namespace: 'default' }),
    );
    for (const type of ['add', 'update', 'delete'] as const) {
      informer.on(type, (p: k8s.V1Pod) => events.push([type, p.metadata!.name!]));
    }
    informer.on('error', (err: unknown) => {
      if (stopping) return;
      // What a controller does: note it and start again (the informer stops on errors).
      errors.push(err);
      setTimeout(() => void informer.start(), 100);
    });
    await informer.start();
  });
  after(async () => {
    stopping = true;
    await informer?.stop();
    await emu?.stop();
  });

  it('follows adds, updates and deletes across watches the server ends', async () => {
    await core.createNamespacedPod({ namespace: 'default', body: pod('a') });
    await until('a in the cache', () => cached().includes('a'));
    await sleep(2500); // at least one server-side close and re-watch from the last resourceVersion
    await core.createNamespacedPod({ namespace: 'default', body: pod('b') });
    await core.patchNamespacedPod(
      { name: 'a', namespace: 'default', body: { metadata: { labels: { seen: 'yes' } } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await until(
      'b added and a updated',
      () => cached().includes('b') && informer.get('a', 'default')?.metadata?.labels?.seen === 'yes',
    );
    assert.deepEqual(cached(), ['a', 'b']);
    assert.deepEqual(events, [
      ['add', 'a'],
      ['add', 'b'],
      ['update', 'a'],
    ]);
    assert.deepEqual(errors, [], 'clean server closes are not errors');
  });

  it('relists after its resourceVersion expires and converges, reporting the deletion it missed', async () => {
    stopping = true;
    await informer.stop();
    events.length = 0;
    const listsBefore = await podLists();
    await core.deleteNamespacedPod({ name: 'a', namespace: 'default' });
    await core.createNamespacedPod({ namespace: 'default', body: pod('c') });
    // More writes than the history holds: the informer's resourceVersion is now 410 Expired.
    for (let i = 0; i < 50; i++)
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: `filler-${i}` } },
      });
    await sleep(200);
    stopping = false;
    await informer.start();
    await until('the cache to converge', () => cached().join() === 'b,c');
    assert.ok(
      events.some((e) => e[0] === 'delete' && e[1] === 'a'),
      `events: ${JSON.stringify(events)}`,
    );
    assert.ok(events.some((e) => e[0] === 'add' && e[1] === 'c'));
    assert.ok((await podLists()) > listsBefore, 'the informer listed again');
  });

  it('answers a raw watch from an expired resourceVersion with an ERROR 410 event and closes', async () => {
    const got: { type: string; obj: { code?: number; reason?: string } }[] = [];
    const done = await new Promise<unknown>((resolve) => {
      void new k8s.Watch(emu.kubeConfig).watch(
        '/api/v1/pods',
        { resourceVersion: '2' },
        (type, obj) => got.push({ type, obj }),
        resolve,
      );
    });
    assert.equal(done, null);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.type, 'ERROR');
    assert.equal(got[0]!.obj.code, 410);
    assert.equal(got[0]!.obj.reason, 'Expired');
    const list = await apiStatus(
      core
        .listNamespacedPod({ namespace: 'default', limit: 1 })
        .then((l) =>
          core.listNamespacedPod({ namespace: 'default', limit: 1, _continue: l.metadata!._continue }),
        ),
    );
    assert.equal(list, 200, 'a fresh continue token still works');
  });
});

async function apiStatus(p: Promise<unknown>): Promise<number> {
  try {
    await p;
    return 200;
  } catch (e) {
    if (e instanceof k8s.ApiException) return e.code;
    throw e;
  }
}
