import assert from 'node:assert/strict';
import { ImagePullError } from './errors.ts';
import { parseReference, registryEndpoint } from './reference.ts';

describe('image references', () => {
  const cases: [
    string,
    { registry: string; repository: string; tag?: string; digest?: string; normalized: string },
  ][] = [
    [
      'busybox',
      {
        registry: 'docker.io',
        repository: 'library/busybox',
        tag: 'latest',
        normalized: 'docker.io/library/busybox:latest',
      },
    ],
    [
      'busybox:1.36',
      {
        registry: 'docker.io',
        repository: 'library/busybox',
        tag: '1.36',
        normalized: 'docker.io/library/busybox:1.36',
      },
    ],
    [
      'bitnami/redis',
      {
        registry: 'docker.io',
        repository: 'bitnami/redis',
        tag: 'latest',
        normalized: 'docker.io/bitnami/redis:latest',
      },
    ],
    [
      'index.docker.io/library/nginx:1',
      {
        registry: 'docker.io',
        repository: 'library/nginx',
        tag: '1',
        normalized: 'docker.io/library/nginx:1',
      },
    ],
    [
      'gcr.io/my-proj/app/web:v2.1',
      {
        registry: 'gcr.io',
        repository: 'my-proj/app/web',
        tag: 'v2.1',
        normalized: 'gcr.io/my-proj/app/web:v2.1',
      },
    ],
    [
      'localhost/app',
      { registry: 'localhost', repository: 'app', tag: 'latest', normalized: 'localhost/app:latest' },
    ],
    [
      '127.0.0.1:5000/kip/busybox:v1',
      {
        registry: '127.0.0.1:5000',
        repository: 'kip/busybox',
        tag: 'v1',
        normalized: '127.0.0.1:5000/kip/busybox:v1',
      },
    ],
    [
      `registry:5000/a_b/c-d@sha256:${'a'.repeat(64)}`,
      {
        registry: 'registry:5000',
        repository: 'a_b/c-d',
        digest: `sha256:${'a'.repeat(64)}`,
        normalized: `registry:5000/a_b/c-d@sha256:${'a'.repeat(64)}`,
      },
    ],
    [
      `busybox:1.36@sha256:${'b'.repeat(64)}`,
      {
        registry: 'docker.io',
        repository: 'library/busybox',
        tag: '1.36',
        digest: `sha256:${'b'.repeat(64)}`,
        normalized: `docker.io/library/busybox:1.36@sha256:${'b'.repeat(64)}`,
      },
    ],
  ];
  for (const [input, want] of cases) {
    it(`parses ${input}`, () => {
      const got = parseReference(input);
      assert.equal(got.registry, want.registry);
      assert.equal(got.repository, want.repository);
      assert.equal(got.tag, want.tag);
      assert.equal(got.digest, want.digest);
      assert.equal(got.normalized, want.normalized);
      assert.equal(got.name, `${want.registry}/${want.repository}`);
    });
  }

  const bad: [string, RegExp][] = [
    ['', /empty/],
    ['Busybox', /"Busybox" must be lowercase/],
    ['busybox:', /the tag "" must be/],
    ['busybox:-x', /the tag "-x"/],
    ['busybox@sha256:abc', /not sha256:<64 lowercase hex digits>/],
    [`busybox@md5:${'a'.repeat(32)}`, /not sha256/],
    ['a//b', /path component ""/],
    ['gcr.io/', /repository path component ""/],
    [' busybox', /whitespace/],
    ['my_registry.example.com:x/app', /tag "x\/app"|not a valid registry host|path component/],
  ];
  for (const [input, msg] of bad) {
    it(`refuses ${JSON.stringify(input)} with InvalidReference`, () => {
      assert.throws(
        () => parseReference(input),
        (err: unknown) =>
          err instanceof ImagePullError && err.reason === 'InvalidReference' && msg.test(err.message),
      );
    });
  }

  it('reaches Docker Hub through registry-1.docker.io', () => {
    assert.equal(registryEndpoint('docker.io'), 'registry-1.docker.io');
    assert.equal(registryEndpoint('gcr.io'), 'gcr.io');
  });
});
