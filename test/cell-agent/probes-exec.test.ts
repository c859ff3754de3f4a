import assert from 'node:assert/strict';
import { text } from 'node:stream/consumers';
import WebSocket from 'ws';
import { makePod, waitForStatus, type TestAgent, isTerminal, useImageAgent } from './support.ts';

describe('cell agent: probes, exec, stats and graceful delete', function () {
  this.timeout(60_000);
  let agent: TestAgent;
  let image: string;
  useImageAgent((s) => ({ agent, image } = s));

  const exec = async (container: string, command: string[], stdin?: string) => {
    const session = agent.client.exec(container, command, {
      stdout: true,
      stderr: true,
      stdin: stdin !== undefined,
    });
    if (stdin !== undefined) {
      session.write(stdin);
      session.end();
    }
    const [stdout, stderr, result] = await Promise.all([
      text(session.stdout),
      text(session.stderr),
      session.done,
    ]);
    return { stdout, stderr, exitCode: result.exitCode, status: result.status };
  };

  it('execs with stdout, stderr, stdin and the exit code on the status channel', async () => {
    await agent.client.putPod({
      pod: makePod('exec', { containers: [{ name: 'box', image, command: ['sleep', '3600'] }] }) as never,
    });
    await waitForStatus(agent.client, (s) => !!s.containerStatuses[0]!.state.running);
    const r = await exec('box', ['sh', '-c', 'echo out; echo err >&2; exit 7']);
    assert.deepEqual([r.stdout, r.stderr, r.exitCode], ['out\n', 'err\n', 7]);
    assert.equal(r.status.reason, 'NonZeroExitCode');
    const ok = await exec('box', ['cat'], 'hello through stdin');
    assert.deepEqual([ok.stdout, ok.exitCode, ok.status.status], ['hello through stdin', 0, 'Success']);
    const host = await exec('box', ['hostname']);
    assert.equal(host.stdout, 'exec\n');

    // A client that offers only v4 (and sends a resize, which is accepted) gets the same channels.
    const url = `${agent.baseUrl.replace('https', 'wss')}/v1/pod/containers/box/exec?command=sh&command=-c&command=echo%20v4;exit%205&stdout=1`;
    const ws = new WebSocket(url, ['v4.channel.k8s.io'], {
      ca: agent.pki.ca.certPem,
      cert: agent.pki.client.certPem,
      key: agent.pki.client.keyPem,
    });
    const frames: Buffer[] = [];
    ws.on('open', () => ws.send(Buffer.concat([Buffer.from([4]), Buffer.from('{"Width":80,"Height":24}')])));
    ws.on('message', (d: Buffer) => frames.push(d));
    await new Promise((r) => ws.on('close', r));
    assert.equal(ws.protocol, 'v4.channel.k8s.io');
    assert.equal(
      Buffer.concat(frames.filter((f) => f[0] === 1).map((f) => f.subarray(1))).toString(),
      'v4\n',
    );
    const status = JSON.parse(
      frames
        .find((f) => f[0] === 3)!
        .subarray(1)
        .toString(),
    ) as { details: { causes: { message: string }[] } };
    assert.equal(status.details.causes[0]!.message, '5');
  });

  it('drives ready and the Ready conditions from the readiness probe', async () => {
    await agent.client.putPod({
      pod: makePod('ready', {
        containers: [
          {
            name: 'web',
            image,
            command: ['sh', '-c', 'mkdir -p /www; exec httpd -f -p 8081 -h /www'],
            readinessProbe: {
              httpGet: { path: '/ready', port: 8081 },
              periodSeconds: 1,
              failureThreshold: 1,
            },
          },
        ],
      }) as never,
    });
    let s = await waitForStatus(agent.client, (x) => !!x.containerStatuses[0]!.state.running);
    assert.equal(s.containerStatuses[0]!.ready, false);
    const cr = s.conditions.find((c) => c.type === 'ContainersReady')!;
    assert.deepEqual(
      [cr.status, cr.reason, cr.message],
      ['False', 'ContainersNotReady', 'containers with unready status: [web]'],
    );
    await exec('web', ['touch', '/www/ready']);
    s = await waitForStatus(agent.client, (x) => x.containerStatuses[0]!.ready, 10_000);
    assert.equal(s.conditions.find((c) => c.type === 'Ready')!.status, 'True');
    await exec('web', ['rm', '/www/ready']);
    s = await waitForStatus(agent.client, (x) => !x.containerStatuses[0]!.ready, 10_000);
    assert.equal(s.conditions.find((c) => c.type === 'Ready')!.status, 'False');
    assert.equal(s.containerStatuses[0]!.restartCount, 0, 'readiness never restarts');
  });

  it('holds started and ready until the startup probe (tcpSocket) passes; the status long-poll waits for changes', async () => {
    await agent.client.putPod({
      pod: makePod('startup', {
        containers: [
          {
            name: 'slow',
            image,
            command: ['sh', '-c', 'sleep 1.5; mkdir -p /www; exec httpd -f -p 8082 -h /www'],
            startupProbe: { tcpSocket: { port: 8082 }, periodSeconds: 1, failureThreshold: 10 },
          },
        ],
      }) as never,
    });
    let s = await waitForStatus(agent.client, (x) => !!x.containerStatuses[0]!.state.running);
    assert.equal(s.containerStatuses[0]!.started, false);
    assert.equal(s.containerStatuses[0]!.ready, false);
    s = await waitForStatus(
      agent.client,
      (x) => x.containerStatuses[0]!.started && x.containerStatuses[0]!.ready,
      10_000,
    );
    assert.equal(s.conditions.find((c) => c.type === 'Ready')!.status, 'True');
    // Nothing changes now: a long-poll is held for its whole wait and returns the same version.
    const t0 = Date.now();
    const same = await agent.client.getStatus({ after: s.version, wait: 1 });
    assert.ok(Date.now() - t0 >= 900, 'held for the wait');
    assert.equal(same.version, s.version);
  });

  it('restarts a container whose liveness probe fails', async () => {
    await agent.client.putPod({
      pod: makePod('live', {
        terminationGracePeriodSeconds: 1,
        containers: [
          {
            name: 'app',
            image,
            command: ['sh', '-c', 'touch /tmp/healthy; sleep 1; rm /tmp/healthy; exec sleep 3600'],
            livenessProbe: {
              exec: { command: ['cat', '/tmp/healthy'] },
              periodSeconds: 1,
              failureThreshold: 2,
            },
          },
        ],
      }) as never,
    });
    const s = await waitForStatus(agent.client, (x) => x.containerStatuses[0]!.restartCount >= 1, 20_000);
    const last = s.containerStatuses[0]!.lastState.terminated!;
    assert.equal(
      last.exitCode,
      137,
      'sleep ignores SIGTERM as PID 1, so it was killed after the grace period',
    );
    assert.equal(last.reason, 'Error');
  });

  it('reports CPU and memory from cgroups, within the CPU limit', async () => {
    await agent.client.putPod({
      pod: makePod('stats', {
        containers: [
          {
            name: 'spin',
            image,
            command: ['sh', '-c', 'while :; do :; done'],
            resources: { limits: { cpu: '100m', memory: '32Mi' } },
          },
          { name: 'idle', image, command: ['sleep', '3600'] },
        ],
      }) as never,
    });
    await waitForStatus(agent.client, (x) => x.containerStatuses.every((c) => !!c.state.running));
    // The rate is measured between two reads: a baseline now and the read 3 s later, so the window
    // is long enough for the CFS quota (100 ms periods) to show, whatever read came before.
    await new Promise((r) => setTimeout(r, 1000));
    await agent.client.stats();
    // On a machine busy with other suites the spinning container (a small CPU weight) may get
    // next to nothing for a window: read again, a few times at most, until it shows.
    let st = await agent.client.stats();
    let spin = st.containers.find((c) => c.name === 'spin')!;
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 3000));
      st = await agent.client.stats();
      spin = st.containers.find((c) => c.name === 'spin')!;
      assert.ok(
        spin.cpu.usageNanoCores! < 250e6,
        `spin uses ${spin.cpu.usageNanoCores} nanocores under a 100m limit`,
      );
      if (spin.cpu.usageNanoCores! > 5e6) break;
    }
    assert.equal(st.podRef.name, 'stats');
    assert.ok(spin.cpu.usageCoreNanoSeconds > 0);
    assert.ok(spin.cpu.usageNanoCores! > 5e6, `spin uses ${spin.cpu.usageNanoCores} nanocores`);
    assert.ok(spin.memory.workingSetBytes > 0 && spin.memory.availableBytes! <= 32 * 1024 * 1024);
    assert.equal(st.containers.length, 2);
    assert.ok(st.cpu.usageCoreNanoSeconds >= spin.cpu.usageCoreNanoSeconds);
  });

  it('deletes gracefully: SIGTERM reaches the trap, SIGKILL follows the grace period', async () => {
    await agent.client.putPod({
      pod: makePod('graceful', {
        containers: [
          {
            name: 'polite',
            image,
            command: [
              'sh',
              '-c',
              'trap "echo got TERM; exit 0" TERM; echo started; while :; do sleep 0.1; done',
            ],
            // Writes to the container's own stdout, so the log shows the hook ran before SIGTERM.
            lifecycle: { preStop: { exec: { command: ['sh', '-c', 'echo preStop > /proc/1/fd/1'] } } },
          },
          {
            name: 'stubborn',
            image,
            command: ['sh', '-c', 'trap "echo ignoring TERM" TERM; while :; do sleep 0.1; done'],
          },
        ],
      }) as never,
    });
    await waitForStatus(agent.client, (x) => x.containerStatuses.every((c) => !!c.state.running));
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    const atDelete = await agent.client.deletePod(2);
    assert.equal(atDelete.deleted, undefined, 'not deleted until the containers stopped');
    const s = await waitForStatus(agent.client, (x) => x.deleted === true, 15_000);
    assert.ok(isTerminal(s));
    const took = Date.now() - t0;
    assert.ok(took >= 1800 && took < 8000, `stopped after ${took} ms with a 2 s grace period`);
    const by = Object.fromEntries(s.containerStatuses.map((c) => [c.name, c.state.terminated!]));
    assert.equal(by.polite!.exitCode, 0);
    assert.equal(by.stubborn!.exitCode, 137);
    assert.equal(s.phase, 'Failed');
    assert.equal(s.deleted, true);
    assert.equal(s.conditions.find((c) => c.type === 'PodReadyToStartContainers')!.status, 'False');
    assert.equal(await text(await agent.client.logs('polite')), 'started\npreStop\ngot TERM\n');
    assert.match(await text(await agent.client.logs('stubborn')), /ignoring TERM/);
  });
});
