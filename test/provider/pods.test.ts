/**
 * The pod path end to end on real parts: etcd, the Kubernetes API emulator (with kubectl), a
 * docker-registry, the Compute Engine emulator whose netns hypervisor boots the real cell agent
 * from `kip-cell-agent-config`, and the provider itself as a child process.
 */
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { AuthenticationV1Api } from '@kubernetes/client-node';
import WebSocket from 'ws';
import { labelValue } from '../../provider/cloud/instance-names.ts';
import { eventually } from '../../provider/testing/kube.ts';
import { startProviderTestbed, type ProviderTestbed } from './testbed.ts';

interface Vm {
  name: string;
  status: string;
  ip?: string;
  created?: string;
  podUid?: string;
}

describe('provider pod path (kube emulator, GCE emulator with netns cells, real agent)', function () {
  this.timeout(150_000);
  let bed: ProviderTestbed;
  let image: string;
  const kubeletPort = () => (bed.provider!.ready as { kubeletPort: number }).kubeletPort;

  const vms = async (): Promise<Vm[]> =>
    (await bed.instances()).map((i) => ({
      name: i.name!,
      status: i.status!,
      ip: i.networkInterfaces?.[0]?.networkIP ?? undefined,
      created: i.creationTimestamp ?? undefined,
      podUid: i.labels?.['kip-pod-uid'],
    }));
  const vmFor = async (uid: string) => (await vms()).filter((v) => v.podUid === labelValue(uid));
  const getPod = (name: string) => bed.getPod(name);
  const events = (pod: string) => bed.events(pod);
  const apply = (pod: Record<string, unknown>) => bed.apply(pod);
  const podSpec = (name: string, spec: Record<string, unknown>) => bed.podSpec(name, spec);
  const running = (name: string, timeoutMs?: number) => bed.running(name, timeoutMs);

  before(async () => {
    // Tokens are rotated after 1% of their lifetime (6 s of the 600 s minimum), ConfigMaps re-read every second.
    bed = await startProviderTestbed(
      'pods',
      {},
      { volumes: { tokenRefreshFraction: 0.01, configRefreshSeconds: 1 } },
    );
    image = bed.image;
  });

  after(() => bed?.close());

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && bed?.provider)
      console.error(bed.provider.stderr().slice(-6000));
  });

  it('runs a bound pod on its own cell: Running with podIP = the VM address, logs and exec reach the container', async () => {
    await apply(podSpec('web', { containers: [{ name: 'app', image }] }));
    // While the VM boots, the pod says so.
    const waiting = await eventually(
      async () => {
        const p = await getPod('web');
        return p?.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'CellBooting' ? p : undefined;
      },
      20_000,
      'waiting reason CellBooting',
    );
    assert.match(waiting.status!.containerStatuses![0]!.state!.waiting!.message!, /VM kip-/);
    const pod = await running('web');
    const [vm, ...more] = await vmFor(pod.metadata!.uid!);
    assert.equal(more.length, 0, 'one VM for the pod');
    assert.equal(vm!.status, 'RUNNING');
    assert.equal(pod.status!.podIP, vm!.ip);
    assert.equal(pod.status!.hostIP, vm!.ip);
    assert.ok(pod.status!.startTime);
    assert.equal(pod.status!.qosClass, 'BestEffort');
    assert.equal(pod.status!.conditions!.find((c) => c.type === 'Ready')?.status, 'True');

    // kubectl logs goes API server → kubelet API → the cell's agent.
    const logs = await eventually(async () => {
      const out = await bed.kube.kubectl('logs', 'web');
      return out.includes('hello from the cell') ? out : undefined;
    }, 10_000);
    assert.match(logs, /hello from the cell/);

    const exec = await execThroughKubelet('default', 'web', 'app', [
      'sh',
      '-c',
      'echo $((6*7)); cat /etc/hostname',
    ]);
    assert.equal(exec.exitCode, 0);
    assert.equal(exec.stdout, '42\nweb\n');
    const failed = await execThroughKubelet('default', 'web', 'app', ['sh', '-c', 'exit 3']);
    assert.equal(failed.exitCode, 3);

    // Stats for metrics-server come from the cell's agent.
    const summary = JSON.parse(await kubeletGet('/stats/summary')) as {
      node: { nodeName: string };
      pods: { podRef: { name: string; uid: string }; containers: { name: string }[] }[];
    };
    assert.equal(summary.node.nodeName, 'kip');
    const webStats = summary.pods.find((p) => p.podRef.name === 'web');
    assert.equal(webStats?.podRef.uid, pod.metadata!.uid);
    assert.deepEqual(
      webStats!.containers.map((c) => c.name),
      ['app'],
    );
    assert.match(
      await kubeletGet('/metrics/resource'),
      /^container_memory_working_set_bytes\{container="app",namespace="default",pod="web"\} \d+/m,
    );

    const reasons = (await events('web')).map((e) => e.reason);
    assert.ok(reasons.includes('CellCreated'), `events: ${reasons.join(',')}`);

    const metrics = await (await fetch((bed.provider!.ready as { metrics: string }).metrics)).text();
    assert.match(metrics, /^kip_cells\{state="dispatched"\} 1$/m);
    assert.match(metrics, /^kip_cell_boot_duration_seconds_count\{machine_type="[a-z0-9-]+"\} 1$/m);
    assert.match(metrics, /^kip_pod_start_duration_seconds_count 1$/m);
    assert.match(metrics, /^kip_cloud_api_calls_total\{method="instances.insert",code="200"\} 1$/m);
    assert.match(metrics, /^kip_pod_events_total\{type="Normal",reason="CellCreated"\} 1$/m);
  });

  it('after SIGKILL the provider re-adopts running cells (no second VM, no restart), deletes cells of pods gone, creates cells for pods waiting', async () => {
    await apply(podSpec('doomed', { containers: [{ name: 'app', image }] }));
    const doomed = await running('doomed');
    const before = await running('web');
    const [vmBefore] = await vmFor(before.metadata!.uid!);
    const startedAt = before.status!.containerStatuses![0]!.state!.running!.startedAt;
    bed.provider!.proc.kill('SIGKILL');
    await new Promise((r) => bed.provider!.proc.once('exit', r));
    // While the provider is down: one pod is force-deleted, another one is bound.
    await bed.kube.kubectl('delete', 'pod', 'doomed', '--grace-period=0', '--force');
    await apply(podSpec('after-restart', { containers: [{ name: 'app', image }] }));
    assert.equal((await vmFor(doomed.metadata!.uid!)).length, 1, 'the gone pod still has its VM');
    await bed.startProvider();
    await running('after-restart');
    await eventually(
      async () => (await vmFor(doomed.metadata!.uid!)).length === 0,
      30_000,
      'dangling VM deleted',
    );
    const now = await running('web');
    const vmsNow = await vmFor(now.metadata!.uid!);
    assert.equal(vmsNow.length, 1);
    assert.equal(vmsNow[0]!.name, vmBefore!.name);
    assert.equal(vmsNow[0]!.created, vmBefore!.created);
    assert.equal(now.status!.containerStatuses![0]!.restartCount, 0);
    assert.equal(
      new Date(now.status!.containerStatuses![0]!.state!.running!.startedAt!).getTime(),
      new Date(startedAt!).getTime(),
    );
    const logs = await bed.kube.kubectl('logs', 'web');
    assert.equal(logs.match(/hello from the cell/g)?.length, 1, 'the container ran once');
  });

  it('delete: the pod is stopped, its VM deleted, then the pod is gone', async () => {
    const pod = await running('after-restart');
    const uid = pod.metadata!.uid!;
    await bed.kube.kubectl('delete', 'pod', 'after-restart', '--wait=false');
    let vmGoneAt = 0;
    let podGoneAt = 0;
    await eventually(
      async () => {
        if (!vmGoneAt && (await vmFor(uid)).length === 0) vmGoneAt = Date.now();
        if (!podGoneAt && !(await getPod('after-restart'))) podGoneAt = Date.now();
        return vmGoneAt && podGoneAt ? true : undefined;
      },
      60_000,
      'VM and pod gone',
    );
    assert.ok(vmGoneAt <= podGoneAt, 'the VM was gone before the pod');
  });

  it('a pod with restartPolicy Never completes: Succeeded kept, its VM deleted', async () => {
    await apply(
      podSpec('once', {
        restartPolicy: 'Never',
        containers: [{ name: 'job', image, command: ['sh', '-c', 'echo done'] }],
      }),
    );
    const pod = await eventually(
      async () => {
        const p = await getPod('once');
        return p?.status?.phase === 'Succeeded' ? p : undefined;
      },
      60_000,
      'pod Succeeded',
    );
    assert.equal(pod.status!.containerStatuses![0]!.state!.terminated!.exitCode, 0);
    await eventually(async () => (await vmFor(pod.metadata!.uid!)).length === 0, 30_000, 'VM deleted');
    const later = await getPod('once');
    assert.equal(later?.status?.phase, 'Succeeded');
  });

  it('a missing image: a clear waiting reason and an event', async () => {
    await apply(
      podSpec('noimage', { containers: [{ name: 'app', image: `${bed.forward.host}/does-not-exist:1` }] }),
    );
    const pod = await eventually(
      async () => {
        const p = await getPod('noimage');
        const r = p?.status?.containerStatuses?.[0]?.state?.waiting?.reason;
        return r === 'ErrImagePull' || r === 'ImagePullBackOff' ? p : undefined;
      },
      60_000,
      'ErrImagePull',
    );
    assert.match(pod.status!.containerStatuses![0]!.state!.waiting!.message!, /does-not-exist/);
    const ev = await eventually(
      async () => (await events('noimage')).find((e) => e.reason === 'ErrImagePull' && e.type === 'Warning'),
      10_000,
      'ErrImagePull event',
    );
    assert.match(ev.message!, /does-not-exist/);
    await bed.kube.kubectl('delete', 'pod', 'noimage', '--wait=false');
  });

  it('an unsupported volume: an event and a status message naming the field, and no VM', async () => {
    await apply(
      podSpec('pvc', {
        containers: [{ name: 'app', image, volumeMounts: [{ name: 'data', mountPath: '/data' }] }],
        volumes: [{ name: 'data', persistentVolumeClaim: { claimName: 'data' } }],
      }),
    );
    const pod = await eventually(
      async () => {
        const p = await getPod('pvc');
        return p?.status?.reason === 'UnsupportedPodSpec' ? p : undefined;
      },
      20_000,
      'UnsupportedPodSpec status',
    );
    assert.match(pod.status!.message!, /spec\.volumes\[0\]\.persistentVolumeClaim/);
    assert.equal(pod.status!.phase, 'Pending');
    const ev = await eventually(
      async () => (await events('pvc')).find((e) => e.reason === 'UnsupportedPodSpec'),
      10_000,
      'UnsupportedPodSpec event',
    );
    assert.equal(ev.type, 'Warning');
    assert.match(ev.message!, /persistentVolumeClaim volumes are not supported yet/);
    assert.equal((await vmFor(pod.metadata!.uid!)).length, 0);
    await bed.kube.kubectl('delete', 'pod', 'pvc', '--wait=false');
    await eventually(async () => !(await getPod('pvc')), 20_000, 'unsupported pod deleted');
  });

  it("a VM lost behind Kip's back (preempted) fails its pod with reason CellLost and an event", async () => {
    await apply(
      bed.podSpec('lost', { containers: [{ name: 'app', image }] }, { 'pod.elotl.co/launch-type': 'spot' }),
    );
    const pod = await running('lost');
    const [vm] = await vmFor(pod.metadata!.uid!);
    let preempted = false;
    for (const z of bed.emu.zones) {
      try {
        await bed.emu.admin.preempt(z, vm!.name);
        preempted = true;
        break;
      } catch {
        // not in this zone
      }
    }
    assert.ok(preempted, `preempted ${vm!.name}`);
    const failed = await eventually(
      async () => {
        const p = await getPod('lost');
        return p?.status?.phase === 'Failed' ? p : undefined;
      },
      30_000,
      'pod Failed',
    );
    assert.equal(failed.status!.reason, 'CellLost');
    assert.match(failed.status!.message!, /is gone/);
    assert.equal(failed.status!.containerStatuses![0]!.state!.terminated!.reason, 'ContainerStatusUnknown');
    assert.ok((await events('lost')).some((e) => e.reason === 'CellLost' && e.type === 'Warning'));
    await eventually(
      async () => (await vmFor(pod.metadata!.uid!)).length === 0,
      30_000,
      'stopped VM deleted',
    );
  });

  it('rotates a projected service account token in the running container, refreshes ConfigMap volumes, and says when rotation fails', async () => {
    const sa = '/var/run/secrets/kubernetes.io/serviceaccount';
    await bed.kube.kubectl('create', 'serviceaccount', 'rotator');
    await bed.kube.kubectl('create', 'configmap', 'rotator-settings', '--from-literal=greeting=hello');
    await apply(
      podSpec('rotator', {
        serviceAccountName: 'rotator',
        containers: [
          {
            name: 'app',
            image,
            volumeMounts: [
              { name: 'kube-api-access', mountPath: sa, readOnly: true },
              { name: 'settings', mountPath: '/etc/settings' },
            ],
          },
        ],
        volumes: [
          {
            name: 'kube-api-access',
            projected: {
              sources: [
                { serviceAccountToken: { path: 'token', expirationSeconds: 600 } },
                { configMap: { name: 'rotator-settings', items: [{ key: 'greeting', path: 'greeting' }] } },
                {
                  downwardAPI: {
                    items: [
                      { path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } },
                      { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
                    ],
                  },
                },
              ],
            },
          },
          { name: 'settings', configMap: { name: 'rotator-settings' } },
        ],
      }),
    );
    const pod = await running('rotator');
    const cat = (path: string) => bed.kube.kubectl('exec', 'rotator', '-c', 'app', '--', 'cat', path);
    const claims = (jwt: string) =>
      JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as {
        iat: number;
        exp: number;
        sub: string;
        'kubernetes.io': { pod: { uid: string } };
      };
    const changedFrom = (before: string, what: string) =>
      eventually(
        async () => {
          const t = await cat(`${sa}/token`);
          return t !== before ? t : undefined;
        },
        30_000,
        what,
      );

    const first = await cat(`${sa}/token`);
    const c1 = claims(first);
    assert.equal(c1.exp - c1.iat, 600);
    assert.equal(c1['kubernetes.io'].pod.uid, pod.metadata!.uid);
    const second = await changedFrom(first, 'the token file replaced in the container');
    const c2 = claims(second);
    assert.ok(c2.iat >= c1.iat + 5, `re-requested once 1% of its 600 s passed: iat ${c1.iat} -> ${c2.iat}`);
    assert.equal(c2.exp - c2.iat, 600, 'the same expirationSeconds');
    assert.equal(c2.sub, 'system:serviceaccount:default:rotator');
    assert.equal(c2['kubernetes.io'].pod.uid, pod.metadata!.uid, 'bound to the pod');
    const review = await bed.kube.kc
      .makeApiClient(AuthenticationV1Api)
      .createTokenReview({ body: { spec: { token: second } } });
    assert.equal(review.status?.authenticated, true, review.status?.error);
    assert.equal(review.status?.user?.username, 'system:serviceaccount:default:rotator');

    // A ConfigMap change reaches the configMap volume and the projected one, within seconds here.
    await bed.kube.kubectl(
      'patch',
      'configmap',
      'rotator-settings',
      '--type=merge',
      '-p',
      '{"data":{"greeting":"bonjour"}}',
    );
    await eventually(
      async () =>
        (await cat('/etc/settings/greeting')) === 'bonjour' && (await cat(`${sa}/greeting`)) === 'bonjour',
      20_000,
      'the new ConfigMap content in both volumes',
    );
    assert.equal(await cat(`${sa}/namespace`), 'default');
    // Relabelling the pod rewrites the downward API file of its labels.
    await bed.kube.kubectl('label', 'pod', 'rotator', 'tier=gold');
    await eventually(
      async () => (await cat(`${sa}/labels`)).includes('tier="gold"'),
      20_000,
      'the new label in the downward API file',
    );

    // Without its service account the token cannot be re-requested: a Warning event, then a
    // retry with backoff that succeeds once the account is back.
    await bed.kube.kubectl('delete', 'serviceaccount', 'rotator');
    const failed = await eventually(
      async () => (await events('rotator')).find((e) => e.reason === 'TokenRotationFailed'),
      30_000,
      'a TokenRotationFailed event',
    );
    assert.equal(failed.type, 'Warning');
    assert.match(failed.message!, /cannot rotate the service account token .*service account "rotator"/);
    const stale = await cat(`${sa}/token`);
    await bed.kube.kubectl('create', 'serviceaccount', 'rotator');
    const recovered = await changedFrom(stale, 'a token rotated after the account came back');

    // After a crash the restarted provider re-adopts the cell and goes on rotating its tokens.
    bed.provider!.proc.kill('SIGKILL');
    await new Promise((r) => bed.provider!.proc.once('exit', r));
    const restartedAt = Math.floor(Date.now() / 1000);
    await bed.startProvider();
    const adopted = await changedFrom(recovered, 'a token rotated by the restarted provider');
    assert.ok(claims(adopted).iat >= restartedAt, 'issued after the restart');
    assert.equal(claims(adopted)['kubernetes.io'].pod.uid, pod.metadata!.uid);

    const now = await getPod('rotator');
    assert.equal(
      now?.status?.containerStatuses?.[0]?.restartCount,
      0,
      'files replaced, container not restarted',
    );
    const reasons = (await events('rotator')).map((e) => e.reason);
    assert.ok(!reasons.includes('TokenNotRotated'), reasons.join(','));
    await bed.kube.kubectl('delete', 'pod', 'rotator', '--wait=false');
    await eventually(async () => !(await getPod('rotator')), 30_000, 'rotator pod deleted');
  });

  it('SIGTERM stops the provider cleanly and leaves running cells for the next start', async () => {
    const web = await running('web');
    const code = await bed.provider!.stop(15_000);
    assert.equal(code, 0, bed.provider!.stderr().slice(-2000));
    bed.provider = undefined;
    const [vm] = await vmFor(web.metadata!.uid!);
    assert.equal(vm?.status, 'RUNNING');
  });

  /** GET on the provider's kubelet API (authentication is off in this config). */
  async function kubeletGet(path: string): Promise<string> {
    return new Promise((resolve, reject) => {
      httpsRequest({ host: '127.0.0.1', port: kubeletPort(), path, rejectUnauthorized: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () =>
          res.statusCode === 200 ? resolve(body) : reject(new Error(`${path}: ${res.statusCode} ${body}`)),
        );
      })
        .on('error', reject)
        .end();
    });
  }

  /** Exec through the provider's kubelet API over the v5 channel protocol. */
  async function execThroughKubelet(
    ns: string,
    pod: string,
    container: string,
    command: string[],
  ): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const q = new URLSearchParams({ output: '1', error: '1' });
    for (const c of command) q.append('command', c);
    const ws = new WebSocket(
      `wss://127.0.0.1:${kubeletPort()}/exec/${ns}/${pod}/${container}?${q}`,
      ['v5.channel.k8s.io'],
      {
        rejectUnauthorized: false,
      },
    );
    const out: Record<number, string> = {};
    return new Promise((resolve, reject) => {
      ws.on('message', (d: Buffer) => (out[d[0]!] = (out[d[0]!] ?? '') + d.subarray(1).toString()));
      ws.on('error', reject);
      ws.on('unexpected-response', (_q, res) => reject(new Error(`exec answered ${res.statusCode}`)));
      ws.on('close', () => {
        const status = JSON.parse(out[3] ?? '{}') as {
          status?: string;
          details?: { causes?: { reason: string; message: string }[] };
        };
        const code = status.details?.causes?.find((c) => c.reason === 'ExitCode')?.message;
        resolve({
          exitCode: status.status === 'Success' ? 0 : Number(code ?? -1),
          stdout: out[1] ?? '',
          stderr: out[2] ?? '',
        });
      });
    });
  }
});
