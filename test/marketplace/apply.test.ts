import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { startKubeEmulator, type KubeEmulatorHandle } from '../support/kube.ts';
import {
  publishedVersion,
  renderChart,
  root,
  runCommand,
  type CommandResult,
  type Rendered,
} from './render.ts';

const ns = 'kip-system';

function toInput(objs: Rendered[]): string {
  return objs.map((o) => `---\n${JSON.stringify(o.obj)}\n`).join('');
}

/** `make -s <target>` against the emulator, as a user with that kubeconfig would run it. */
function make(kube: KubeEmulatorHandle, args: string[]): Promise<CommandResult> {
  return runCommand('make', ['-s', ...args], {
    KUBECONFIG: kube.kubeconfigPath,
    // A private HOME keeps kubectl's discovery cache out of the user's.
    HOME: join(dirname(kube.kubeconfigPath), 'home'),
  });
}

describe('the rendered chart applied with real kubectl to the Kubernetes API emulator', function () {
  this.timeout(120000);
  let kube: KubeEmulatorHandle;

  before(async () => {
    kube = await startKubeEmulator();
    await kube.kubectlOk(['apply', '-f', '-'], {
      input: JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }),
    });
    await kube.kubectlOk(['apply', '-f', `${root}/manifest/app-crd.yaml`]);
  });
  after(async () => {
    await kube?.stop();
  });

  it('applies every object of the default install and of the test values', async () => {
    const objs = renderChart({ namespace: ns });
    const out = await kube.kubectlOk(['apply', '--namespace', ns, '-f', '-'], { input: toInput(objs) });
    for (const o of objs)
      assert.match(out, new RegExp(`${o.obj.metadata.name} created`), `${o.obj.kind}/${o.obj.metadata.name}`);

    const app = JSON.parse(
      await kube.kubectlOk(['get', 'application', 'kip', '--namespace', ns, '-o', 'json']),
    ) as {
      spec: { descriptor: { version: string } };
    };
    assert.equal(app.spec.descriptor.version, publishedVersion());
    const sts = JSON.parse(
      await kube.kubectlOk(['get', 'statefulset', 'kip-provider', '--namespace', ns, '-o', 'json']),
    ) as {
      spec: { template: { spec: { containers: Array<{ name: string }> } } };
    };
    assert.deepEqual(
      sts.spec.template.spec.containers.map((c) => c.name),
      ['provider', 'etcd', 'usage-reporter'],
    );

    // Test values: image cache, plain-Helm RBAC (cluster-scoped objects too) and the tester Pod.
    const test = renderChart({
      name: 'kip-test',
      namespace: ns,
      testMode: true,
      parameters: {
        'imageCache.enabled': true,
        'imageCache.nfsServer': '10.0.0.2',
        'imageCache.nfsPath': '/cache',
      },
      values: { rbac: { create: true } },
    });
    const out2 = await kube.kubectlOk(['apply', '--namespace', ns, '-f', '-'], { input: toInput(test) });
    for (const o of test)
      assert.match(out2, new RegExp(`${o.obj.metadata.name.replace(/[.]/g, '\\.')} created`));
    const listed = await kube.kubectlOk([
      'get',
      'deployment,pod,clusterrole',
      '--namespace',
      ns,
      '-o',
      'name',
    ]);
    assert.match(listed, /deployment.apps\/kip-test-image-cache/);
    assert.match(listed, /pod\/kip-test-tester/);
    assert.match(listed, /clusterrole.rbac.authorization.k8s.io\/kip-system:kip-test:provider/);

    // Applying again changes nothing: the rendering is stable.
    const again = await kube.kubectlOk(['apply', '--namespace', ns, '-f', '-'], { input: toInput(objs) });
    assert.doesNotMatch(again, / (created|configured)/);
  });

  it('make app/uninstall refuses while a cell runs on the virtual node, then FORCE=1 removes the instance', async () => {
    // A pod bound to the virtual node (what the scheduler does), a claim the StatefulSet made, the node.
    await kube.kubectlOk(['apply', '-f', '-'], {
      input: toInput([
        { source: '', obj: { apiVersion: 'v1', kind: 'Node', metadata: { name: 'kip-kip-system' } } },
        {
          source: '',
          obj: {
            apiVersion: 'v1',
            kind: 'Pod',
            metadata: { name: 'web-1', namespace: 'default' },
            spec: { nodeName: 'kip-kip-system', containers: [{ name: 'web', image: 'nginx' }] },
          },
        },
        {
          source: '',
          obj: {
            apiVersion: 'v1',
            kind: 'PersistentVolumeClaim',
            metadata: {
              name: 'etcd-data-kip-provider-0',
              namespace: ns,
              labels: { 'app.kubernetes.io/name': 'kip' },
            },
            spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '10Gi' } } },
          },
        },
      ]),
    });
    const refused = await make(kube, ['app/uninstall', 'APP_NAME=kip', `APP_NAMESPACE=${ns}`]);
    assert.notEqual(refused.code, 0);
    assert.match(
      refused.stderr,
      /^app\/uninstall: refusing: 1 cell\(s\) still run on virtual node kip-kip-system: default\/web-1 \(delete those pods first, or FORCE=1/,
    );
    assert.match(
      await kube.kubectlOk(['get', 'statefulset', '--namespace', ns, '-o', 'name']),
      /kip-provider/,
    );

    const forced = await make(kube, ['app/uninstall', 'APP_NAME=kip', `APP_NAMESPACE=${ns}`, 'FORCE=1']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(
      forced.stderr,
      /FORCE=1: uninstalling while 1 cell\(s\) still run on kip-kip-system: default\/web-1/,
    );
    assert.match(forced.stdout, /What stays: PersistentVolumeClaims etcd-data-kip-provider-0 /);
    assert.match(forced.stdout, /What stays: the virtual node kip-kip-system/);
    const left = await kube.kubectlOk([
      'get',
      'application,statefulset,service,configmap',
      '--namespace',
      ns,
      '-o',
      'name',
      '--selector',
      'app.kubernetes.io/name=kip',
    ]);
    assert.equal(left.trim(), '');
    // The other instance in the namespace is untouched.
    assert.match(
      await kube.kubectlOk(['get', 'statefulset', '--namespace', ns, '-o', 'name']),
      /kip-test-provider/,
    );
  });
});
