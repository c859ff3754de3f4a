import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  makePod,
  startAgent,
  terminateAgent,
  waitForStatus,
  type TestAgent,
  type TestCellNetwork,
  startImageCell,
  type TestImageCell,
} from './support.ts';

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(dir));
}

function runcContainers(dataDir: string): string[] {
  const out = execFileSync('runc', ['--root', join(dataDir, 'data', 'runc'), 'list', '-q'])
    .toString()
    .trim();
  return out ? out.split('\n') : [];
}

function cgroupLeft(cellId: string): boolean {
  const own = readFileSync('/proc/self/cgroup', 'utf8').match(/^\d+:memory:(.*)$/m)?.[1] ?? '/';
  return (
    existsSync(join('/sys/fs/cgroup/memory', own, `kip-${cellId}`)) ||
    existsSync(join('/sys/fs/cgroup/cpuacct', `kip-${cellId}`))
  );
}

describe('cell agent: stopping and restarting the agent', function () {
  this.timeout(60_000);
  let site: TestImageCell;
  let cell: TestCellNetwork;
  let image: string;
  const agents: TestAgent[] = [];

  before(async () => {
    site = await startImageCell();
    ({ cell, image } = site);
  });
  after(async () => {
    for (const a of agents) await a.stop().catch(() => undefined);
    await site?.stop();
  });

  it('stops a pod deleted while its containers are still starting', async () => {
    const agent = await startAgent(cell, { insecureRegistries: [site.registryHost] });
    agents.push(agent);
    for (let i = 0; i < 3; i++) {
      const containers = ['a', 'b', 'c'].map((name) => ({ name, image, command: ['sleep', '3600'] }));
      await agent.client.putPod({ pod: makePod(`quick-${i}`, { containers }) as never });
      await new Promise((r) => setTimeout(r, i * 150));
      await agent.client.deletePod(0);
      const s = await waitForStatus(agent.client, (x) => x.deleted === true, 20_000);
      assert.ok(s.phase === 'Failed' || s.phase === 'Succeeded');
      for (const c of s.containerStatuses) assert.ok(c.state.terminated, `${c.name} terminated`);
      assert.deepEqual(runcContainers(agent.dataDir), [], 'no container outlives the deletion');
    }
    await agent.stop();
    agents.length = 0;
  });

  it('fails a pod that outlives activeDeadlineSeconds with DeadlineExceeded', async () => {
    const agent = await startAgent(cell, { insecureRegistries: [site.registryHost] });
    agents.push(agent);
    const containers = [{ name: 'a', image, command: ['sleep', '3600'] }];
    await agent.client.putPod({
      pod: makePod('deadline', {
        activeDeadlineSeconds: 1,
        terminationGracePeriodSeconds: 0,
        containers,
      }) as never,
    });
    const s = await waitForStatus(agent.client, (x) => x.phase === 'Failed', 20_000);
    assert.equal(s.reason, 'DeadlineExceeded');
    assert.equal(s.message, 'Pod was active on the node longer than the specified deadline');
    assert.equal(s.containerStatuses[0]!.state.terminated?.exitCode, 137);
    await agent.stop();
    agents.length = 0;
  });

  it('removes containers and mounts even when a second signal cuts the orderly stop short', async () => {
    const agent = await startAgent(cell, { insecureRegistries: [site.registryHost] });
    agents.push(agent);
    const containers = [
      { name: 'a', image, command: ['sh', '-c', 'trap "" TERM; while :; do sleep 0.1; done'] },
    ];
    await agent.client.putPod({ pod: makePod('twice', { containers }) as never });
    await waitForStatus(agent.client, (s) => !!s.containerStatuses[0]!.state.running);
    // What tsx does under load: it repeats SIGTERM when the child is slow to acknowledge it.
    const pid = agent.proc.ready.pid as number;
    process.kill(pid, 'SIGTERM');
    await new Promise((r) => setTimeout(r, 10));
    process.kill(pid, 'SIGTERM');
    await new Promise<void>((r) =>
      agent.proc.proc.exitCode !== null ? r() : agent.proc.proc.once('exit', () => r()),
    );
    assert.deepEqual(runcContainers(agent.dataDir), []);
    assert.deepEqual(mountsUnder(join(agent.dataDir, 'data', 'pods')), []);
    await agent.stop();
    agents.length = 0;
  });

  it('cleans up what a killed agent left, and leaves nothing behind when stopped with SIGTERM', async () => {
    const first = await startAgent(cell, { insecureRegistries: [site.registryHost] });
    agents.push(first);
    const cellId = first.proc.ready.cellId as string;
    await first.client.putPod({
      pod: makePod('left', { containers: [{ name: 'a', image, command: ['sleep', '3600'] }] }) as never,
    });
    await waitForStatus(first.client, (s) => !!s.containerStatuses[0]!.state.running);
    assert.equal(runcContainers(first.dataDir).length, 1);
    // A crash: the agent dies without stopping anything.
    process.kill(first.proc.ready.pid as number, 'SIGKILL');
    await first.proc.stop(5000);
    await first.client.close();
    assert.ok(mountsUnder(first.dataDir).length > 0, 'the killed agent left its mounts');
    // Its containers do not outlive it: the pod sandbox removes them once the agent is gone.
    for (let i = 0; i < 50 && runcContainers(first.dataDir).length > 0; i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(runcContainers(first.dataDir), [], 'containers removed after the agent died');

    const second = await startAgent(
      cell,
      { insecureRegistries: [site.registryHost] },
      { dataDir: first.dataDir, pki: first.pki },
    );
    agents.push(second);
    assert.deepEqual(runcContainers(second.dataDir), [], 'leftover containers removed at start');
    assert.deepEqual(
      mountsUnder(join(second.dataDir, 'data', 'pods')),
      [],
      'leftover mounts removed at start',
    );
    await assert.rejects(second.client.getStatus(), /no pod on this cell/);

    await second.client.putPod({
      pod: makePod('next', { containers: [{ name: 'a', image, command: ['sleep', '3600'] }] }) as never,
    });
    await waitForStatus(second.client, (s) => !!s.containerStatuses[0]!.state.running);
    const code = await terminateAgent(second.proc);
    assert.equal(
      code,
      0,
      `SIGTERM exits 0; agent log:\n${second.proc.stderr().split('\n').slice(-6).join('\n')}`,
    );
    await second.client.close();
    assert.deepEqual(runcContainers(second.dataDir), []);
    assert.deepEqual(mountsUnder(second.dataDir), []);
    assert.equal(cgroupLeft(cellId), false, 'cgroups removed');
    agents.length = 0;
    rmSync(first.dataDir, { recursive: true, force: true });
  });
});
