import assert from 'node:assert/strict';
import { checkMarketplaceSchema } from './marketplace-schema.ts';
import { find, imagePrefix, loadSchemaFile, publishedVersion, renderChart, renderer } from './render.ts';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const schema = () => structuredClone(loadSchemaFile()) as Obj;
const overlay = () => loadSchemaFile('apptest/deployer/schema.yaml') as Obj;

describe('schema.yaml against the Marketplace deployer rules', () => {
  // The first render builds tools/chart-render (Go), which takes a while on a busy machine.
  before(function () {
    this.timeout(180000);
    renderer();
  });

  it('passes every rule, alone and with the test overlay', () => {
    assert.deepEqual(checkMarketplaceSchema(schema()), []);
    assert.deepEqual(checkMarketplaceSchema(schema(), overlay()), []);
  });

  it('declares the six images under one prefix, each with valid property types', () => {
    const images = schema()['x-google-marketplace'].images as Obj;
    assert.deepEqual(Object.keys(images).sort(), [
      '',
      'cell-agent',
      'etcd',
      'image-cache-controller',
      'kube-proxy',
      'ubbagent',
    ]);
  });

  it('has publishedVersion equal to the Application descriptor version and every image tag', () => {
    const version = publishedVersion();
    const objs = renderChart({
      parameters: {
        'imageCache.enabled': true,
        'imageCache.nfsServer': '10.0.0.2',
        'imageCache.nfsPath': '/cache',
      },
    });
    const app = find(objs, 'Application')!;
    assert.equal((app.spec as Obj).descriptor.version, version);
    const images = objs.flatMap((o) => {
      const pod =
        o.obj.kind === 'StatefulSet' || o.obj.kind === 'Deployment'
          ? (o.obj.spec as Obj).template.spec
          : null;
      return pod ? (pod.containers as Obj[]).map((c) => c.image as string) : [];
    });
    assert.equal(images.length, 4);
    for (const image of images)
      assert.match(image, new RegExp(`^${imagePrefix}(/[a-z-]+)?:${version.replace(/\./g, '\\.')}$`));
    // Every image the schema declares reaches the install (none is declared and then ignored).
    const text = JSON.stringify(objs.map((o) => o.obj));
    for (const name of Object.keys(schema()['x-google-marketplace'].images as Obj)) {
      const ref = `${imagePrefix}${name ? `/${name}` : ''}:${version}`;
      assert.ok(text.includes(ref), `${ref} is used by the chart`);
    }
  });

  it('gives no wildcard to any service account, and only Kip-named verbs', () => {
    const text = JSON.stringify(schema());
    assert.ok(!text.includes('"*"'), 'a wildcard is in schema.yaml');
  });

  // Each mutation breaks one rule the deployer enforces; the checker must name it.
  const cases: Array<[string, (s: Obj) => void, RegExp]> = [
    [
      'a wildcard verb',
      (s) =>
        (s.properties['provider.serviceAccount'][
          'x-google-marketplace'
        ].serviceAccount.roles[0].rules[0].verbs = ['*']),
      /verbs has a wildcard/,
    ],
    [
      'a predefined ClusterRole other than view',
      (s) =>
        s.properties['provider.serviceAccount']['x-google-marketplace'].serviceAccount.roles.push({
          type: 'ClusterRole',
          rulesType: 'PREDEFINED',
          rulesFromRoleName: 'edit',
        }),
      /only predefined ClusterRole allowed is view/,
    ],
    [
      'a service account without description',
      (s) =>
        delete s.properties['imageCache.serviceAccount']['x-google-marketplace'].serviceAccount.description,
      /needs a description/,
    ],
    [
      'an empty apiGroups',
      (s) =>
        (s.properties['provider.serviceAccount'][
          'x-google-marketplace'
        ].serviceAccount.roles[0].rules[0].apiGroups = []),
      /apiGroups must be a non-empty list/,
    ],
    [
      'publishedVersion without patch',
      (s) => (s['x-google-marketplace'].publishedVersion = '1.0'),
      /semver including the patch/,
    ],
    [
      'a v1 IMAGE property',
      (s) => (s.properties.img = { type: 'string', 'x-google-marketplace': { type: 'IMAGE' } }),
      /top level x-google-marketplace.images/,
    ],
    [
      'an unknown image property type',
      (s) => (s['x-google-marketplace'].images.etcd.properties['etcd.image'].type = 'DIGEST'),
      /type must be one of/,
    ],
    [
      'an unknown x-google-marketplace type',
      (s) => (s.properties.name['x-google-marketplace'].type = 'CLUSTER'),
      /unknown x-google-marketplace type/,
    ],
    [
      'a default of the wrong type',
      (s) => (s.properties['imageCache.replicas'].default = '1'),
      /default is not a integer/,
    ],
    [
      'a default outside its pattern',
      (s) => (s.properties['etcd.persistence.size'].default = '10 GB'),
      /does not match its pattern/,
    ],
    [
      'a required name that is no property',
      (s) => s.required.push('nope'),
      /required: nope is not a property/,
    ],
    [
      'a STORAGE_CLASS without type',
      (s) => delete s.properties['etcd.persistence.storageClass']['x-google-marketplace'].storageClass,
      /storageClass.type is required/,
    ],
    [
      'a missing releaseNote',
      (s) => delete s['x-google-marketplace'].publishedVersionMetadata.releaseNote,
      /releaseNote: is required/,
    ],
    [
      'a short OAuth scope',
      (s) =>
        (s['x-google-marketplace'].clusterConstraints.gcp.nodes.requiredOauthScopes = ['cloud-platform']),
      /must be fully qualified/,
    ],
    ['a NAME that is not a string', (s) => (s.properties.name.type = 'integer'), /NAME must be a string/],
  ];
  for (const [what, mutate, expected] of cases) {
    it(`refuses ${what}`, () => {
      const s = schema();
      mutate(s);
      const problems = checkMarketplaceSchema(s);
      assert.ok(
        problems.some((p) => expected.test(p)),
        `expected ${expected} in ${JSON.stringify(problems)}`,
      );
    });
  }

  it('requires a test-overlay default for every required property mpdev does not provision', () => {
    const o = overlay();
    delete o.properties['cloud.project'];
    assert.ok(
      checkMarketplaceSchema(schema(), o).some((p) =>
        /cloud.project has no default in the test overlay/.test(p),
      ),
    );
    const changed = overlay();
    changed.properties.name = { type: 'string', 'x-google-marketplace': { type: 'NAMESPACE' } };
    assert.ok(checkMarketplaceSchema(schema(), changed).some((p) => /type cannot change/.test(p)));
  });

  it('keeps the chart RBAC for plain Helm installs equal to the schema service account rules', () => {
    const s = schema();
    const objs = renderChart({ values: { rbac: { create: true } } });
    const rulesOf = (name: string) => objs.find((o) => o.obj.metadata.name === name)!.obj.rules as Obj[];
    const sa = (prop: string, type: string) =>
      (s.properties[prop]['x-google-marketplace'].serviceAccount.roles as Obj[])
        .filter((r) => r.type === type)
        .flatMap((r) => r.rules);
    assert.deepEqual(rulesOf('kip-system:kip:provider'), sa('provider.serviceAccount', 'ClusterRole'));
    assert.deepEqual(rulesOf('kip-system:kip:image-cache'), sa('imageCache.serviceAccount', 'ClusterRole'));
    assert.deepEqual(rulesOf('kip:image-cache'), sa('imageCache.serviceAccount', 'Role'));
  });
});
