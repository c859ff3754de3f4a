import assert from 'node:assert/strict';
import type { ContainerStatus, PodStatusReply } from '../../lib/cell-agent-api.ts';
import { buildImage, pushImage } from '../support/images.ts';
import {
  startRegistry,
  startRegistryProxy,
  type StartedProxy,
  type StartedRegistry,
} from '../support/registry.ts';
import {
  createCellNetwork,
  forwardTcp,
  makePod,
  startAgent,
  waitForStatus,
  type TestAgent,
  type TestCellNetwork,
  freeCell,
  isTerminal,
} from './support.ts';

const first = (s: PodStatusReply): ContainerStatus => s.containerStatuses[0]!;

describe('cell agent: pulling images from real registries', function () {
  this.timeout(60_000);
  const creds = { username: 'kip', password: 'pull-secret-1' };
  let cell: TestCellNetwork;
  let open: StartedRegistry;
  let locked: StartedRegistry;
  let corrupting: StartedProxy;
  const forwards: { host: string; close(): void }[] = [];
  let agent: TestAgent;
  let layout: string;
  let openHost: string;
  let lockedHost: string;
  let corruptHost: string;

  before(async () => {
    cell = createCellNetwork();
    [open, locked] = await Promise.all([startRegistry(), startRegistry({ htpasswd: creds })]);
    corrupting = await startRegistryProxy(open.host, { corrupt: /\/blobs\/sha256:/ });
    for (const target of [open.host, locked.host, corrupting.host])
      forwards.push(await forwardTcp(cell.hostIP, target));
    [openHost, lockedHost, corruptHost] = forwards.map((f) => f.host) as [string, string, string];
    layout = await buildImage({
      name: 'kip-test/busybox',
      tag: '1',
      cmd: ['sh', '-c', 'echo pulled; exec sleep 3600'],
    });
    await pushImage(layout, '1', locked.host, creds, { repository: 'private/app' });
    // Content of its own, so no blob of it is already in the agent's store when it is pulled.
    const distinct = await buildImage({
      name: 'kip-test/distinct',
      tag: '1',
      cmd: ['sh'],
      files: { '/marker': 'corrupted copy' },
    });
    await pushImage(distinct, '1', open.host, undefined, { repository: 'kip-test/corrupted' });
    agent = await startAgent(cell, { insecureRegistries: [openHost, lockedHost, corruptHost] });
  });
  after(async () => {
    await agent?.stop();
    for (const f of forwards) f.close();
    await corrupting?.stop();
    await open?.stop();
    await locked?.stop();
    cell?.remove();
  });
  afterEach(() => freeCell(agent.client));

  it('reports a missing image as ErrImagePull then ImagePullBackOff, and recovers once it is pushed', async () => {
    const ref = `${openHost}/kip-test/later:1`;
    await agent.client.putPod({
      pod: makePod('missing', { containers: [{ name: 'app', image: ref }] }) as never,
    });
    let s = await waitForStatus(agent.client, (x) => first(x).state.waiting?.reason === 'ErrImagePull');
    assert.match(
      first(s).state.waiting!.message!,
      new RegExp(`Failed to pull image "${ref.replace(/[.]/g, '\\.')}": .*not found`, 'i'),
    );
    assert.equal(s.phase, 'Pending');
    s = await waitForStatus(agent.client, (x) => first(x).state.waiting?.reason === 'ImagePullBackOff');
    assert.equal(first(s).state.waiting!.message, `Back-off pulling image "${ref}"`);
    assert.equal((await agent.client.healthz()).version, 'v1', 'the agent keeps serving');
    await pushImage(layout, '1', open.host, undefined, { repository: 'kip-test/later' });
    s = await waitForStatus(agent.client, (x) => !!first(x).state.running, 20_000);
    assert.equal(s.phase, 'Running');
  });

  it('refuses an image whose blob does not match its digest', async () => {
    const ref = `${corruptHost}/kip-test/corrupted:1`;
    await agent.client.putPod({
      pod: makePod('corrupt', { containers: [{ name: 'app', image: ref }] }) as never,
    });
    const s = await waitForStatus(agent.client, (x) => first(x).state.waiting?.reason === 'ErrImagePull');
    assert.match(first(s).state.waiting!.message!, /digest|sha256/i);
    assert.ok(!first(s).state.running);
  });

  it("pulls from a registry with basic auth using the pod's imagePullSecrets, and fails without them", async () => {
    const ref = `${lockedHost}/private/app:1`;
    await agent.client.putPod({
      pod: makePod('nocreds', { containers: [{ name: 'app', image: ref }] }) as never,
    });
    const denied = await waitForStatus(
      agent.client,
      (x) => first(x).state.waiting?.reason === 'ErrImagePull',
    );
    assert.match(first(denied).state.waiting!.message!, /unauthori[sz]ed|credentials|401/i);
    await agent.client.deletePod(0);
    await waitForStatus(agent.client, isTerminal);

    const auth = Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
    await agent.client.putPod({
      pod: makePod('withcreds', { containers: [{ name: 'app', image: ref }] }) as never,
      imagePullSecrets: [JSON.stringify({ auths: { [lockedHost]: { auth } } })],
    });
    const s = await waitForStatus(agent.client, (x) => !!first(x).state.running, 20_000);
    assert.match(first(s).imageID, new RegExp(`^${lockedHost.replace(/[.]/g, '\\.')}/private/app@sha256:`));
  });
});
