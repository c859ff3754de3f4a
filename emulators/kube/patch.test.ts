import assert from 'node:assert/strict';
import { ApiError } from './api-errors.ts';
import { applyConfiguration, jsonPatch, mergePatch, patchTypeOf, strategicMergePatch } from './patch.ts';

const isCode = (code: number) => (e: unknown) => e instanceof ApiError && e.code === code;

describe('kube emulator patches', () => {
  it('maps content types to patch types and refuses others with 415', () => {
    assert.equal(patchTypeOf('application/strategic-merge-patch+json; charset=utf-8'), 'strategic');
    assert.equal(patchTypeOf('application/apply-patch+yaml'), 'apply');
    assert.throws(() => patchTypeOf('application/json'), isCode(415));
  });

  it('merge patch: objects merge, null deletes, lists replace', () => {
    const doc = { a: { b: 1, c: 2 }, l: [1, 2], keep: true };
    assert.deepEqual(mergePatch(doc, { a: { b: null, d: 3 }, l: [9] }), {
      a: { c: 2, d: 3 },
      l: [9],
      keep: true,
    });
    assert.deepEqual(doc, { a: { b: 1, c: 2 }, l: [1, 2], keep: true }, 'the input is not changed');
  });

  it('JSON patch: malformed is 400, not applicable is 422, input untouched', () => {
    const doc = { data: { a: '1' } };
    assert.deepEqual(jsonPatch(doc, [{ op: 'replace', path: '/data/a', value: '2' }]), { data: { a: '2' } });
    assert.deepEqual(doc, { data: { a: '1' } });
    assert.throws(() => jsonPatch(doc, { op: 'add' }), isCode(400));
    assert.throws(() => jsonPatch(doc, [{ op: 'frobnicate', path: '/x' }]), isCode(400));
    assert.throws(() => jsonPatch(doc, [{ op: 'remove', path: '/data/missing/deeper' }]), isCode(422));
    assert.throws(() => jsonPatch(doc, [{ op: 'test', path: '/data/a', value: 'x' }]), isCode(422));
  });

  describe('strategic merge patch', () => {
    const keys = {
      'spec.containers': 'name',
      'spec.containers[].env': 'name',
      'metadata.finalizers': '',
      'status.conditions': 'type',
    };
    const pod = {
      metadata: { finalizers: ['a', 'b'] },
      spec: {
        containers: [
          { name: 'app', image: 'app:1', env: [{ name: 'A', value: '1' }], args: ['x'] },
          { name: 'side', image: 'side:1' },
        ],
        tolerations: [{ key: 'k' }],
      },
      status: { conditions: [{ type: 'Ready', status: 'False' }] },
    };

    it('merges keyed lists element by element and replaces unkeyed ones', () => {
      const out = strategicMergePatch(
        pod,
        {
          spec: {
            containers: [
              { name: 'app', env: [{ name: 'B', value: '2' }], args: ['y'] },
              { name: 'new', image: 'n:1' },
            ],
            tolerations: [{ key: 'other' }],
          },
          status: { conditions: [{ type: 'Ready', status: 'True' }] },
        },
        keys,
      ) as typeof pod;
      assert.deepEqual(
        out.spec.containers.map((c) => c.name),
        ['app', 'side', 'new'],
      );
      assert.deepEqual(
        out.spec.containers[0]!.env!.map((e) => e.name),
        ['A', 'B'],
      );
      assert.deepEqual(out.spec.containers[0]!.args, ['y']);
      assert.equal(out.spec.containers[0]!.image, 'app:1');
      assert.deepEqual(out.spec.tolerations, [{ key: 'other' }]);
      assert.deepEqual(out.status.conditions, [{ type: 'Ready', status: 'True' }]);
      assert.equal(pod.spec.containers.length, 2, 'the input is not changed');
    });

    it('honours $patch, $deleteFromPrimitiveList, $retainKeys and $setElementOrder', () => {
      const out = strategicMergePatch(
        pod,
        {
          spec: {
            containers: [
              { name: 'side', $patch: 'delete' },
              { name: 'app', $retainKeys: ['name', 'image'], image: 'app:2' },
            ],
            '$setElementOrder/containers': [{ name: 'app' }],
          },
          status: { $patch: 'replace', phase: 'Running' },
          '$deleteFromPrimitiveList/unused': [],
        },
        keys,
      ) as Record<string, Record<string, unknown>>;
      assert.deepEqual(out.spec!.containers, [{ name: 'app', image: 'app:2' }]);
      assert.deepEqual(out.status, { phase: 'Running' });
      const fin = strategicMergePatch(
        pod,
        { metadata: { '$deleteFromPrimitiveList/finalizers': ['a'] } },
        keys,
      ) as typeof pod;
      assert.deepEqual(fin.metadata.finalizers, ['b']);
      const union = strategicMergePatch(pod, { metadata: { finalizers: ['b', 'c'] } }, keys) as typeof pod;
      assert.deepEqual(union.metadata.finalizers, ['a', 'b', 'c']);
    });

    it('refuses list elements without their merge key and non-object patches with 400', () => {
      assert.throws(
        () => strategicMergePatch(pod, { spec: { containers: [{ image: 'x' }] } }, keys),
        isCode(400),
      );
      assert.throws(() => strategicMergePatch(pod, [1], keys), isCode(400));
    });
  });

  it('server-side apply merges the configuration and never deletes on null', () => {
    const live = { data: { a: '1', b: '2' } };
    assert.deepEqual(applyConfiguration(live, { data: { a: '9', b: null } }, {}), {
      data: { a: '9', b: '2' },
    });
  });
});
