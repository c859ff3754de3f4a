import assert from 'node:assert/strict';
import * as k8s from '@kubernetes/client-node';
import { startKubeEmulator, type KubeEmulatorHandle } from '../../test/support/kube.ts';

const NODE = `
apiVersion: v1
kind: Node
metadata:
  name: vk-0
  labels: {type: virtual-kubelet, kubernetes.io/role: agent}
status:
  conditions: [{type: Ready, status: "True", reason: KubeletReady}]
  addresses: [{type: InternalIP, address: 198.18.0.2}]
  nodeInfo: {kubeletVersion: v1.32.4-kip}
`;

const pod = (name: string, labels = 'app: web', node = 'vk-0') => `
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  labels: {${labels}}
spec:
  nodeName: ${node}
  containers: [{name: c, image: "busybox:1.36"}]
`;

const rows = (out: string) =>
  out
    .trim()
    .split('\n')
    .map((l) => l.trim().split(/\s{2,}/));

describe('kube emulator driven by real kubectl', function () {
  this.timeout(60_000);
  let emu: KubeEmulatorHandle;
  let core: k8s.CoreV1Api;

  before(async () => {
    emu = await startKubeEmulator();
    core = emu.kubeConfig.makeApiClient(k8s.CoreV1Api);
    await emu.kubectlOk(['create', '-f', '-'], { input: NODE });
  });
  after(async () => {
    await emu?.stop();
  });

  it('discovers the API: built-in namespaces and the served resource types', async () => {
    const ns = rows(await emu.kubectlOk(['get', 'namespaces']));
    assert.deepEqual(ns[0], ['NAME', 'STATUS', 'AGE']);
    assert.deepEqual(
      ns.slice(1).map((r) => r.slice(0, 2)),
      [
        ['default', 'Active'],
        ['kube-node-lease', 'Active'],
        ['kube-public', 'Active'],
        ['kube-system', 'Active'],
      ],
    );
    const types = await emu.kubectlOk(['api-resources', '-o', 'name']);
    for (const t of [
      'pods',
      'nodes',
      'leases.coordination.k8s.io',
      'certificatesigningrequests.certificates.k8s.io',
      'deployments.apps',
      'poddisruptionbudgets.policy',
    ]) {
      assert.ok(types.split('\n').includes(t), `${t} is served`);
    }
  });

  it('creates a pod and prints the get, get -o wide and node columns', async () => {
    assert.equal(
      (await emu.kubectlOk(['create', '-f', '-'], { input: pod('web-1') })).trim(),
      'pod/web-1 created',
    );
    const plain = rows(await emu.kubectlOk(['get', 'pods']));
    assert.deepEqual(plain[0], ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE']);
    assert.deepEqual(plain[1]!.slice(0, 4), ['web-1', '0/1', 'Pending', '0']);
    await core.patchNamespacedPodStatus(
      { name: 'web-1', namespace: 'default', body: { status: { phase: 'Running', podIP: '198.18.0.7' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    const wide = rows(await emu.kubectlOk(['get', 'pods', '-o', 'wide']));
    assert.deepEqual(wide[0], [
      'NAME',
      'READY',
      'STATUS',
      'RESTARTS',
      'AGE',
      'IP',
      'NODE',
      'NOMINATED NODE',
      'READINESS GATES',
    ]);
    assert.deepEqual([wide[1]![2], wide[1]![5], wide[1]![6]], ['Running', '198.18.0.7', 'vk-0']);
    const nodes = rows(await emu.kubectlOk(['get', 'nodes']));
    assert.deepEqual(nodes[0], ['NAME', 'STATUS', 'ROLES', 'AGE', 'VERSION']);
    assert.deepEqual(
      [nodes[1]![0], nodes[1]![1], nodes[1]![2], nodes[1]![4]],
      ['vk-0', 'Ready', 'agent', 'v1.32.4-kip'],
    );
    const cms = rows(await emu.kubectlOk(['get', 'serviceaccounts']));
    assert.deepEqual(cms[0], ['NAME', 'AGE']);
  });

  it('applies a manifest twice, then server-side, and honours --dry-run=server', async () => {
    assert.equal(
      (await emu.kubectlOk(['apply', '-f', '-'], { input: pod('web-2') })).trim(),
      'pod/web-2 created',
    );
    assert.equal(
      (await emu.kubectlOk(['apply', '-f', '-'], { input: pod('web-2', 'app: web, tier: front') })).trim(),
      'pod/web-2 configured',
    );
    assert.equal(
      (await emu.kubectlOk(['apply', '-f', '-'], { input: pod('web-2', 'app: web, tier: front') })).trim(),
      'pod/web-2 unchanged',
    );
    const cm = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n';
    assert.equal(
      (await emu.kubectlOk(['apply', '--server-side', '-f', '-'], { input: cm })).trim(),
      'configmap/settings serverside-applied',
    );
    assert.equal(
      await emu.kubectlOk(['get', 'configmap', 'settings', '-o', 'jsonpath={.data.mode}']),
      'fast',
    );
    const dryCm = 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dry}\n';
    assert.match(
      await emu.kubectlOk(['create', '-f', '-', '--dry-run=server'], { input: dryCm }),
      /configmap\/dry created \(server dry run\)/,
    );
    const dry = await emu.kubectl(['get', 'configmap', 'dry']);
    assert.equal(dry.code, 1);
    assert.match(dry.stderr, /configmaps "dry" not found/);
  });

  it('labels, annotates and patches with each patch type', async () => {
    await emu.kubectlOk(['label', 'pod', 'web-2', 'tier=back', '--overwrite']);
    await emu.kubectlOk(['annotate', 'pod', 'web-2', 'owner=team-a']);
    await emu.kubectlOk(['patch', 'pod', 'web-2', '-p', '{"metadata":{"labels":{"smp":"yes"}}}']);
    await emu.kubectlOk([
      'patch',
      'pod',
      'web-2',
      '--type=merge',
      '-p',
      '{"metadata":{"labels":{"merge":"yes"}}}',
    ]);
    await emu.kubectlOk([
      'patch',
      'pod',
      'web-2',
      '--type=json',
      '-p',
      '[{"op":"add","path":"/metadata/labels/json","value":"yes"}]',
    ]);
    await emu.kubectlOk(['label', 'pod', 'web-2', 'app-']);
    const labels = JSON.parse(
      await emu.kubectlOk(['get', 'pod', 'web-2', '-o', 'jsonpath={.metadata.labels}']),
    );
    assert.deepEqual(labels, { tier: 'back', smp: 'yes', merge: 'yes', json: 'yes' });
    assert.equal(
      await emu.kubectlOk(['get', 'pod', 'web-2', '-o', 'jsonpath={.metadata.annotations.owner}']),
      'team-a',
    );
    const selected = rows(await emu.kubectlOk(['get', 'pods', '-l', 'tier in (back),!app', '-o', 'name']));
    assert.deepEqual(selected, [['pod/web-2']]);
  });

  it('describes a pod with its events', async () => {
    const p = await core.readNamespacedPod({ name: 'web-1', namespace: 'default' });
    await core.createNamespacedEvent({
      namespace: 'default',
      body: {
        metadata: { name: 'web-1.started' },
        involvedObject: {
          kind: 'Pod',
          name: 'web-1',
          namespace: 'default',
          uid: p.metadata!.uid,
          apiVersion: 'v1',
        },
        reason: 'CellStarted',
        message: 'cell is up',
        type: 'Normal',
        source: { component: 'kip' },
        firstTimestamp: new Date(),
        lastTimestamp: new Date(),
        count: 1,
      },
    });
    const out = await emu.kubectlOk(['describe', 'pod', 'web-1']);
    assert.match(out, /^Name:\s+web-1$/m);
    assert.match(out, /^Node:\s+vk-0/m);
    assert.match(out, /Normal\s+CellStarted\s+.*kip\s+cell is up/);
  });

  it('waits for a condition and watches the change with get -w', async () => {
    await emu.kubectlOk(['create', '-f', '-'], { input: pod('web-3') });
    const seen: string[] = [];
    const ac = new AbortController();
    const watching = emu.kubectl(['get', 'pods', 'web-3', '-w'], {
      signal: ac.signal,
      onStdout: (d) => seen.push(d),
    });
    const waiting = emu.kubectl(['wait', '--for=condition=Ready', 'pod/web-3', '--timeout=20s']);
    await new Promise((r) => setTimeout(r, 1000));
    await core.patchNamespacedPodStatus(
      {
        name: 'web-3',
        namespace: 'default',
        body: {
          status: {
            phase: 'Running',
            conditions: [{ type: 'Ready', status: 'True' }],
            containerStatuses: [
              {
                name: 'c',
                ready: true,
                restartCount: 0,
                image: 'busybox:1.36',
                imageID: '',
                state: { running: { startedAt: new Date() } },
              },
            ],
          },
        },
      },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    const waited = await waiting;
    assert.equal(waited.code, 0, waited.stderr);
    assert.equal(waited.stdout.trim(), 'pod/web-3 condition met');
    for (let i = 0; i < 50 && !/Running/.test(seen.join('')); i++)
      await new Promise((r) => setTimeout(r, 100));
    ac.abort();
    const lines = rows((await watching).stdout);
    assert.deepEqual(lines[0], ['NAME', 'READY', 'STATUS', 'RESTARTS', 'AGE']);
    assert.deepEqual(lines[1]!.slice(0, 3), ['web-3', '0/1', 'Pending']);
    assert.deepEqual(lines[2]!.slice(0, 3), ['web-3', '1/1', 'Running']);
  });

  it('deletes a bound pod gracefully: Terminating until its kubelet deletes it with grace 0', async () => {
    const uid = (await core.readNamespacedPod({ name: 'web-3', namespace: 'default' })).metadata!.uid!;
    const deleting = emu.kubectl(['delete', 'pod', 'web-3', '--timeout=20s']);
    let status = '';
    for (let i = 0; i < 50 && status !== 'Terminating'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = rows(await emu.kubectlOk(['get', 'pod', 'web-3']))[1]![2]!;
    }
    assert.equal(status, 'Terminating');
    await core.deleteNamespacedPod({
      name: 'web-3',
      namespace: 'default',
      gracePeriodSeconds: 0,
      body: { preconditions: { uid } },
    });
    const done = await deleting;
    assert.equal(done.code, 0, done.stderr);
    assert.equal(done.stdout.trim(), 'pod "web-3" deleted');
    const gone = await emu.kubectl(['get', 'pod', 'web-3']);
    assert.match(gone.stderr, /pods "web-3" not found/);
    await emu.kubectlOk(['create', '-f', '-'], {
      input: pod('unbound-1').replace('nodeName: vk-0', 'restartPolicy: Never'),
    });
    const unbound = await emu.kubectlOk(['delete', '-f', '-'], { input: pod('unbound-1') });
    assert.equal(unbound.trim(), 'pod "unbound-1" deleted', 'an unbound pod goes at once');
  });

  it('registers the Marketplace Application CRD and serves Applications with their printer columns', async () => {
    const crd = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: applications.app.k8s.io}
spec:
  group: app.k8s.io
  scope: Namespaced
  names: {plural: applications, singular: application, kind: Application, shortNames: [app]}
  versions:
  - name: v1beta1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: Type, type: string, jsonPath: .spec.descriptor.type}
    - {name: Version, type: string, jsonPath: .spec.descriptor.version}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-preserve-unknown-fields: true
            properties:
              descriptor:
                type: object
                required: [type]
                properties:
                  type: {type: string}
                  version: {type: string}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
`;
    await emu.kubectlOk(['apply', '-f', '-'], { input: crd });
    const app = (v: string) => `
apiVersion: app.k8s.io/v1beta1
kind: Application
metadata: {name: kip, labels: {app.kubernetes.io/name: kip}}
spec:
  descriptor: {type: Kip, version: "${v}"}
  selector: {matchLabels: {app.kubernetes.io/name: kip}}
`;
    assert.equal(
      (await emu.kubectlOk(['apply', '-f', '-'], { input: app('0.1.0') })).trim(),
      'application.app.k8s.io/kip created',
    );
    assert.equal(
      (await emu.kubectlOk(['apply', '-f', '-'], { input: app('0.2.0') })).trim(),
      'application.app.k8s.io/kip configured',
    );
    const table = rows(await emu.kubectlOk(['get', 'applications']));
    assert.deepEqual(table, [
      ['NAME', 'TYPE', 'VERSION'],
      ['kip', 'Kip', '0.2.0'],
    ]);
    assert.equal(await emu.kubectlOk(['get', 'app', 'kip', '-o', 'jsonpath={.metadata.generation}']), '2');
    const typed = await emu.kubectl(['apply', '-f', '-'], { input: app('0.3.0').replace('"0.3.0"', '3') });
    assert.equal(typed.code, 1);
    assert.match(
      typed.stderr,
      /spec.descriptor.version: Invalid value: "integer": spec.descriptor.version in body must be of type string: "integer"/,
    );
    assert.equal(
      await emu.kubectlOk(['get', 'app', 'kip', '-o', 'jsonpath={.spec.descriptor.version}']),
      '0.2.0',
      'the stored object is unchanged',
    );
    const strict = await emu.kubectl(['apply', '-f', '-'], { input: `${app('0.3.0')}extra: field\n` });
    assert.equal(strict.code, 1);
    assert.match(strict.stderr, /unknown field "extra"/);
  });

  it('runs the typed-client commands that send protobuf: create configmap/secret/token, certificate approve, auth can-i', async () => {
    assert.equal(
      (await emu.kubectlOk(['create', 'configmap', 'typed', '--from-literal=alpha=beta'])).trim(),
      'configmap/typed created',
    );
    assert.equal(await emu.kubectlOk(['get', 'configmap', 'typed', '-o', 'jsonpath={.data.alpha}']), 'beta');
    await emu.kubectlOk([
      'create',
      'secret',
      'generic',
      'typed',
      '--from-literal=pw=hunter2',
      '--type=kip.dev/test',
    ]);
    assert.equal(
      await emu.kubectlOk(['get', 'secret', 'typed', '-o', 'jsonpath={.type} {.data.pw}']),
      `kip.dev/test ${Buffer.from('hunter2').toString('base64')}`,
    );
    const token = (
      await emu.kubectlOk(['create', 'token', 'default', '--audience=kip', '--duration=20m'])
    ).trim();
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {
      aud: string[];
      exp: number;
      iat: number;
      sub: string;
    };
    assert.deepEqual(claims.aud, ['kip']);
    assert.equal(claims.exp - claims.iat, 1200);
    assert.equal(claims.sub, 'system:serviceaccount:default:default');

    const certs = emu.kubeConfig.makeApiClient(k8s.CertificatesV1Api);
    const pem = '-----BEGIN CERTIFICATE REQUEST-----\nMIIBAA==\n-----END CERTIFICATE REQUEST-----\n';
    await certs.createCertificateSigningRequest({
      body: {
        metadata: { name: 'node-vk-0', labels: { node: 'vk-0' } },
        spec: {
          request: Buffer.from(pem).toString('base64'),
          signerName: 'kubernetes.io/kubelet-serving',
          usages: ['server auth'],
          expirationSeconds: 3600,
        },
      },
    });
    assert.equal(rows(await emu.kubectlOk(['get', 'csr', 'node-vk-0']))[1]!.at(-1), 'Pending');
    assert.equal(
      (await emu.kubectlOk(['certificate', 'approve', 'node-vk-0'])).trim(),
      'certificatesigningrequest.certificates.k8s.io/node-vk-0 approved',
    );
    const csr = await certs.readCertificateSigningRequest({ name: 'node-vk-0' });
    assert.equal(rows(await emu.kubectlOk(['get', 'csr', 'node-vk-0']))[1]!.at(-1), 'Approved');
    assert.deepEqual(
      csr.status!.conditions!.map((c) => [c.type, c.status, c.reason]),
      [['Approved', 'True', 'KubectlApprove']],
    );
    assert.equal(csr.spec.expirationSeconds, 3600, 'the rest of the request is unchanged');
    assert.deepEqual(csr.metadata!.labels, { node: 'vk-0' });

    assert.equal(
      (await emu.kubectlOk(['auth', 'can-i', 'create', 'pods/log', '-n', 'kube-system'])).trim(),
      'yes',
    );
    const rules = await fetch(`${emu.url}/emulator/v1/authz/deny-rules`, {
      method: 'PUT',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ deny: [{ user: 'kubernetes-admin', resource: 'pods', subresource: 'log' }] }),
    });
    assert.equal(rules.status, 200);
    const denied = await emu.kubectl(['auth', 'can-i', 'create', 'pods/log', '-n', 'kube-system']);
    assert.match(denied.stdout.trim(), /^no - denied by emulator deny rule 0/);
    assert.equal(denied.code, 1);
    await fetch(`${emu.url}/emulator/v1/authz/deny-rules`, { method: 'DELETE' });

    // Kinds it does not decode from protobuf are refused by name, never half-stored.
    const deploy = await emu.kubectl(['create', 'deployment', 'typed', '--image=nginx']);
    assert.equal(deploy.code, 1);
    assert.match(deploy.stderr, /does not decode Deployment \(apps\/v1\) from protobuf; send JSON or YAML/);
  });

  it('scales a StatefulSet through its scale subresource', async () => {
    const sts = `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kip-provider}
spec:
  replicas: 1
  serviceName: kip
  selector: {matchLabels: {app: kip}}
  template:
    metadata: {labels: {app: kip}}
    spec: {containers: [{name: provider, image: "kip:1"}]}
`;
    await emu.kubectlOk(['apply', '-f', '-'], { input: sts });
    assert.equal(
      (await emu.kubectlOk(['scale', 'statefulset', 'kip-provider', '--replicas=0'])).trim(),
      'statefulset.apps/kip-provider scaled',
    );
    assert.equal(
      await emu.kubectlOk([
        'get',
        'sts',
        'kip-provider',
        '-o',
        'jsonpath={.spec.replicas} {.metadata.generation}',
      ]),
      '0 2',
    );
    const wrong = await emu.kubectl(['scale', 'sts', 'kip-provider', '--current-replicas=3', '--replicas=1']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /Expected replicas to be 3, was 0/);
  });

  it('refuses bad input with clear errors and keeps what is stored', async () => {
    const before = await emu.kubectlOk(['get', 'pods,configmaps', '-o', 'json']);
    const unknownKind = await emu.kubectl(['create', '-f', '-'], {
      input: 'apiVersion: v1\nkind: Frobnicator\nmetadata: {name: x}\n',
    });
    assert.equal(unknownKind.code, 1);
    assert.match(unknownKind.stderr, /no matches for kind "Frobnicator" in version "v1"/);
    const badYaml = await emu.kubectl(['apply', '-f', '-'], {
      input: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n bad: [\n',
    });
    assert.equal(badYaml.code, 1);
    assert.match(badYaml.stderr, /error converting YAML to JSON/);
    const badName = await emu.kubectl(['create', '-f', '-'], {
      input: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_Valid}\n',
    });
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /metadata.name: Invalid value: "Not_Valid": a lowercase RFC 1123 subdomain/);
    const unknownField = await emu.kubectl(['create', '-f', '-'], {
      input: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndatta: {a: b}\n',
    });
    assert.equal(unknownField.code, 1);
    assert.match(unknownField.stderr, /strict decoding error: unknown field "datta"/);
    const wrongNs = await emu.kubectl(['-n', 'nowhere', 'create', '-f', '-'], {
      input: 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n',
    });
    assert.equal(wrongNs.code, 1);
    assert.match(wrongNs.stderr, /namespaces "nowhere" not found/);
    const exists = await emu.kubectl(['create', '-f', '-'], { input: pod('web-2') });
    assert.match(exists.stderr, /AlreadyExists.*pods "web-2" already exists/);
    const immutable = await emu.kubectl(['patch', 'pod', 'web-2', '-p', '{"spec":{"nodeName":"elsewhere"}}']);
    assert.equal(immutable.code, 1);
    assert.match(immutable.stderr, /pod updates may not change fields/);
    const strip = (s: string) => JSON.stringify((JSON.parse(s) as { items: unknown[] }).items);
    assert.equal(strip(await emu.kubectlOk(['get', 'pods,configmaps', '-o', 'json'])), strip(before));
  });

  it('stops cleanly on SIGTERM, ending open watches', async () => {
    const watching = emu.kubectl(['get', 'pods', '-w'], { timeoutMs: 15_000 });
    await new Promise((r) => setTimeout(r, 1000));
    const started = Date.now();
    const code = await emu.process.stop(8000);
    // npm passes SIGTERM on and ends by it; a hung server would have needed SIGKILL.
    assert.ok(
      code === 0 || emu.process.proc.signalCode === 'SIGTERM',
      `exit ${code} ${emu.process.proc.signalCode}`,
    );
    assert.ok(Date.now() - started < 5000, 'stopped promptly');
    assert.doesNotMatch(emu.logs(), /shutdown failed/);
    const w = await watching;
    assert.notEqual(w.code, null, 'kubectl -w ended when the server went away');
  });
});
