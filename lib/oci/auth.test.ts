import assert from 'node:assert/strict';
import { parseChallenge, parseTokenAnswer, tokenUrl } from './auth.ts';

describe('registry authentication challenges', () => {
  it('parses a bearer challenge with quoted values holding commas and escapes', () => {
    const c = parseChallenge(
      'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope",note="say \\"hi\\""',
    );
    assert.equal(c?.scheme, 'bearer');
    assert.deepEqual(c?.params, {
      realm: 'https://auth.example/token',
      service: 'registry.example',
      scope: 'repository:a/b:pull,push',
      error: 'insufficient_scope',
      note: 'say "hi"',
    });
    const url = tokenUrl(c!, 'repository:a/b:pull');
    assert.equal(
      url.toString(),
      'https://auth.example/token?service=registry.example&scope=repository%3Aa%2Fb%3Apull',
    );
  });

  it('parses basic challenges and tolerates junk', () => {
    assert.deepEqual(parseChallenge('Basic realm="kip"'), { scheme: 'basic', params: { realm: 'kip' } });
    assert.equal(parseChallenge(undefined), undefined);
    assert.equal(parseChallenge('   '), undefined);
    assert.throws(() => tokenUrl({ scheme: 'bearer', params: {} }, 's'));
  });

  it('reads token answers in both spellings with their lifetime', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.deepEqual(parseTokenAnswer({ token: 't', expires_in: 300 }, now), {
      token: 't',
      expiresAt: now + 290_000,
    });
    assert.deepEqual(parseTokenAnswer({ access_token: 'a' }, now), { token: 'a', expiresAt: now + 50_000 });
    assert.equal(parseTokenAnswer({ token: '' }, now), undefined);
    assert.equal(parseTokenAnswer('x', now), undefined);
  });
});
