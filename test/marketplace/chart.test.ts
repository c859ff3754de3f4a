import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { validateProviderConfig } from '../../provider/config.ts';
import { parseAgentConfig } from '../../usage-reporter/config.ts';
import { validateKubeObject } from './kube-validate.ts';
import {
  find,
  imagePrefix,
  parseRendered,
  publishedVersion,
  renderChart,
  root,
  runRender,
  type Rendered,
  renderer,
} from './render.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const withCache = {
  'imageCache.enabled': true,
  'imageCache.nfsServer': '10.20.0.2',
  'imageCache.nfsPath': '/kip-cache',
  'imageCache.replicas': 2,
};

async function assertValid(objs: Rendered[]): Promise<void> {
  const problems = (await Promise.all(objs.map((o) => validateKubeObject(o.obj)))).flat();
  assert.deepEqual(problems, []);
}

function configOf(objs: Rendered[], name: string): string {
  return (find(objs, 'ConfigMap', name)!.data as Record<string, string>)['config.yaml']!;
}

describe('chart/kip rendered from schema.yaml', function () {
  this.timeout(60000);
  // The first render builds tools/chart-render (Go), which takes a while on a busy machine.
  before(function () {
    this.timeout(180000);
    renderer();
  });

  it('renders the default install: Application, StatefulSet, Service, two ConfigMaps, no RBAC', async () => {
    const objs = renderChart();
    assert.deepEqual(objs.map((o) => `${o.obj.kind}/${o.obj.metadata.name}`).sort(), [
      'Application/kip',
      'ConfigMap/kip-provider-config',
      'ConfigMap/kip-usage-reporter-config',
      'Service/kip-kubelet-api',
      'StatefulSet/kip-provider',
    ]);
    for (const o of objs)
      assert.equal(o.obj.metadata.labels?.['app.kubernetes.io/name'], 'kip', `${o.source} label`);
    await assertValid(objs);
  });

  it('renders test values (image cache on, plain-Helm RBAC) and the test overlay, all valid', async () => {
    const objs = renderChart({ parameters: withCache, values: { rbac: { create: true } } });
    const deploy = find(objs, 'Deployment', 'kip-image-cache')!;
    assert.equal((deploy.spec as Obj).replicas, 2);
    assert.equal((deploy.spec as Obj).template.spec.serviceAccountName, 'kip-imagecache-serviceaccount');
    assert.ok(find(objs, 'ClusterRole', 'kip-system:kip:provider'));
    assert.ok(find(objs, 'ServiceAccount', 'kip-provider-serviceaccount'));
    await assertValid(objs);

    const test = renderChart({ testMode: true });
    const tester = find(test, 'Pod', 'kip-tester')!;
    assert.equal(tester.metadata.annotations!['marketplace.cloud.google.com/verification'], 'test');
    assert.equal((tester.spec as Obj).containers[0].image, `${imagePrefix}/tester:${publishedVersion()}`);
    assert.equal((tester.spec as Obj).serviceAccountName, 'kip-deployer-sa');
    const cfg = validateProviderConfig(parseYaml(configOf(test, 'kip-provider-config')));
    assert.equal(cfg.cloud.project, 'kip-apptest-project', 'the overlay default is used');
    await assertValid(test);
  });

  it('the schema check catches what the API server would refuse', async () => {
    const sts = structuredClone(find(renderChart(), 'StatefulSet')!);
    (sts.spec as Obj).template.spec.containers[0].ports[0].containerPort = 'kubelet';
    delete (sts.spec as Obj).template.spec.containers[1].name;
    const problems = await validateKubeObject(sts);
    assert.match(problems.join('\n'), /containerPort must be integer/);
    assert.match(problems.join('\n'), /must have required property 'name'|required property name/);
    const app = structuredClone(find(renderChart(), 'Application')!);
    (app.spec as Obj).descriptor.version = 1;
    (app.spec as Obj).addOns = [];
    assert.equal((await validateKubeObject(app)).length, 2);
  });

  it('wires the StatefulSet as issue 6 asks: three containers, claims, probes, hardening', () => {
    const sts = find(renderChart(), 'StatefulSet', 'kip-provider')!.spec as Obj;
    const pod = sts.template.spec;
    assert.deepEqual(
      pod.containers.map((c: Obj) => c.name),
      ['provider', 'etcd', 'usage-reporter'],
    );
    assert.deepEqual(
      sts.volumeClaimTemplates.map((c: Obj) => c.metadata.name),
      ['etcd-data', 'ubbagent-state'],
    );
    assert.equal(
      sts.volumeClaimTemplates[0].spec.storageClassName,
      'kip-system-kip-etcd-persistence-storageclass',
    );
    assert.equal(sts.volumeClaimTemplates[0].spec.resources.requests.storage, '10Gi');
    assert.equal(pod.serviceAccountName, 'kip-provider-serviceaccount');
    assert.equal(pod.securityContext.runAsNonRoot, true);
    for (const c of pod.containers as Obj[]) {
      assert.ok(c.readinessProbe || c.name === 'usage-reporter', `${c.name} readiness probe`);
      assert.ok(c.resources.requests.cpu && c.resources.limits.memory, `${c.name} resources`);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities.drop, ['ALL']);
    }
  });

  it('renders a provider config that the provider accepts, from the schema values', () => {
    const objs = renderChart({
      parameters: {
        ...withCache,
        'cloud.zones': 'us-central1-c, us-central1-f',
        'cloud.subnetwork': 'cells',
        'cloud.privateIpOnly': false,
      },
    });
    const cfg = validateProviderConfig(parseYaml(configOf(objs, 'kip-provider-config')));
    assert.equal(cfg.nodeName, 'kip-kip-system');
    assert.deepEqual(cfg.cloud.zones, ['us-central1-c', 'us-central1-f']);
    assert.equal(cfg.cloud.subnetwork, 'cells');
    assert.equal(cfg.cloud.privateIpOnly, false);
    assert.equal(cfg.cells.agentImage, `${imagePrefix}/cell-agent:${publishedVersion()}`);
    assert.deepEqual(cfg.etcd.endpoints, ['http://127.0.0.1:2379']);
    assert.equal(cfg.usageReporter.url, 'http://127.0.0.1:6080');
    assert.deepEqual(cfg.imageCache, {
      nfsServer: '10.20.0.2',
      nfsPath: '/kip-cache',
      mountPath: '/var/lib/kip/image-cache',
    });
    // A zone outside the region is refused by the provider: the chart passes it through unchanged.
    const bad = renderChart({ parameters: { 'cloud.zones': 'europe-west1-b' } });
    assert.throws(
      () => validateProviderConfig(parseYaml(configOf(bad, 'kip-provider-config'))),
      /cloud.zones\[0\]/,
    );
  });

  it('renders a usage reporter config in ubbagent format, with the reporting secret wired by env', () => {
    const objs = renderChart({ parameters: { reportingSecret: 'kip-reporting-secret' } });
    const text = configOf(objs, 'kip-usage-reporter-config');
    const key = Buffer.from(
      JSON.stringify({
        type: 'service_account',
        client_email: 'r@p.iam.gserviceaccount.com',
        private_key: 'k',
      }),
    ).toString('base64');
    const cfg = parseAgentConfig(text, 'usage reporter config', {
      AGENT_ENCODED_KEY: key,
      AGENT_CONSUMER_ID: 'project:kip-buyer',
    }) as Obj;
    assert.deepEqual(
      cfg.metrics.map((m: Obj) => m.name),
      ['cell_seconds', 'vcpu_seconds', 'memory_gib_seconds', 'gpu_seconds'],
    );
    assert.deepEqual(
      cfg.metrics.map((m: Obj) => m.type),
      ['int', 'int', 'int', 'int'],
    );
    const doubles = renderChart({
      values: {
        usageReporter: { metrics: ['cell_seconds', { name: 'memory_gib_seconds', type: 'double' }] },
      },
    });
    const typed = parseAgentConfig(configOf(doubles, 'kip-usage-reporter-config'), 'usage reporter config', {
      AGENT_ENCODED_KEY: key,
      AGENT_CONSUMER_ID: 'project:kip-buyer',
    }) as Obj;
    assert.deepEqual(
      typed.metrics.map((m: Obj) => `${m.name}:${m.type}`),
      ['cell_seconds:int', 'memory_gib_seconds:double'],
    );
    assert.equal(
      JSON.stringify(cfg).includes('project:kip-buyer'),
      true,
      'consumerId comes from AGENT_CONSUMER_ID',
    );
    const reporter = (find(objs, 'StatefulSet')!.spec as Obj).template.spec.containers.find(
      (c: Obj) => c.name === 'usage-reporter',
    );
    const env = Object.fromEntries(
      (reporter.env as Obj[]).map((e) => [e.name, e.value ?? e.valueFrom.secretKeyRef]),
    );
    assert.deepEqual(env.AGENT_ENCODED_KEY, { name: 'kip-reporting-secret', key: 'reporting-key' });
    assert.deepEqual(env.AGENT_CONSUMER_ID, { name: 'kip-reporting-secret', key: 'consumer-id' });
    assert.equal(env.AGENT_CONFIG_FILE, '/etc/ubbagent/config.yaml');
    assert.equal(env.AGENT_STATE_DIR, '/var/lib/ubbagent');
    assert.equal(env.AGENT_LOCAL_PORT, '6080');
  });

  it('has a valid Application: JSON deploy-info, icon, info on running a pod on the virtual node', () => {
    const app = find(renderChart(), 'Application', 'kip')!;
    const info = JSON.parse(app.metadata.annotations!['marketplace.cloud.google.com/deploy-info']!) as Obj;
    assert.equal(info.partner_id, 'kip');
    assert.equal(info.product_id, 'kip');
    const icon = app.metadata.annotations!['kubernetes-engine.cloud.google.com/icon']!;
    const png = Buffer.from(icon.replace(/^data:image\/png;base64,/, ''), 'base64');
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    const spec = app.spec as Obj;
    assert.ok(spec.info.some((i: Obj) => /virtual-kubelet/.test(i.value ?? '')));
    assert.match(spec.descriptor.notes, /kubectl get node kip-kip-system/);
    assert.deepEqual(spec.selector.matchLabels, { 'app.kubernetes.io/name': 'kip' });
    assert.ok(spec.componentKinds.some((k: Obj) => k.kind === 'StatefulSet'));
  });

  it('refuses bad input with one line naming the problem', () => {
    const noProject = runRender(['--schema', 'schema.yaml', '--parameters', '{}']);
    assert.equal(noProject.status, 1);
    assert.match(noProject.stderr, /^chart-render: schema: required property "cloud.project" has no value/);
    assert.equal(noProject.stderr.trim().split('\n').length, 1);
    const unknown = runRender([
      '--schema',
      'schema.yaml',
      '--parameters',
      '{"cloud.project":"kip-test-project","replicas":3}',
    ]);
    assert.match(unknown.stderr, /"replicas": no such property defined in schema/);
    const cache = runRender([
      '--schema',
      'schema.yaml',
      '--parameters',
      '{"cloud.project":"kip-test-project","imageCache.enabled":true}',
    ]);
    assert.equal(cache.status, 1);
    assert.match(cache.stderr, /imageCache.enabled needs imageCache.nfsServer/);
  });

  it('make app/render prints the default install, and VALUES=<file> overrides it', () => {
    const def = spawnSync('make', ['-s', 'app/render'], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, PROJECT: '' },
    });
    assert.equal(def.status, 0, def.stderr);
    const objs = parseRendered(def.stdout);
    assert.ok(find(objs, 'StatefulSet', 'kip-provider'));
    assert.match(def.stdout, /^---\n# Source: kip\/templates\/application.yaml\n/);
    const dir = mkdtempSync(join(tmpdir(), 'kip-values-'));
    try {
      writeFileSync(join(dir, 'v.yaml'), 'provider:\n  nodeName: kip-virtual\n');
      const custom = spawnSync('make', ['-s', 'app/render', `VALUES=${join(dir, 'v.yaml')}`], {
        cwd: root,
        encoding: 'utf8',
      });
      assert.equal(custom.status, 0, custom.stderr);
      assert.match(configOf(parseRendered(custom.stdout), 'kip-provider-config'), /nodeName: kip-virtual/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('make app/build, app/install and app/verify say in one line that docker is missing', function () {
    const probe = spawnSync('docker', ['info'], { encoding: 'utf8' });
    if (probe.status === 0) this.skip(); // a machine with docker would really build
    for (const target of ['app/build', 'app/install', 'app/install-test', 'app/verify']) {
      const r = spawnSync('make', ['-s', target, 'PROJECT=kip-test-project'], {
        cwd: root,
        encoding: 'utf8',
      });
      assert.notEqual(r.status, 0, target);
      assert.match(
        r.stderr.trim(),
        new RegExp(`^Makefile:\\d+: \\*\\*\\* ${target}: docker is not available[^\\n]*$`),
      );
    }
  });
});
