import assert from 'node:assert/strict';
import { ApiError } from './api-errors.ts';
import type { KObject } from './object.ts';
import { labelSelectorObjectMatches, parseFieldSelector, parseLabelSelector } from './selectors.ts';

const obj = (labels: Record<string, string>, extra: Record<string, unknown> = {}): KObject => ({
  metadata: { name: 'n', namespace: 'ns', labels },
  ...extra,
});
const bad = (e: unknown) => e instanceof ApiError && e.code === 400;

describe('kube emulator selectors', () => {
  it('matches label selectors in the query-string syntax', () => {
    const o = obj({ app: 'web', tier: 'front', n: '5' });
    const yes = [
      '',
      'app',
      'app=web',
      'app==web',
      'tier!=back',
      'missing!=x',
      'app in (web, db)',
      'tier notin (back)',
      '!missing',
      'n>3',
      'n<6',
      'app=web,tier in (front)',
    ];
    const no = [
      'missing',
      'app=db',
      'app!=web',
      'app in (db)',
      'tier notin (front,back)',
      '!app',
      'n>5',
      'app=web,tier=back',
    ];
    for (const s of yes) assert.equal(parseLabelSelector(s)(o), true, s);
    for (const s of no) assert.equal(parseLabelSelector(s)(o), false, s);
  });

  it('refuses malformed label selectors with 400', () => {
    for (const s of ['app in (a', 'a=b=c', 'app=!x', 'k>abc', '-bad=1'])
      assert.throws(() => parseLabelSelector(s), bad, s);
  });

  it('matches field selectors the resource declares, and refuses others with 400', () => {
    const fields = {
      'spec.nodeName': (o: KObject) => (o.spec as { nodeName?: string } | undefined)?.nodeName,
    };
    const o = obj({}, { spec: { nodeName: 'vk' } });
    assert.equal(parseFieldSelector('spec.nodeName=vk,metadata.namespace=ns', fields)(o), true);
    assert.equal(parseFieldSelector('spec.nodeName!=vk', fields)(o), false);
    assert.equal(parseFieldSelector('spec.nodeName=', fields)(obj({})), true, 'empty matches an unset field');
    assert.throws(
      () => parseFieldSelector('status.phase=Running', fields),
      (e: unknown) => bad(e) && /field label not supported: status.phase/.test((e as Error).message),
    );
    assert.throws(() => parseFieldSelector('nonsense', fields), bad);
  });

  it('matches LabelSelector objects (matchLabels and matchExpressions)', () => {
    const labels = { zone: 'a', gpu: 'yes' };
    assert.equal(
      labelSelectorObjectMatches(
        { matchLabels: { zone: 'a' }, matchExpressions: [{ key: 'gpu', operator: 'Exists' }] },
        labels,
      ),
      true,
    );
    assert.equal(
      labelSelectorObjectMatches(
        { matchExpressions: [{ key: 'zone', operator: 'NotIn', values: ['a'] }] },
        labels,
      ),
      false,
    );
    assert.equal(
      labelSelectorObjectMatches({ matchExpressions: [{ key: 'spot', operator: 'DoesNotExist' }] }, labels),
      true,
    );
  });
});
