import assert from 'node:assert/strict';
import { findCredentials } from './credentials.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('dockerconfigjson credential lookup', () => {
  it('matches keys like the kubelet: scheme ignored, port exact, one-label globs, Docker Hub aliases', () => {
    const doc = JSON.stringify({
      auths: {
        'https://index.docker.io/v1/': { auth: b64('hub:pw') },
        'http://127.0.0.1:5000/': { username: 'local', password: 'p:w' },
        '*.gcr.io': { auth: b64('glob:pw') },
        'registry.example.com': { auth: b64('noport:pw') },
      },
    });
    const users = (registry: string, repo = 'x/y') =>
      findCredentials([doc], registry, repo).map((c) => c.username);
    assert.deepEqual(users('docker.io', 'library/busybox'), ['hub']);
    assert.deepEqual(users('127.0.0.1:5000'), ['local']);
    assert.equal(findCredentials([doc], '127.0.0.1:5000', 'r')[0]!.password, 'p:w');
    assert.deepEqual(users('127.0.0.1:5001'), []);
    assert.deepEqual(users('eu.gcr.io'), ['glob']);
    assert.deepEqual(users('a.b.gcr.io'), []);
    assert.deepEqual(users('registry.example.com:443'), []);
    assert.deepEqual(users('registry.example.com'), ['noport']);
  });

  it('orders path-scoped keys first and skips unreadable documents and entries', () => {
    const broad = JSON.stringify({ auths: { 'reg.io': { auth: b64('broad:1') } } });
    const scoped = JSON.stringify({
      auths: { 'reg.io/team/app': { auth: b64('scoped:2') }, 'reg.io/other': { auth: b64('other:3') } },
    });
    const junk = [
      '{',
      'null',
      JSON.stringify({ auths: { 'reg.io': { auth: '!!!' } } }),
      JSON.stringify({ auths: { 'reg.io': 7 } }),
    ];
    const got = findCredentials([...junk, broad, scoped], 'reg.io', 'team/app/web').map((c) => c.username);
    assert.deepEqual(got, ['scoped', 'broad']);
    assert.equal(findCredentials([broad], 'reg.io', 'r')[0]!.source, 'reg.io');
  });

  it('reads the legacy bare map (.dockercfg) too', () => {
    const legacy = JSON.stringify({ 'quay.io': { auth: b64('old:pw') } });
    assert.deepEqual(
      findCredentials([legacy], 'quay.io', 'a/b').map((c) => c.username),
      ['old'],
    );
  });
});
