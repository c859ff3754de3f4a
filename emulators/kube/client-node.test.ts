import 'reflect-metadata';
import assert from 'node:assert/strict';
import { createPublicKey, verify, webcrypto } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';
import * as x509 from '@peculiar/x509';
import { startKubeEmulator, type KubeEmulatorHandle } from '../../test/support/kube.ts';

x509.cryptoProvider.set(webcrypto as never);

type Obj = k8s.KubernetesObject & Record<string, unknown>;

interface StatusBody {
  kind: string;
  reason: string;
  message: string;
  details?: { causes?: { field?: string }[] };
}

async function apiError(p: Promise<unknown>): Promise<{ code: number; status: StatusBody }> {
  try {
    await p;
  } catch (e) {
    if (e instanceof k8s.ApiException) {
      const body = e.body as unknown;
      return {
        code: e.code,
        status: (typeof body === 'string' ? JSON.parse(body) : body) as StatusBody,
      };
    }
    throw e;
  }
  assert.fail('expected the request to fail');
}

async function csrPem(cn: string): Promise<string> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cn}, O=system:nodes`,
    keys,
    signingAlgorithm: alg,
  });
  return Buffer.from(csr.toString('pem')).toString('base64');
}

const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
const strategicPatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);
const applyPatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.ServerSideApply);

describe('kube emulator through @kubernetes/client-node', function () {
  this.timeout(30_000);
  let emu: KubeEmulatorHandle;
  let core: k8s.CoreV1Api;
  let objects: k8s.KubernetesObjectApi;

  before(async () => {
    emu = await startKubeEmulator({ args: ['--bookmark-interval', '1'] });
    core = emu.kubeConfig.makeApiClient(k8s.CoreV1Api);
    objects = k8s.KubernetesObjectApi.makeApiClient(emu.kubeConfig);
  });
  after(async () => {
    await emu?.stop();
  });

  async function raw(method: string, path: string, body?: string, contentType = 'application/json') {
    const res = await fetch(`${emu.url}${path}`, {
      method,
      headers: { 'Content-Type': contentType, Authorization: `Bearer ${emu.token}` },
      body,
    });
    const text = await res.text();
    return { code: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
  }

  describe('CRUD for every served kind', () => {
    const crd: Obj = {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'applications.app.k8s.io' },
      spec: {
        group: 'app.k8s.io',
        scope: 'Namespaced',
        names: {
          plural: 'applications',
          singular: 'application',
          kind: 'Application',
          listKind: 'ApplicationList',
        },
        versions: [
          {
            name: 'v1beta1',
            served: true,
            storage: true,
            subresources: { status: {} },
            schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
          },
        ],
      },
    };
    const podSpec = { containers: [{ name: 'c', image: 'busybox:1.36' }] };
    const template = { metadata: { labels: { app: 'w' } }, spec: podSpec };
    const samples: Obj[] = [
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'crud-ns' } },
      { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default' }, spec: podSpec },
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'n' }, spec: {} },
      {
        apiVersion: 'v1',
        kind: 'Event',
        metadata: { name: 'e', namespace: 'default' },
        involvedObject: { kind: 'Pod', name: 'p', namespace: 'default' },
        reason: 'Test',
        message: 'hello',
        type: 'Normal',
      },
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'cm', namespace: 'default' },
        data: { a: 'b' },
      },
      {
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 's', namespace: 'default' },
        stringData: { password: 'hunter2' },
      },
      {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: 'svc', namespace: 'default' },
        spec: { selector: { app: 'w' }, ports: [{ port: 80 }] },
      },
      { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'svc', namespace: 'default' }, subsets: [] },
      { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'sa', namespace: 'default' } },
      {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        metadata: { name: 'data', namespace: 'default' },
        spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      },
      {
        apiVersion: 'v1',
        kind: 'PersistentVolume',
        metadata: { name: 'pv1' },
        spec: {
          capacity: { storage: '1Gi' },
          accessModes: ['ReadWriteOnce'],
          hostPath: { path: '/tmp/pv1' },
        },
      },
      {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'd', namespace: 'default' },
        spec: { selector: { matchLabels: { app: 'w' } }, template },
      },
      {
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        metadata: { name: 'ss', namespace: 'default' },
        spec: { serviceName: 'svc', selector: { matchLabels: { app: 'w' } }, template },
      },
      {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: 'l', namespace: 'kube-node-lease' },
        spec: { holderIdentity: 'n', leaseDurationSeconds: 40 },
      },
      {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name: 'e2', namespace: 'default' },
        eventTime: '2026-01-01T00:00:00.000000Z',
        reportingController: 'kip',
        reportingInstance: 'kip-0',
        action: 'Create',
        reason: 'Test',
        regarding: { kind: 'Pod', name: 'p' },
        type: 'Normal',
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'Role',
        metadata: { name: 'r', namespace: 'default' },
        rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get'] }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'rb', namespace: 'default' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'r' },
        subjects: [{ kind: 'ServiceAccount', name: 'sa', namespace: 'default' }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRole',
        metadata: { name: 'cr' },
        rules: [{ apiGroups: [''], resources: ['nodes'], verbs: ['*'] }],
      },
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'ClusterRoleBinding',
        metadata: { name: 'crb' },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cr' },
        subjects: [{ kind: 'ServiceAccount', name: 'sa', namespace: 'default' }],
      },
      {
        apiVersion: 'storage.k8s.io/v1',
        kind: 'StorageClass',
        metadata: { name: 'standard' },
        provisioner: 'kubernetes.io/no-provisioner',
        volumeBindingMode: 'WaitForFirstConsumer',
      },
      {
        apiVersion: 'policy/v1',
        kind: 'PodDisruptionBudget',
        metadata: { name: 'pdb', namespace: 'default' },
        spec: { minAvailable: 1, selector: { matchLabels: { app: 'w' } } },
      },
      {
        apiVersion: 'certificates.k8s.io/v1',
        kind: 'CertificateSigningRequest',
        metadata: { name: 'csr1' },
        spec: { request: '', signerName: 'kubernetes.io/kubelet-serving', usages: ['server auth'] },
      },
      crd,
    ];

    before(async () => {
      (samples.find((s) => s.kind === 'CertificateSigningRequest')!.spec as Record<string, string>).request =
        await csrPem('system:node:n');
    });

    for (const sample of samples) {
      it(`${sample.apiVersion} ${sample.kind}: create, read, replace, patch, list, delete`, async () => {
        const created = await objects.create(structuredClone(sample));
        assert.ok(created.metadata?.uid, 'a uid is assigned');
        assert.match(String(created.metadata?.resourceVersion), /^\d+$/);
        const read = await objects.read({
          apiVersion: sample.apiVersion!,
          kind: sample.kind!,
          metadata: { name: sample.metadata!.name!, namespace: sample.metadata!.namespace },
        });
        assert.equal(read.metadata?.uid, created.metadata?.uid);
        read.metadata!.labels = { ...read.metadata!.labels, tier: 'crud' };
        const replaced = await objects.replace(read);
        assert.equal(replaced.metadata?.labels?.tier, 'crud');
        assert.ok(Number(replaced.metadata!.resourceVersion) > Number(created.metadata!.resourceVersion));
        const patched = await objects.patch(
          {
            apiVersion: sample.apiVersion,
            kind: sample.kind,
            metadata: {
              name: sample.metadata!.name,
              namespace: sample.metadata!.namespace,
              annotations: { note: 'patched' },
            },
          },
          undefined,
          undefined,
          undefined,
          undefined,
          k8s.PatchStrategy.MergePatch,
        );
        assert.equal(patched.metadata?.annotations?.note, 'patched');
        const list = await objects.list(
          sample.apiVersion!,
          sample.kind!,
          sample.metadata!.namespace,
          undefined,
          undefined,
          undefined,
          undefined,
          'tier=crud',
        );
        assert.deepEqual(
          list.items.map((i) => i.metadata?.name),
          [sample.metadata!.name],
        );
        await objects.delete({
          apiVersion: sample.apiVersion,
          kind: sample.kind,
          metadata: { name: sample.metadata!.name, namespace: sample.metadata!.namespace },
        });
        if (sample.kind === 'Namespace') {
          // Namespace deletion empties the namespace first; it is gone shortly after.
          for (
            let i = 0;
            i < 50 && (await core.listNamespace()).items.some((n) => n.metadata?.name === 'crud-ns');
            i++
          )
            await new Promise((r) => setTimeout(r, 20));
        }
        const gone = await apiError(
          objects.read({
            apiVersion: sample.apiVersion!,
            kind: sample.kind!,
            metadata: { name: sample.metadata!.name!, namespace: sample.metadata!.namespace },
          }),
        );
        assert.equal(gone.code, 404);
        assert.equal(gone.status.reason, 'NotFound');
      });
    }

    it('serves a custom resource of a registered CRD, with its status subresource kept apart', async () => {
      await objects.create(structuredClone(crd));
      const custom = emu.kubeConfig.makeApiClient(k8s.CustomObjectsApi);
      const app = (await custom.createNamespacedCustomObject({
        group: 'app.k8s.io',
        version: 'v1beta1',
        namespace: 'default',
        plural: 'applications',
        body: {
          apiVersion: 'app.k8s.io/v1beta1',
          kind: 'Application',
          metadata: { name: 'kip' },
          spec: { descriptor: { type: 'Kip' } },
          status: { ignored: true },
        },
      })) as Obj;
      assert.equal(app.status, undefined, 'status is not set through the main resource');
      const withStatus = (await custom.patchNamespacedCustomObjectStatus(
        {
          group: 'app.k8s.io',
          version: 'v1beta1',
          namespace: 'default',
          plural: 'applications',
          name: 'kip',
          body: { status: { assemblyPhase: 'Succeeded' } },
        },
        mergePatch,
      )) as Obj;
      assert.deepEqual(withStatus.status, { assemblyPhase: 'Succeeded' });
      const err = await apiError(
        custom.patchNamespacedCustomObject(
          {
            group: 'app.k8s.io',
            version: 'v1beta1',
            namespace: 'default',
            plural: 'applications',
            name: 'kip',
            body: { spec: { x: 1 } },
          },
          strategicPatch,
        ),
      );
      assert.equal(err.code, 415, 'custom resources do not take strategic merge patches');
      await objects.delete({
        apiVersion: crd.apiVersion,
        kind: crd.kind,
        metadata: { name: crd.metadata!.name },
      });
      await new Promise((r) => setTimeout(r, 50));
      const after = await raw('GET', '/apis/app.k8s.io/v1beta1/namespaces/default/applications');
      assert.equal(after.code, 404, 'the resource goes away with its CRD');
    });
  });

  describe('events', () => {
    it('stores events.k8s.io/v1 and core/v1 Events once, each API showing its own shape', async () => {
      const events = emu.kubeConfig.makeApiClient(k8s.EventsV1Api);
      const created = await events.createNamespacedEvent({
        namespace: 'default',
        body: {
          metadata: { name: 'cell-started' },
          eventTime: new k8s.V1MicroTime(),
          reportingController: 'kip.dev/provider',
          reportingInstance: 'kip-0',
          action: 'Start',
          reason: 'CellStarted',
          note: 'cell is up',
          type: 'Normal',
          regarding: { kind: 'Pod', name: 'web', namespace: 'default', apiVersion: 'v1' },
        },
      });
      assert.equal(created.note, 'cell is up');
      const core = (
        await emu.kubeConfig
          .makeApiClient(k8s.CoreV1Api)
          .listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=web' })
      ).items;
      assert.deepEqual(
        core.map((e) => [e.metadata.name, e.message, e.reportingComponent, e.involvedObject.kind]),
        [['cell-started', 'cell is up', 'kip.dev/provider', 'Pod']],
      );
      const patched = await events.patchNamespacedEvent(
        { name: 'cell-started', namespace: 'default', body: { note: 'cell is ready' } },
        mergePatch,
      );
      assert.equal(patched.note, 'cell is ready');
      const viaCore = await emu.kubeConfig
        .makeApiClient(k8s.CoreV1Api)
        .readNamespacedEvent({ name: 'cell-started', namespace: 'default' });
      assert.equal(viaCore.message, 'cell is ready');
      const selected = await events.listNamespacedEvent({
        namespace: 'default',
        fieldSelector: 'regarding.name=web,reportingController=kip.dev/provider',
      });
      assert.equal(selected.items.length, 1);
      await events.deleteNamespacedEvent({ name: 'cell-started', namespace: 'default' });
      assert.equal(
        (
          await apiError(
            emu.kubeConfig
              .makeApiClient(k8s.CoreV1Api)
              .readNamespacedEvent({ name: 'cell-started', namespace: 'default' }),
          )
        ).code,
        404,
      );
    });
  });

  describe('object semantics', () => {
    it('assigns uid, creationTimestamp, generateName and increasing resourceVersions', async () => {
      const a = await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { generateName: 'gen-' }, data: { k: 'v' } },
      });
      const b = await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { generateName: 'gen-' } },
      });
      assert.match(a.metadata!.name!, /^gen-[a-z0-9]{5}$/);
      assert.notEqual(a.metadata!.name, b.metadata!.name);
      assert.notEqual(a.metadata!.uid, b.metadata!.uid);
      assert.ok(a.metadata!.creationTimestamp instanceof Date);
      assert.ok(Number(b.metadata!.resourceVersion) > Number(a.metadata!.resourceVersion));
    });

    it('bumps generation on spec changes only and rejects stale updates with 409 Conflict', async () => {
      const apps = emu.kubeConfig.makeApiClient(k8s.AppsV1Api);
      const d = await apps.createNamespacedDeployment({
        namespace: 'default',
        body: {
          metadata: { name: 'gen' },
          spec: {
            selector: { matchLabels: { app: 'g' } },
            template: {
              metadata: { labels: { app: 'g' } },
              spec: { containers: [{ name: 'c', image: 'nginx:1' }] },
            },
          },
        },
      });
      assert.equal(d.metadata!.generation, 1);
      const labelled = await apps.patchNamespacedDeployment(
        { name: 'gen', namespace: 'default', body: { metadata: { labels: { a: 'b' } } } },
        mergePatch,
      );
      assert.equal(labelled.metadata!.generation, 1);
      const scaled = await apps.patchNamespacedDeployment(
        { name: 'gen', namespace: 'default', body: { spec: { replicas: 3 } } },
        mergePatch,
      );
      assert.equal(scaled.metadata!.generation, 2);
      d.spec!.replicas = 5;
      const stale = await apiError(
        apps.replaceNamespacedDeployment({ name: 'gen', namespace: 'default', body: d }),
      );
      assert.equal(stale.code, 409, JSON.stringify(stale.status));
      assert.equal(stale.status.reason, 'Conflict');
      assert.match(stale.status.message, /the object has been modified/);
      const withRv = await apiError(apps.createNamespacedDeployment({ namespace: 'default', body: d }));
      assert.equal(withRv.code, 400, 'a create may not carry a resourceVersion');
      delete d.metadata!.resourceVersion;
      const dup = await apiError(apps.createNamespacedDeployment({ namespace: 'default', body: d }));
      assert.equal(dup.code, 409);
      assert.equal(dup.status.reason, 'AlreadyExists');
      assert.equal(dup.status.message, 'deployments.apps "gen" already exists');
    });

    it('keeps status and spec apart: the main resource ignores status, the status subresource ignores spec', async () => {
      const pod = await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name: 'status-split' },
          spec: { containers: [{ name: 'c', image: 'busybox' }] },
          status: { phase: 'Running' },
        },
      });
      assert.equal(pod.status!.phase, 'Pending');
      assert.equal(pod.spec!.containers[0]!.imagePullPolicy, 'Always', 'defaults are applied');
      const st = await core.patchNamespacedPodStatus(
        {
          name: 'status-split',
          namespace: 'default',
          body: { status: { phase: 'Running', podIP: '198.18.0.9' }, spec: { nodeName: 'sneaky' } },
        },
        mergePatch,
      );
      assert.equal(st.status!.phase, 'Running');
      assert.equal(st.spec!.nodeName, undefined);
      const main = await core.patchNamespacedPod(
        {
          name: 'status-split',
          namespace: 'default',
          body: { metadata: { labels: { x: 'y' } }, status: { phase: 'Failed' } },
        },
        mergePatch,
      );
      assert.equal(main.status!.phase, 'Running');
      const noop = await core.patchNamespacedPodStatus(
        { name: 'status-split', namespace: 'default', body: { status: { phase: 'Running' } } },
        mergePatch,
      );
      assert.equal(
        noop.metadata!.resourceVersion,
        main.metadata!.resourceVersion,
        'a write that changes nothing keeps the resourceVersion',
      );
    });
  });

  describe('list selectors and paging', () => {
    before(async () => {
      const pods: [string, Record<string, string>, string?][] = [
        ['sel-a', { app: 'web', env: 'prod' }, 'node-a'],
        ['sel-b', { app: 'web', env: 'dev' }, 'node-b'],
        ['sel-c', { app: 'db', env: 'prod' }],
        ['sel-d', { app: 'cache' }, 'node-a'],
      ];
      for (const [name, labels, nodeName] of pods) {
        await core.createNamespacedPod({
          namespace: 'default',
          body: {
            metadata: { name, labels },
            spec: { nodeName, containers: [{ name: 'c', image: 'busybox' }] },
          },
        });
      }
    });
    const names = async (labelSelector?: string, fieldSelector?: string) =>
      (await core.listNamespacedPod({ namespace: 'default', labelSelector, fieldSelector })).items
        .map((p) => p.metadata!.name)
        .filter((n) => n!.startsWith('sel-'));

    it('filters by label selectors: =, !=, in, notin, exists, !exists', async () => {
      assert.deepEqual(await names('app=web'), ['sel-a', 'sel-b']);
      assert.deepEqual(await names('app!=web'), ['sel-c', 'sel-d']);
      assert.deepEqual(await names('app in (db,cache)'), ['sel-c', 'sel-d']);
      assert.deepEqual(await names('env notin (prod),app'), ['sel-b', 'sel-d']);
      assert.deepEqual(await names('env'), ['sel-a', 'sel-b', 'sel-c']);
      assert.deepEqual(await names('!env'), ['sel-d']);
      assert.deepEqual(await names('app=web,env=prod'), ['sel-a']);
    });

    it('filters by field selectors, and refuses unknown fields with 400', async () => {
      assert.deepEqual(await names(undefined, 'spec.nodeName=node-a'), ['sel-a', 'sel-d']);
      assert.deepEqual(await names(undefined, 'spec.nodeName=node-a,metadata.name!=sel-a'), ['sel-d']);
      assert.deepEqual(await names(undefined, 'status.phase=Pending,metadata.name=sel-c'), ['sel-c']);
      const all = (
        await core.listPodForAllNamespaces({
          fieldSelector: 'metadata.namespace=default,spec.nodeName=node-b',
        })
      ).items;
      assert.deepEqual(
        all.map((p) => p.metadata!.name),
        ['sel-b'],
      );
      const bad = await apiError(
        core.listNamespacedPod({ namespace: 'default', fieldSelector: 'spec.color=blue' }),
      );
      assert.equal(bad.code, 400);
      assert.match(bad.status.message, /field label not supported: spec.color/);
      const badLabel = await apiError(
        core.listNamespacedPod({ namespace: 'default', labelSelector: 'app in (a' }),
      );
      assert.equal(badLabel.code, 400);
    });

    it('pages with limit/continue over a consistent snapshot', async () => {
      const first = await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app', limit: 2 });
      assert.equal(first.items.length, 2);
      assert.ok(first.metadata!._continue);
      assert.equal(first.metadata!.remainingItemCount, 2);
      // A deletion after the first page does not change what the continuation returns.
      await core.deleteNamespacedPod({ name: 'sel-d', namespace: 'default', gracePeriodSeconds: 0 });
      const second = await core.listNamespacedPod({
        namespace: 'default',
        labelSelector: 'app',
        limit: 2,
        _continue: first.metadata!._continue,
      });
      assert.deepEqual(
        [...first.items, ...second.items].map((p) => p.metadata!.name),
        ['sel-a', 'sel-b', 'sel-c', 'sel-d'],
      );
      assert.equal(second.metadata!._continue, undefined);
      assert.equal(second.metadata!.resourceVersion, first.metadata!.resourceVersion);
      const fresh = await core.listNamespacedPod({
        namespace: 'default',
        labelSelector: 'app',
        resourceVersion: '0',
      });
      assert.deepEqual(
        fresh.items.map((p) => p.metadata!.name),
        ['sel-a', 'sel-b', 'sel-c'],
      );
    });
  });

  describe('patches', () => {
    it('applies strategic merge patches with the built-in list merge keys', async () => {
      const apps = emu.kubeConfig.makeApiClient(k8s.AppsV1Api);
      const containers = [
        { name: 'app', image: 'app:1', env: [{ name: 'A', value: '1' }] },
        { name: 'side', image: 'side:1' },
      ];
      await apps.createNamespacedDeployment({
        namespace: 'default',
        body: {
          metadata: { name: 'smp', finalizers: ['a/x'] },
          spec: {
            selector: { matchLabels: { app: 'smp' } },
            template: { metadata: { labels: { app: 'smp' } }, spec: { containers } },
          },
        },
      });
      const d = await apps.patchNamespacedDeployment(
        {
          name: 'smp',
          namespace: 'default',
          body: {
            metadata: { finalizers: ['a/y'] },
            spec: {
              template: {
                spec: { containers: [{ name: 'app', image: 'app:2', env: [{ name: 'B', value: '2' }] }] },
              },
            },
          },
        },
        strategicPatch,
      );
      const got = d.spec!.template.spec!.containers;
      assert.deepEqual(
        got.map((c) => [c.name, c.image]),
        [
          ['app', 'app:2'],
          ['side', 'side:1'],
        ],
      );
      assert.deepEqual(
        got[0]!.env!.map((e) => e.name),
        ['A', 'B'],
      );
      assert.deepEqual(d.metadata!.finalizers, ['a/x', 'a/y']);
      const merged = await apps.patchNamespacedDeployment(
        {
          name: 'smp',
          namespace: 'default',
          body: { spec: { template: { spec: { containers: [{ name: 'side', $patch: 'delete' }] } } } },
        },
        strategicPatch,
      );
      assert.deepEqual(
        merged.spec!.template.spec!.containers.map((c) => c.name),
        ['app'],
      );

      await core.createNamespacedPod({
        namespace: 'default',
        body: { metadata: { name: 'smp' }, spec: { containers: [{ name: 'c', image: 'c:1' }] } },
      });
      const st = await core.patchNamespacedPodStatus(
        {
          name: 'smp',
          namespace: 'default',
          body: {
            status: {
              conditions: [
                { type: 'Ready', status: 'False' },
                { type: 'Initialized', status: 'True' },
              ],
            },
          },
        },
        strategicPatch,
      );
      assert.equal(st.status!.conditions!.length, 2);
      const st2 = await core.patchNamespacedPodStatus(
        {
          name: 'smp',
          namespace: 'default',
          body: {
            status: {
              conditions: [
                { type: 'Ready', status: 'True' },
                { type: 'Initialized', $patch: 'delete' },
              ],
            },
          },
        },
        strategicPatch,
      );
      assert.deepEqual(
        st2.status!.conditions!.map((c) => [c.type, c.status]),
        [['Ready', 'True']],
      );
      const image = await core.patchNamespacedPod(
        { name: 'smp', namespace: 'default', body: { spec: { containers: [{ name: 'c', image: 'c:2' }] } } },
        strategicPatch,
      );
      assert.equal(image.spec!.containers[0]!.image, 'c:2', 'container images may change');
      const forbidden = await apiError(
        core.patchNamespacedPod(
          {
            name: 'smp',
            namespace: 'default',
            body: { spec: { containers: [{ name: 'c', command: ['sh'] }] } },
          },
          strategicPatch,
        ),
      );
      assert.equal(forbidden.code, 422, 'other pod spec fields may not');
    });

    it('applies JSON patches (the client default) and reports failed tests as 422', async () => {
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: 'jp' }, data: { a: '1' } },
      });
      const cm = await core.patchNamespacedConfigMap({
        name: 'jp',
        namespace: 'default',
        body: [
          { op: 'add', path: '/data/b', value: '2' },
          { op: 'remove', path: '/data/a' },
        ],
      });
      assert.deepEqual(cm.data, { b: '2' });
      const failed = await apiError(
        core.patchNamespacedConfigMap({
          name: 'jp',
          namespace: 'default',
          body: [{ op: 'test', path: '/data/b', value: 'nope' }],
        }),
      );
      assert.equal(failed.code, 422);
      assert.deepEqual((await core.readNamespacedConfigMap({ name: 'jp', namespace: 'default' })).data, {
        b: '2',
      });
    });

    it('creates an absent object with server-side apply', async () => {
      const body = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'ssa', namespace: 'default' },
        data: { x: '1' },
      };
      const created = await core.patchNamespacedConfigMap(
        { name: 'ssa', namespace: 'default', body, fieldManager: 'test' },
        applyPatch,
      );
      assert.deepEqual(created.data, { x: '1' });
      const again = await core.patchNamespacedConfigMap(
        {
          name: 'ssa',
          namespace: 'default',
          body: { ...body, data: { x: '2', y: '3' } },
          fieldManager: 'test',
        },
        applyPatch,
      );
      assert.deepEqual(again.data, { x: '2', y: '3' });
    });
  });

  describe('watch', () => {
    it('streams ADDED, MODIFIED and DELETED from a resourceVersion, with selector transitions', async () => {
      const list = await core.listNamespacedConfigMap({ namespace: 'default' });
      const events: [string, string][] = [];
      const watch = new k8s.Watch(emu.kubeConfig);
      const ac = await watch.watch(
        '/api/v1/namespaces/default/configmaps',
        { resourceVersion: list.metadata!.resourceVersion, labelSelector: 'watch=me' },
        (type, obj: k8s.V1ConfigMap) => events.push([type, obj.metadata!.name!]),
        () => {},
      );
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: 'w1', labels: { watch: 'me' } } },
      });
      await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'w2' } } });
      await core.patchNamespacedConfigMap(
        { name: 'w1', namespace: 'default', body: { data: { a: 'b' } } },
        mergePatch,
      );
      await core.patchNamespacedConfigMap(
        { name: 'w2', namespace: 'default', body: { metadata: { labels: { watch: 'me' } } } },
        mergePatch,
      );
      await core.patchNamespacedConfigMap(
        { name: 'w1', namespace: 'default', body: { metadata: { labels: { watch: null } } } },
        mergePatch,
      );
      await core.deleteNamespacedConfigMap({ name: 'w2', namespace: 'default' });
      for (let i = 0; i < 50 && events.length < 5; i++) await new Promise((r) => setTimeout(r, 20));
      ac.abort();
      assert.deepEqual(events, [
        ['ADDED', 'w1'],
        ['MODIFIED', 'w1'],
        ['ADDED', 'w2'],
        ['DELETED', 'w1'],
        ['DELETED', 'w2'],
      ]);
    });

    it('sends bookmarks when allowed and ends the stream at timeoutSeconds', async () => {
      const types: string[] = [];
      const started = Date.now();
      const ended = new Promise<unknown>((resolve) => {
        void new k8s.Watch(emu.kubeConfig).watch(
          '/api/v1/pods',
          { allowWatchBookmarks: true, timeoutSeconds: 2, resourceVersion: '0' },
          (t) => types.push(t),
          resolve,
        );
      });
      assert.equal(await ended, null, 'the server closed the stream cleanly');
      const took = Date.now() - started;
      assert.ok(took >= 1900 && took < 4000, `closed after ${took} ms`);
      assert.ok(types.includes('BOOKMARK'), `saw ${types.join(',')}`);
    });
  });

  describe('graceful pod deletion', () => {
    it('removes an unbound pod at once but keeps a bound one until its kubelet deletes it with grace 0 and its UID', async () => {
      await core.createNamespacedPod({
        namespace: 'default',
        body: { metadata: { name: 'unbound' }, spec: { containers: [{ name: 'c', image: 'busybox' }] } },
      });
      const gone = await core.deleteNamespacedPod({ name: 'unbound', namespace: 'default' });
      assert.equal(gone.metadata!.name, 'unbound');
      assert.equal(
        (await apiError(core.readNamespacedPod({ name: 'unbound', namespace: 'default' }))).code,
        404,
      );

      const pod = await core.createNamespacedPod({
        namespace: 'default',
        body: {
          metadata: { name: 'bound' },
          spec: {
            nodeName: 'vk',
            terminationGracePeriodSeconds: 45,
            containers: [{ name: 'c', image: 'busybox' }],
          },
        },
      });
      const marked = await core.deleteNamespacedPod({ name: 'bound', namespace: 'default' });
      assert.equal(marked.metadata!.deletionGracePeriodSeconds, 45);
      const ts = marked.metadata!.deletionTimestamp!.getTime();
      assert.ok(Math.abs(ts - (Date.now() + 45_000)) < 3000, 'deletionTimestamp is now + grace');
      const still = await core.readNamespacedPod({ name: 'bound', namespace: 'default' });
      assert.ok(still.metadata!.deletionTimestamp, 'still there, Terminating');
      const wrongUid = await apiError(
        core.deleteNamespacedPod({
          name: 'bound',
          namespace: 'default',
          gracePeriodSeconds: 0,
          body: { preconditions: { uid: 'not-the-uid' } },
        }),
      );
      assert.equal(wrongUid.code, 409);
      assert.match(wrongUid.status.message, /Precondition failed: UID in precondition/);
      await core.deleteNamespacedPod({
        name: 'bound',
        namespace: 'default',
        gracePeriodSeconds: 0,
        body: { preconditions: { uid: pod.metadata!.uid } },
      });
      assert.equal(
        (await apiError(core.readNamespacedPod({ name: 'bound', namespace: 'default' }))).code,
        404,
      );
    });

    it('holds an object with finalizers until they are removed', async () => {
      await core.createNamespacedConfigMap({
        namespace: 'default',
        body: { metadata: { name: 'fin', finalizers: ['kip.dev/cleanup'] } },
      });
      await core.deleteNamespacedConfigMap({ name: 'fin', namespace: 'default' });
      const held = await core.readNamespacedConfigMap({ name: 'fin', namespace: 'default' });
      assert.ok(held.metadata!.deletionTimestamp);
      await core.patchNamespacedConfigMap(
        { name: 'fin', namespace: 'default', body: { metadata: { finalizers: null } } },
        mergePatch,
      );
      assert.equal(
        (await apiError(core.readNamespacedConfigMap({ name: 'fin', namespace: 'default' }))).code,
        404,
      );
    });
  });

  describe('service account tokens and reviews', () => {
    it('issues ES256 JWTs that verify against the JWKS and resolve through TokenReview', async () => {
      await core.createNamespacedServiceAccount({
        namespace: 'default',
        body: { metadata: { name: 'kip-provider' } },
      });
      const tr = await core.createNamespacedServiceAccountToken({
        name: 'kip-provider',
        namespace: 'default',
        body: { spec: { audiences: ['kip'], expirationSeconds: 3600 } },
      });
      const token = tr.status!.token!;
      const [h, p, s] = token.split('.') as [string, string, string];
      assert.equal(JSON.parse(Buffer.from(h, 'base64url').toString()).alg, 'ES256');
      const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
      assert.equal(claims.sub, 'system:serviceaccount:default:kip-provider');
      assert.deepEqual(claims.aud, ['kip']);
      const jwks = (await raw('GET', '/openid/v1/jwks')).body as { keys: Record<string, string>[] };
      const key = createPublicKey({ key: jwks.keys[0]!, format: 'jwk' });
      assert.ok(
        verify(
          'sha256',
          Buffer.from(`${h}.${p}`),
          { key, dsaEncoding: 'ieee-p1363' },
          Buffer.from(s, 'base64url'),
        ),
      );

      const authn = emu.kubeConfig.makeApiClient(k8s.AuthenticationV1Api);
      const review = await authn.createTokenReview({ body: { spec: { token, audiences: ['kip'] } } });
      assert.equal(review.status!.authenticated, true);
      assert.equal(review.status!.user!.username, 'system:serviceaccount:default:kip-provider');
      assert.ok(review.status!.user!.groups!.includes('system:serviceaccounts:default'));
      const wrongAudience = await authn.createTokenReview({
        body: { spec: { token, audiences: ['other'] } },
      });
      assert.equal(wrongAudience.status!.authenticated, false);
      const forged = await authn.createTokenReview({
        body: { spec: { token: `${h}.${p}.${Buffer.from('x').toString('base64url')}` } },
      });
      assert.equal(forged.status!.authenticated, false);

      const short = await apiError(
        core.createNamespacedServiceAccountToken({
          name: 'kip-provider',
          namespace: 'default',
          body: { spec: { audiences: [], expirationSeconds: 60 } },
        }),
      );
      assert.equal(short.code, 422);
      assert.match(short.status.message, /spec.expirationSeconds/);

      await core.deleteNamespacedServiceAccount({ name: 'kip-provider', namespace: 'default' });
      const afterDelete = await authn.createTokenReview({ body: { spec: { token, audiences: ['kip'] } } });
      assert.equal(
        afterDelete.status!.authenticated,
        false,
        'a deleted service account no longer authenticates',
      );
    });

    it('answers SubjectAccessReviews: allowed unless a deny rule matches', async () => {
      const authz = emu.kubeConfig.makeApiClient(k8s.AuthorizationV1Api);
      const ask = () =>
        authz.createSubjectAccessReview({
          body: {
            spec: {
              user: 'system:serviceaccount:kip:provider',
              resourceAttributes: {
                verb: 'create',
                resource: 'pods',
                subresource: 'log',
                namespace: 'default',
              },
            },
          },
        });
      assert.equal((await ask()).status!.allowed, true);
      const set = await raw(
        'PUT',
        '/emulator/v1/authz/deny-rules',
        JSON.stringify({
          deny: [{ user: 'system:serviceaccount:kip:provider', resource: 'pods', subresource: 'log' }],
        }),
      );
      assert.equal(set.code, 200);
      const denied = await ask();
      assert.equal(denied.status!.allowed, false);
      assert.equal(denied.status!.denied, true);
      const bad = await raw('PUT', '/emulator/v1/authz/deny-rules', JSON.stringify({ deny: [{ verb: 7 }] }));
      assert.equal(bad.code, 400);
      assert.match(bad.body.message, /deny\[0\]\.verb/);
      await raw('DELETE', '/emulator/v1/authz/deny-rules');
      assert.equal((await ask()).status!.allowed, true);
      const self = await authz.createSelfSubjectAccessReview({
        body: { spec: { resourceAttributes: { verb: 'get', resource: 'nodes' } } },
      });
      assert.equal(self.status!.allowed, true);
    });

    it('records the requester of a CSR and enforces the approval rules', async () => {
      await core.createNamespacedServiceAccount({
        namespace: 'default',
        body: { metadata: { name: 'node-agent' } },
      });
      const { status } = await core.createNamespacedServiceAccountToken({
        name: 'node-agent',
        namespace: 'default',
        body: { spec: { audiences: [] } },
      });
      const asAgent = new k8s.KubeConfig();
      asAgent.loadFromOptions({
        clusters: [{ name: 'emu', server: emu.url, skipTLSVerify: true }],
        users: [{ name: 'agent', token: status!.token! }],
        contexts: [{ name: 'c', cluster: 'emu', user: 'agent' }],
        currentContext: 'c',
      });
      const certs = asAgent.makeApiClient(k8s.CertificatesV1Api);
      const csr = await certs.createCertificateSigningRequest({
        body: {
          metadata: { name: 'node-csr' },
          spec: {
            request: await csrPem('system:node:vk'),
            signerName: 'kubernetes.io/kubelet-serving',
            usages: ['server auth'],
          },
        },
      });
      assert.equal(csr.spec.username, 'system:serviceaccount:default:node-agent');
      const admin = emu.kubeConfig.makeApiClient(k8s.CertificatesV1Api);
      const noApproval = await apiError(
        admin.patchCertificateSigningRequestStatus(
          { name: 'node-csr', body: { status: { certificate: Buffer.from('cert').toString('base64') } } },
          mergePatch,
        ),
      );
      assert.equal(noApproval.code, 422);
      csr.status = { conditions: [{ type: 'Approved', status: 'True', reason: 'Test', message: 'ok' }] };
      const approved = await admin.replaceCertificateSigningRequestApproval({ name: 'node-csr', body: csr });
      assert.equal(approved.status!.conditions![0]!.type, 'Approved');
      const both = await apiError(
        admin.patchCertificateSigningRequestApproval({
          name: 'node-csr',
          body: [{ op: 'add', path: '/status/conditions/-', value: { type: 'Denied', status: 'True' } }],
        }),
      );
      assert.equal(both.code, 422);
      const issued = await admin.patchCertificateSigningRequestStatus(
        { name: 'node-csr', body: { status: { certificate: Buffer.from('cert').toString('base64') } } },
        mergePatch,
      );
      assert.equal(String(issued.status!.certificate), Buffer.from('cert').toString('base64'));
      const expired = await fetch(`${emu.url}/api/v1/namespaces`, {
        headers: { Authorization: `Bearer ${status!.token!.slice(0, -4)}AAAA` },
      });
      assert.equal(expired.status, 401, 'a tampered service account token is refused');
    });
  });

  describe('bad input', () => {
    const postConfigMap = (body: string, contentType?: string) =>
      raw('POST', '/api/v1/namespaces/default/configmaps', body, contentType);
    const snapshot = async () =>
      JSON.stringify(
        (await core.listNamespacedConfigMap({ namespace: 'default' })).items.map((c) => [
          c.metadata!.name,
          c.metadata!.resourceVersion,
          c.data,
        ]),
      );

    it('answers malformed bodies, unknown resources, missing names and wrong namespaces with Status errors, losing nothing', async () => {
      const before = await snapshot();
      const malformed = await postConfigMap('{"metadata": {"name": "x"');
      assert.equal(malformed.code, 400);
      assert.equal(malformed.body.kind, 'Status');
      assert.equal(malformed.body.reason, 'BadRequest');
      assert.match(malformed.body.message, /json parse error/);
      const yaml = await postConfigMap('metadata:\n  name: [x\n', 'application/yaml');
      assert.equal(yaml.code, 400);
      assert.match(yaml.body.message, /error converting YAML to JSON/);
      const unknown = await raw('GET', '/api/v1/namespaces/default/frobnicators');
      assert.equal(unknown.code, 404);
      assert.equal(unknown.body.message, 'the server could not find the requested resource');
      const noName = await postConfigMap(
        JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: {} }),
      );
      assert.equal(noName.code, 422);
      assert.equal(noName.body.reason, 'Invalid');
      assert.equal(noName.body.details.causes[0].field, 'metadata.name');
      const wrongNs = await postConfigMap(
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'x', namespace: 'kube-system' },
        }),
      );
      assert.equal(wrongNs.code, 400);
      assert.match(wrongNs.body.message, /does not match the namespace/);
      const wrongKind = await postConfigMap(
        JSON.stringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x' } }),
      );
      assert.equal(wrongKind.code, 400);
      const missingNs = await raw(
        'POST',
        '/api/v1/namespaces/nope/configmaps',
        JSON.stringify({ metadata: { name: 'x' } }),
      );
      assert.equal(missingNs.code, 404);
      assert.equal(missingNs.body.message, 'namespaces "nope" not found');
      const badLabels = await postConfigMap(JSON.stringify({ metadata: { name: 'x', labels: { a: 5 } } }));
      assert.equal(badLabels.code, 400);
      const badPatch = await raw(
        'PATCH',
        '/api/v1/namespaces/default/configmaps/jp',
        '{"data":',
        'application/merge-patch+json',
      );
      assert.equal(badPatch.code, 400);
      const badType = await raw('PATCH', '/api/v1/namespaces/default/configmaps/jp', '{}', 'text/plain');
      assert.equal(badType.code, 415);
      const strict = await raw(
        'POST',
        '/api/v1/namespaces/default/configmaps?fieldValidation=Strict',
        JSON.stringify({ metadata: { name: 'x' }, datta: {} }),
      );
      assert.equal(strict.code, 400);
      assert.match(strict.body.message, /unknown field "datta"/);
      assert.equal(await snapshot(), before, 'nothing stored changed');
    });
  });
});
