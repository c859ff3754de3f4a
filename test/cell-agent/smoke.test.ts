import assert from 'node:assert/strict';
import { buildImage, pushImage } from '../support/images.ts';
import { startRegistry, type StartedRegistry } from '../support/registry.ts';
import {
  createCellNetwork,
  forwardTcp,
  makePod,
  startAgent,
  waitForStatus,
  type TestAgent,
  type TestCellNetwork,
} from './support.ts';

describe('cell agent smoke', function () {
  this.timeout(60_000);
  let cell: TestCellNetwork;
  let registry: StartedRegistry;
  let fwd: { host: string; close(): void };
  let agent: TestAgent;
  let image: string;
  before(async () => {
    cell = createCellNetwork();
    registry = await startRegistry();
    fwd = await forwardTcp(cell.hostIP, registry.host);
    const layout = await buildImage({ name: 'kip-test/busybox', tag: '1', cmd: ['sh'] });
    await pushImage(layout, '1', registry.host);
    image = `${fwd.host}/kip-test/busybox:1`;
    agent = await startAgent(cell, { insecureRegistries: [fwd.host] });
  });
  after(async () => {
    await agent?.stop();
    fwd?.close();
    await registry?.stop();
    cell?.remove();
  });
  it('runs a pod', async () => {
    const pod = makePod('smoke', {
      restartPolicy: 'Never',
      containers: [{ name: 'a', image, command: ['sh', '-c', 'echo hello; echo err >&2; exit 3'] }],
    });
    await agent.client.putPod({ pod: pod as never });
    const s = await waitForStatus(agent.client, (s) => s.phase === 'Failed');
    console.log(JSON.stringify(s, null, 1));
    assert.equal(s.containerStatuses[0]!.state.terminated!.exitCode, 3);
  });
});
