import assert from 'node:assert/strict';
import { GCE_NAME } from './annotations.ts';
import { cellLabels, insertRequestId, instanceName, labelValue } from './instance-names.ts';

describe('cell VM names and labels', () => {
  const uid = '3f0d9a8e-1b2c-4d5e-8f90-a1b2c3d4e5f6';

  it('derives the same valid name from the same pod, different for another cluster or generation', () => {
    const n = instanceName('cluster-1', uid);
    assert.equal(n, instanceName('cluster-1', uid));
    assert.match(n, GCE_NAME);
    assert.ok(n.length <= 63);
    assert.notEqual(n, instanceName('cluster-2', uid));
    assert.equal(instanceName('cluster-1', uid, 2), `${n}-g2`);
  });

  it('sanitises label values to GCE rules', () => {
    const labels = cellLabels('c', 'cell-1', { namespace: 'Team.A', name: 'x'.repeat(100), uid });
    for (const [k, v] of Object.entries(labels)) {
      assert.match(k, /^[a-z][a-z0-9_-]{0,62}$/);
      assert.match(v, /^[a-z0-9_-]{0,63}$/);
    }
    assert.equal(labels['kip-pod-namespace'], 'team-a');
    assert.notEqual(labelValue('y'.repeat(70) + 'a'), labelValue('y'.repeat(70) + 'b'));
  });

  it('makes a stable UUID request id per insert', () => {
    const id = insertRequestId(['c', 'vm', 'us-central1-a', 'e2-small', 'on-demand']);
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(id, insertRequestId(['c', 'vm', 'us-central1-a', 'e2-small', 'on-demand']));
    assert.notEqual(id, insertRequestId(['c', 'vm', 'us-central1-b', 'e2-small', 'on-demand']));
  });
});
