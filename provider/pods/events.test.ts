import assert from 'node:assert/strict';
import { CoreV1Api, type CoreV1Event, type V1Pod } from '@kubernetes/client-node';
import { createLogger } from '../../lib/log.ts';
import { startTestKube, type TestKube } from '../testing/kube.ts';
import { KubeEventRecorder } from './events.ts';

describe('pod events (kube emulator)', function () {
  this.timeout(30_000);
  let kube: TestKube;
  let core: CoreV1Api;
  const log = createLogger('events-test', 'silent');

  before(async () => {
    kube = await startTestKube();
    core = kube.kc.makeApiClient(CoreV1Api);
  });
  after(() => kube?.stop());

  const pod = (name: string): V1Pod => ({
    metadata: { name, namespace: 'default', uid: `uid-${name}` },
  });

  async function eventsOf(name: string): Promise<CoreV1Event[]> {
    const list = await core.listNamespacedEvent({
      namespace: 'default',
      fieldSelector: `involvedObject.name=${name}`,
    });
    return list.items;
  }

  it('records every event in the background, each once, with the node as its source', async () => {
    const events = new KubeEventRecorder({ core, nodeName: 'kip', log });
    const p = pod('many');
    for (let i = 0; i < 40; i++) await events.record(p, 'Normal', `Step${i}`, `step ${i}`);
    await events.flush();
    const got = await eventsOf('many');
    assert.equal(got.length, 40);
    assert.deepEqual(new Set(got.map((e) => e.reason)).size, 40);
    assert.ok(
      got.every((e) => e.source?.host === 'kip' && e.involvedObject.uid === 'uid-many' && e.count === 1),
    );
  });

  it('repeats of one event count up a single Event, in order, whether still queued or written', async () => {
    const events = new KubeEventRecorder({ core, nodeName: 'kip', log, concurrency: 1 });
    const p = pod('repeats');
    // Three at once: the first is being written, the second waits and the third joins it.
    await events.record(p, 'Warning', 'BackOff', 'back-off restarting');
    await events.record(p, 'Warning', 'BackOff', 'back-off restarting');
    await events.record(p, 'Warning', 'BackOff', 'back-off restarting');
    await events.flush();
    await events.record(p, 'Warning', 'BackOff', 'back-off restarting');
    await events.flush();
    const got = await eventsOf('repeats');
    assert.equal(got.length, 1);
    assert.equal(got[0]!.count, 4);
    assert.ok(new Date(got[0]!.lastTimestamp!).getTime() >= new Date(got[0]!.firstTimestamp!).getTime());
  });

  it('drops events beyond its queue instead of growing without bound', async () => {
    const events = new KubeEventRecorder({ core, nodeName: 'kip', log, concurrency: 1, maxQueued: 5 });
    const p = pod('flood');
    for (let i = 0; i < 30; i++) await events.record(p, 'Normal', `Flood${i}`, `flood ${i}`);
    await events.flush();
    const got = await eventsOf('flood');
    assert.ok(got.length >= 5 && got.length < 30, `${got.length} events written`);
  });
});
