/**
 * The provider end to end in the lab, as a user drives it with real kubectl: a pod applied runs in
 * its own cell (podIP = the VM's networkIP), logs, exec, attach (and run -i), deletion,
 * completion, a missing image, and a provider killed with SIGKILL while pods boot.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'mocha';
import { startLab, type LabInstance, type TestLab } from '../support/lab.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(300);
  }
}

describe('pods on the virtual node (e2e, real kubectl)', function () {
  this.timeout(120_000);
  let lab: TestLab;

  before(async () => {
    lab = await startLab();
  });
  after(async () => {
    await lab?.stop();
  });

  const get = async (name: string, path: string) =>
    (await lab.kubectlOk(['get', 'pod', name, '-o', `jsonpath={${path}}`])).trim();

  /** `kubectl wait` for a phase; on failure the assertion shows `kubectl describe` and the provider log. */
  async function waitPhase(target: string[], phase: string, seconds = 90): Promise<void> {
    const r = await lab.kubectl(
      ['wait', `--for=jsonpath={.status.phase}=${phase}`, ...target, `--timeout=${seconds}s`],
      {
        timeoutMs: (seconds + 10) * 1000,
      },
    );
    if (r.code !== 0) {
      const describe = await lab.kubectl(['describe', 'pod', ...target.map((t) => t.replace(/^pod\//, ''))]);
      assert.fail(
        `${target.join(' ')} not ${phase}: ${r.stderr}\n${describe.stdout}\n--- provider log ---\n${lab.logTail('provider')}`,
      );
    }
  }

  async function cellOf(pod: string): Promise<LabInstance | undefined> {
    const uid = await get(pod, '.metadata.uid');
    return (await lab.instances()).find((i) => i.labels['kip-pod-uid'] === uid);
  }

  it('kubectl apply: the pod runs in its own cell, podIP = the VM address', async () => {
    await lab.kubectlOk(['apply', '-f', '-'], { input: lab.example('hello.yaml') });
    await waitPhase(['pod/hello'], 'Running');
    const cell = await cellOf('hello');
    assert.ok(cell, 'a VM labelled with the pod UID');
    assert.equal(cell.status, 'RUNNING');
    assert.equal(await get('hello', '.status.podIP'), cell.networkIP);
    assert.equal(await get('hello', '.status.containerStatuses[0].ready'), 'true');
    const wide = await lab.kubectlOk(['get', 'pod', 'hello', '-o', 'wide']);
    assert.match(
      wide,
      new RegExp(
        `^hello\\s+1/1\\s+Running\\s+0\\s+\\S+\\s+${cell.networkIP.replaceAll('.', '\\.')}\\s+kip\\s`,
        'm',
      ),
    );
  });

  it('kubectl logs and logs -f show its output', async () => {
    const first = await until('a log line', async () => {
      const out = await lab.kubectlOk(['logs', 'hello']);
      return /hello from a Kip cell \(1\)/.test(out) ? out : undefined;
    });
    const seen = Number([...first.matchAll(/\((\d+)\)/g)].pop()![1]);
    const ac = new AbortController();
    let followed = '';
    const next = new RegExp(`hello from a Kip cell \\(${seen + 1}\\)`);
    const r = lab.kubectl(['logs', '-f', 'hello'], {
      signal: ac.signal,
      timeoutMs: 20_000,
      onStdout: (d) => {
        followed += d;
        if (next.test(followed)) ac.abort();
      },
    });
    await r;
    assert.match(followed, /hello from a Kip cell \(1\)/);
    assert.match(followed, next, 'a line written after the follow started');
  });

  it('kubectl exec runs a command in the pod', async () => {
    const out = await lab.kubectlOk([
      'exec',
      'hello',
      '--',
      'sh',
      '-c',
      'echo $((40 + 2)); cat /etc/hostname',
    ]);
    assert.equal(out, '42\nhello\n');
  });

  it('kubectl attach shows the output the pod writes from then on', async () => {
    const logged = await lab.kubectlOk(['logs', 'hello']);
    const last = Number([...logged.matchAll(/\((\d+)\)/g)].pop()![1]);
    const ac = new AbortController();
    let attached = '';
    const r = await lab.kubectl(['attach', 'hello'], {
      signal: ac.signal,
      timeoutMs: 20_000,
      onStdout: (d) => {
        attached += d;
        if (/hello from a Kip cell \(\d+\)\n/.test(attached)) ac.abort();
      },
    });
    const seen = [...attached.matchAll(/hello from a Kip cell \((\d+)\)/g)].map((m) => Number(m[1]));
    assert.ok(seen.length > 0, `attach printed ${JSON.stringify(attached)}; kubectl: ${r.stderr}`);
    assert.ok(seen[0]! > last, `line ${seen[0]} came after attaching (the log had ${last})`);
  });

  it('kubectl attach -i: cat in a stdin: true container echoes what is piped in (WebSocket and SPDY); stdinOnce ends the attach with the container', async () => {
    const image = /image: (\S+)/.exec(lab.example('hello.yaml'))![1]!;
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'attach' },
      spec: {
        restartPolicy: 'OnFailure',
        nodeSelector: { type: 'virtual-kubelet' },
        tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
        containers: [
          { name: 'echo', image, command: ['cat'], stdin: true },
          {
            name: 'once',
            image,
            command: ['sh', '-c', 'cat; echo stdin closed'],
            stdin: true,
            stdinOnce: true,
          },
        ],
      },
    };
    await lab.kubectlOk(['apply', '-f', '-'], { input: JSON.stringify(pod) });
    await waitPhase(['pod/attach'], 'Running');
    /** `kubectl attach -i` with `input` piped in, stopped once `want` is echoed. */
    const echo = async (input: string, want: RegExp) => {
      const ac = new AbortController();
      let out = '';
      const r = await lab.kubectl(['attach', '-i', 'attach', '-c', 'echo'], {
        input,
        signal: ac.signal,
        timeoutMs: 20_000,
        onStdout: (d) => {
          out += d;
          if (want.test(out)) ac.abort();
        },
      });
      assert.match(out, want, `kubectl: ${r.stderr}`);
    };
    await echo('ping over websocket\n', /^ping over websocket\n$/);
    // kubectl reads this variable when it starts: false makes it use SPDY, as before 1.30.
    process.env.KUBECTL_REMOTE_COMMAND_WEBSOCKETS = 'false';
    const spdy = echo('ping over spdy\n', /^ping over spdy\n$/);
    delete process.env.KUBECTL_REMOTE_COMMAND_WEBSOCKETS;
    await spdy;

    // stdinOnce: kubectl's end of input closes the container's stdin, cat ends, so does kubectl.
    const once = await lab.kubectl(['attach', '-i', 'attach', '-c', 'once'], { input: 'just once\n' });
    assert.equal(once.code, 0, once.stderr);
    assert.equal(once.stdout, 'just once\nstdin closed\n');
    await until('the once container terminated', async () =>
      (await get('attach', '.status.containerStatuses[?(@.name=="once")].state.terminated.reason')) ===
      'Completed'
        ? true
        : undefined,
    );
    const again = await lab.kubectl(['attach', 'attach', '-c', 'once']);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /container "once" is not running \(terminated: Completed\)/);
    // A container without stdin: true has no stdin to attach to.
    const noStdin = await lab.kubectl(['attach', '-i', 'hello'], { input: 'x\n' });
    assert.notEqual(noStdin.code, 0);
    assert.match(noStdin.stderr, /was not started with stdin: true/);
    assert.equal(await get('attach', '.status.phase'), 'Running', 'cat in "echo" still runs');
    await lab.kubectlOk(['delete', 'pod', 'attach', '--wait=false']);
  });

  it('kubectl run -i --rm: what is piped in reaches a new pod, its output comes back, the pod is removed', async () => {
    const image = /image: (\S+)/.exec(lab.example('hello.yaml'))![1]!;
    const overrides = {
      apiVersion: 'v1',
      spec: {
        nodeSelector: { type: 'virtual-kubelet' },
        tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists' }],
      },
    };
    // kubectl run -i makes a stdin + stdinOnce container and attaches to it.
    const r = await lab.kubectl(
      [
        'run',
        'piped',
        '-i',
        '--rm',
        '--restart=Never',
        `--image=${image}`,
        `--overrides=${JSON.stringify(overrides)}`,
        '--command',
        '--',
        'tr',
        'a-z',
        'A-Z',
      ],
      { input: 'shout this\n', timeoutMs: 90_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^SHOUT THIS\n/);
    assert.match(r.stdout, /pod "piped" deleted/);
    const gone = await lab.kubectl(['get', 'pod', 'piped']);
    assert.match(gone.stderr, /pods "piped" not found/);
  });

  it('a web server pod answers on its pod IP', async () => {
    await lab.kubectlOk(['apply', '-f', '-'], { input: lab.example('web.yaml') });
    await waitPhase(['pod/web'], 'Running');
    const ip = await get('web', '.status.podIP');
    const page = await until('the page', async () => {
      try {
        const res = await fetch(`http://${ip}:8080/`, { signal: AbortSignal.timeout(2000) });
        return res.ok ? await res.text() : undefined;
      } catch {
        return undefined;
      }
    });
    assert.match(page, /Hello from a Kip cell/);
  });

  it('kubectl delete pod: the pod and its VM are gone', async () => {
    const cell = await cellOf('hello');
    assert.ok(cell);
    await lab.kubectlOk(['delete', 'pod', 'hello', '--timeout=60s'], { timeoutMs: 70_000 });
    const r = await lab.kubectl(['get', 'pod', 'hello']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /pods "hello" not found/);
    await until('the VM deleted', async () =>
      (await lab.instances()).some((i) => i.name === cell.name) ? undefined : true,
    );
  });

  it('a restartPolicy Never pod completes: Succeeded with exit code 0, its VM deleted, the status kept', async () => {
    await lab.kubectlOk(['apply', '-f', '-'], { input: lab.example('job.yaml') });
    const uid = await until('the pod UID', async () => (await get('job', '.metadata.uid')) || undefined);
    await waitPhase(['pod/job'], 'Succeeded');
    assert.equal(await get('job', '.status.containerStatuses[0].state.terminated.exitCode'), '0');
    await until('the VM deleted', async () =>
      (await lab.instances()).some((i) => i.labels['kip-pod-uid'] === uid) ? undefined : true,
    );
    assert.equal(await get('job', '.status.phase'), 'Succeeded', 'the terminal status stays');
  });

  it('kubectl logs of the finished pod after its VM is gone: its output, --tail=1, --timestamps; --previous refused clearly; dropped when the pod is deleted; after a provider restart, a clear 404', async () => {
    // A second finished pod, for the deletion and restart checks at the end.
    await lab.kubectlOk(['apply', '-f', '-'], {
      input: lab.example('job.yaml').replace('name: job', 'name: job-2'),
    });
    assert.equal(await cellOf('job'), undefined, `no VM any more\n${lab.logTail('provider')}`);
    assert.equal(await lab.kubectlOk(['logs', 'job']), 'computing...\nresult: 42\n');
    assert.equal(await lab.kubectlOk(['logs', 'job', '--tail=1']), 'result: 42\n');
    assert.match(
      await lab.kubectlOk(['logs', 'job', '--timestamps', '--since-time=2000-01-01T00:00:00Z']),
      /^\d{4}-\d\d-\d\dT[\d:.]+Z computing\.\.\.\n\S+Z result: 42\n$/,
    );
    assert.equal(await lab.kubectlOk(['logs', 'job', '-f']), 'computing...\nresult: 42\n', '-f ends');
    const previous = await lab.kubectl(['logs', 'job', '--previous']);
    assert.notEqual(previous.code, 0);
    assert.match(previous.stderr, /previous terminated container "job" in pod "job" not found/);

    // Deleting a finished pod drops its kept logs (the provider's gauge of pods whose logs it keeps).
    const metricsUrl = lab.state.provider!.metrics;
    const keptPods = async () =>
      Number(/^kip_finished_pod_logs (\d+)$/m.exec(await (await fetch(metricsUrl)).text())?.[1]);
    await waitPhase(['pod/job-2'], 'Succeeded');
    assert.equal(await until('job-2 kept', async () => ((await keptPods()) === 2 ? 2 : undefined)), 2);
    assert.equal(await lab.kubectlOk(['logs', 'job-2', '--tail=1']), 'result: 42\n');
    await lab.kubectlOk(['delete', 'pod', 'job']);
    assert.equal(await until('job dropped', async () => ((await keptPods()) === 1 ? 1 : undefined)), 1);

    // Kept in the provider's memory only: after a restart, the error says where they went.
    await lab.killProvider();
    await lab.restartProvider();
    // The restarted provider listens on a new port; the node says so at its next status write.
    const gone = await until('the restarted provider answering', async () => {
      const r = await lab.kubectl(['logs', 'job-2']);
      return /ECONNREFUSED/.test(r.stderr) ? undefined : r;
    });
    assert.notEqual(gone.code, 0);
    assert.match(
      gone.stderr,
      /pod default\/job-2 has finished \(Succeeded\) and its VM was deleted; its logs are no longer available/,
    );
    await lab.kubectlOk(['delete', 'pod', 'job-2']);
  });

  it('a missing image: a clear waiting reason and an event', async () => {
    const manifest = lab
      .example('job.yaml')
      .replace('name: job', 'name: missing')
      .replace('kip-examples/busybox:1', 'kip-examples/missing:1');
    await lab.kubectlOk(['apply', '-f', '-'], { input: manifest });
    const reason = await until(
      'a waiting reason',
      async () => {
        const r = await get('missing', '.status.containerStatuses[0].state.waiting.reason');
        return ['ErrImagePull', 'ImagePullBackOff'].includes(r) ? r : undefined;
      },
      90_000,
    );
    assert.ok(reason);
    assert.match(
      await get('missing', '.status.containerStatuses[0].state.waiting.message'),
      /kip-examples\/missing/,
    );
    const describe = await until('an event', async () => {
      const out = await lab.kubectlOk(['describe', 'pod', 'missing']);
      return /Warning\s+\S+\s+.*kip-examples\/missing/.test(out) ? out : undefined;
    });
    assert.match(describe, /Events:/);
    await lab.kubectlOk(['delete', 'pod', 'missing', '--timeout=60s'], { timeoutMs: 70_000 });
  });

  it('provider killed with SIGKILL while 10 pods boot: exactly 10 VMs, all Running, node Ready and its Lease renewed', async function () {
    this.timeout(180_000);
    const pods = Array.from({ length: 10 }, (_, i) =>
      lab
        .example('hello.yaml')
        .replace('name: hello', `name: burst-${i}\n  labels:\n    app: burst`)
        .replace(/requests:\n\s+cpu: 100m/, 'requests:\n          cpu: 10m'),
    );
    await lab.kubectlOk(['apply', '-f', '-'], { input: pods.join('\n---\n') });
    // Kill once the cells are being made, before they have all booted.
    await until('VMs being created', async () => {
      const n = (await lab.instances()).filter((i) => i.labels['kip-pod-name']?.startsWith('burst-')).length;
      return n >= 1 ? n : undefined;
    });
    const killedAt = Date.now();
    await lab.killProvider();
    assert.match(
      await lab.kubectlOk(['get', 'node', 'kip']),
      /^kip\s+Ready\s/m,
      'Ready while the provider is down',
    );
    await lab.restartProvider();
    await waitPhase(['pod', '-l', 'app=burst'], 'Running', 120);
    const burst = (await lab.instances()).filter((i) => i.labels['kip-pod-name']?.startsWith('burst-'));
    assert.equal(burst.length, 10, `VMs: ${burst.map((i) => i.name).join(', ')}`);
    for (let i = 0; i < 10; i++) {
      const cell = await cellOf(`burst-${i}`);
      assert.ok(cell, `burst-${i} has a VM`);
      assert.equal(await get(`burst-${i}`, '.status.podIP'), cell.networkIP);
    }
    const restarts = await lab.kubectlOk([
      'get',
      'pods',
      '-l',
      'app=burst',
      '-o',
      'jsonpath={.items[*].status.containerStatuses[0].restartCount}',
    ]);
    assert.deepEqual(restarts.trim().split(/\s+/), Array(10).fill('0'));
    assert.match(await lab.kubectlOk(['get', 'node', 'kip']), /^kip\s+Ready\s/m);
    const renew = await until(
      'a lease renewal after the kill',
      async () => {
        const t = await lab.leaseRenewTime();
        return Date.parse(t) > killedAt ? t : undefined;
      },
      30_000,
    );
    assert.ok(renew);
  });
});
