import assert from 'node:assert/strict';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { eventually, startTestKube, type TestKube } from '../testing/kube.ts';
import { KubeDnsAddress } from './cluster-dns.ts';
import { DispatchConfigError, resolveDispatch } from './pod-dispatch.ts';
import { qosClass, statusFromAgent, waitingStatus } from './pod-status.ts';
import { unsupportedFeatures } from './unsupported-features.ts';

const fromB64 = (s: string | undefined) => Buffer.from(s ?? '', 'base64').toString();

describe('pod dispatch resolution (kube emulator)', function () {
  this.timeout(30_000);
  let kube: TestKube;
  let core: CoreV1Api;

  before(async () => {
    kube = await startTestKube();
    core = kube.kc.makeApiClient(CoreV1Api);
    await core.createNamespacedConfigMap({
      namespace: 'default',
      body: { metadata: { name: 'settings' }, data: { mode: 'fast', 'app.conf': 'x=1\n' } },
    });
    await core.createNamespacedSecret({
      namespace: 'default',
      body: {
        metadata: { name: 'creds' },
        data: { password: Buffer.from('s3cret').toString('base64') },
      },
    });
    await core.createNamespacedSecret({
      namespace: 'default',
      body: {
        metadata: { name: 'pull' },
        type: 'kubernetes.io/dockerconfigjson',
        data: {
          '.dockerconfigjson': Buffer.from(
            JSON.stringify({ auths: { 'r.example': { auth: 'dTpw' } } }),
          ).toString('base64'),
        },
      },
    });
    await eventually(
      async () =>
        (await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' })).metadata,
      10_000,
      'default service account',
    ).catch(() =>
      core.createNamespacedServiceAccount({ namespace: 'default', body: { metadata: { name: 'default' } } }),
    );
  });
  after(() => kube?.stop());

  const withUid = (uid: string, spec: Partial<V1Pod['spec']> & object): V1Pod => {
    const p = pod(spec);
    p.metadata!.uid = uid;
    return p;
  };
  const pod = (spec: Partial<V1Pod['spec']> & object): V1Pod => ({
    metadata: {
      name: 'p',
      namespace: 'default',
      uid: '0f2c2a0e-1111-4222-8333-944445555666',
      labels: { app: 'a' },
    },
    spec: { containers: [{ name: 'c', image: 'busybox' }], ...spec },
  });

  it('resolves configMap, secret, projected token and downwardAPI volumes to files', async () => {
    // The token is bound to the pod, so the pod must exist.
    const created = await core.createNamespacedPod({
      namespace: 'default',
      body: { metadata: { name: 'p' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } },
    });
    const { request, tokenExpiry } = await resolveDispatch(
      withUid(created.metadata!.uid!, {
        volumes: [
          {
            name: 'cfg',
            configMap: { name: 'settings', items: [{ key: 'app.conf', path: 'conf/app.conf' }] },
          },
          { name: 'sec', secret: { secretName: 'creds' } },
          {
            name: 'api',
            projected: {
              sources: [
                { serviceAccountToken: { path: 'token', expirationSeconds: 3600, audience: 'vault' } },
                { configMap: { name: 'settings', items: [{ key: 'mode', path: 'mode' }] } },
                { downwardAPI: { items: [{ path: 'ns', fieldRef: { fieldPath: 'metadata.namespace' } }] } },
              ],
            },
          },
        ],
      }),
      { core },
    );
    assert.deepEqual(Object.keys(request.volumes!.cfg!.files), ['conf/app.conf']);
    assert.equal(fromB64(request.volumes!.cfg!.files['conf/app.conf']), 'x=1\n');
    assert.equal(fromB64(request.volumes!.sec!.files.password), 's3cret');
    const api = request.volumes!.api!.files;
    assert.equal(fromB64(api.mode), 'fast');
    assert.equal(fromB64(api.ns), 'default');
    const jwt = fromB64(api.token).split('.');
    assert.equal(jwt.length, 3, 'a JWT from the TokenRequest API');
    const claims = JSON.parse(Buffer.from(jwt[1]!, 'base64url').toString()) as { aud: string[] };
    assert.deepEqual(claims.aud, ['vault']);
    assert.ok(tokenExpiry && tokenExpiry.getTime() > Date.now() + 3000_000, 'expiry about an hour out');
  });

  it('resolves env from configMapKeyRef, secretKeyRef and envFrom; later entries win; fieldRef left for the agent', async () => {
    const { request } = await resolveDispatch(
      pod({
        containers: [
          {
            name: 'c',
            image: 'busybox',
            envFrom: [{ configMapRef: { name: 'settings' }, prefix: 'CFG_' }],
            env: [
              { name: 'CFG_mode', value: 'slow' },
              { name: 'PASSWORD', valueFrom: { secretKeyRef: { name: 'creds', key: 'password' } } },
              { name: 'MODE', valueFrom: { configMapKeyRef: { name: 'settings', key: 'mode' } } },
              { name: 'GONE', valueFrom: { configMapKeyRef: { name: 'nope', key: 'x', optional: true } } },
              { name: 'IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
            ],
          },
        ],
      }),
      { core },
    );
    const c = request.pod.spec!.containers[0]!;
    assert.equal(c.envFrom, undefined);
    const env = Object.fromEntries(c.env!.map((e) => [e.name, e.value ?? e.valueFrom]));
    assert.equal(env.CFG_mode, 'slow');
    assert.equal(env['CFG_app.conf'], 'x=1\n');
    assert.equal(env.PASSWORD, 's3cret');
    assert.equal(env.MODE, 'fast');
    assert.ok(!('GONE' in env));
    assert.deepEqual(env.IP, { fieldRef: { fieldPath: 'status.podIP' } });
  });

  it('a missing ConfigMap or key is a DispatchConfigError naming the field', async () => {
    await assert.rejects(
      resolveDispatch(
        pod({
          containers: [
            {
              name: 'c',
              image: 'busybox',
              env: [{ name: 'X', valueFrom: { configMapKeyRef: { name: 'settings', key: 'missing' } } }],
            },
          ],
        }),
        { core },
      ),
      (e: unknown) =>
        e instanceof DispatchConfigError &&
        e.field === 'spec.containers[0].env[0]' &&
        /has no key "missing"/.test(e.message),
    );
    await assert.rejects(
      resolveDispatch(pod({ volumes: [{ name: 'v', secret: { secretName: 'absent' } }] }), { core }),
      (e: unknown) => e instanceof DispatchConfigError && e.field === 'spec.volumes[0].secret',
    );
  });

  it('image pull secrets become .dockerconfigjson documents; a missing one is a warning', async () => {
    const { request, warnings } = await resolveDispatch(
      pod({ imagePullSecrets: [{ name: 'pull' }, { name: 'absent' }] }),
      { core },
    );
    assert.deepEqual(JSON.parse(request.imagePullSecrets![0] as string), {
      auths: { 'r.example': { auth: 'dTpw' } },
    });
    assert.equal(request.imagePullSecrets!.length, 1);
    assert.match(warnings[0]!, /"absent" not found/);
  });

  it('cluster DNS: kube-dns IP, search path and ndots 5 for ClusterFirst; nothing for Default or without kube-dns', async () => {
    assert.equal((await resolveDispatch(pod({}), { core })).request.dns, undefined);
    // kube-system may already exist in the emulator; creating it again is a harmless 409.
    await core.createNamespace({ body: { metadata: { name: 'kube-system' } } }).catch(() => undefined);
    await core.createNamespacedService({
      namespace: 'kube-system',
      body: {
        metadata: { name: 'kube-dns' },
        spec: { clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] },
      },
    });
    const { request } = await resolveDispatch(pod({}), { core });
    assert.deepEqual(request.dns, {
      nameservers: ['10.96.0.10'],
      searches: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'],
      options: [{ name: 'ndots', value: '5' }],
    });
    assert.equal((await resolveDispatch(pod({ dnsPolicy: 'Default' }), { core })).request.dns, undefined);
  });

  it('the kube-dns address is read once for a burst of pods and again after its TTL', async () => {
    await core.createNamespace({ body: { metadata: { name: 'kube-system' } } }).catch(() => undefined);
    await core
      .createNamespacedService({
        namespace: 'kube-system',
        body: { metadata: { name: 'kube-dns' }, spec: { clusterIP: '10.96.0.10', ports: [{ port: 53 }] } },
      })
      .catch(() => undefined);
    let now = 0;
    const kubeDns = new KubeDnsAddress(core, 30_000, () => now);
    const reads = await kubeReads();
    const all = await Promise.all(
      Array.from({ length: 20 }, () => resolveDispatch(pod({}), { core, kubeDns })),
    );
    assert.ok(all.every((r) => r.request.dns?.nameservers[0] === '10.96.0.10'));
    assert.equal((await kubeReads()) - reads, 1);
    now += 31_000;
    await resolveDispatch(pod({}), { core, kubeDns });
    assert.equal((await kubeReads()) - reads, 2);
  });

  /** GETs of services the emulator has answered so far (every response code). */
  async function kubeReads(): Promise<number> {
    const text = await (
      await fetch(`${kube.emulator.url}/metrics`, {
        headers: { authorization: `Bearer ${kube.emulator.adminToken}` },
      })
    ).text();
    return text
      .split('\n')
      .filter((l) => /^kube_emulator_requests_total\{.*verb="get".*resource="services"/.test(l))
      .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
  }
});

describe('unsupported features and pod status', () => {
  it('names every unsupported field and accepts what the agent can run', () => {
    const found = unsupportedFeatures({
      spec: {
        hostNetwork: true,
        containers: [{ name: 'c', image: 'i', tty: true, livenessProbe: { grpc: { port: 1 } } }],
        volumes: [
          { name: 'ok', emptyDir: {} },
          { name: 'cfg', configMap: { name: 'x' } },
          { name: 'nfs', nfs: { server: 's', path: '/' } },
          { name: 'p', projected: { sources: [{ clusterTrustBundle: { path: 'b' } }] } },
        ],
      },
    });
    assert.deepEqual(
      found.map((f) => f.field),
      [
        'spec.volumes[2].nfs',
        'spec.volumes[3].projected.sources[0].clusterTrustBundle',
        'spec.hostNetwork',
        'spec.containers[0].tty',
        'spec.containers[0].livenessProbe.grpc',
      ],
    );
    assert.deepEqual(unsupportedFeatures({ spec: { containers: [{ name: 'c', image: 'i' }] } }), []);
    assert.deepEqual(
      unsupportedFeatures({
        spec: { containers: [{ name: 'c', image: 'i', stdin: true, stdinOnce: true }] },
      }),
      [],
      'stdin containers run (kubectl attach -i)',
    );
  });

  it('QoS class by the kubelet rules', () => {
    const c = (resources: object) => ({ spec: { containers: [{ name: 'c', image: 'i', resources }] } });
    assert.equal(qosClass(c({})), 'BestEffort');
    assert.equal(qosClass(c({ requests: { cpu: '1' } })), 'Burstable');
    assert.equal(qosClass(c({ limits: { cpu: '1', memory: '1Gi' } })), 'Guaranteed');
    assert.equal(
      qosClass(c({ requests: { cpu: '500m' }, limits: { cpu: '1', memory: '1Gi' } })),
      'Burstable',
    );
  });

  it('waiting status while the cell boots, and the agent status with the cell address', () => {
    const p: V1Pod = { spec: { containers: [{ name: 'c', image: 'img' }] } };
    const w = waitingStatus(p, 'CellBooting', 'creating VM kip-x') as unknown as Record<string, unknown>;
    assert.equal(w.phase, 'Pending');
    assert.deepEqual((w.containerStatuses as { state: unknown }[])[0]!.state, {
      waiting: { reason: 'CellBooting', message: 'creating VM kip-x' },
    });
    const s = statusFromAgent(
      {
        version: 3,
        uid: 'u',
        phase: 'Running',
        conditions: [],
        containerStatuses: [],
        initContainerStatuses: [],
        qosClass: 'BestEffort',
        startTime: '2026-01-01T00:00:00Z',
      },
      '198.18.0.5',
    ) as unknown as Record<string, unknown>;
    assert.equal(s.podIP, '198.18.0.5');
    assert.equal(s.hostIP, '198.18.0.5');
    assert.equal(s.reason, null, 'the provider’s waiting reason is cleared');
  });
});
