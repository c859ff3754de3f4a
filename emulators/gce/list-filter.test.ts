import assert from 'node:assert/strict';
import { compileFilter, FilterError } from './list-filter.ts';

const vms = [
  {
    name: 'cell-a',
    status: 'RUNNING',
    labels: { 'kip-cluster': 'c1', role: 'cell' },
    scheduling: { automaticRestart: false },
  },
  {
    name: 'cell-b',
    status: 'STAGING',
    labels: { 'kip-cluster': 'c1' },
    scheduling: { automaticRestart: true },
  },
  {
    name: 'other',
    status: 'RUNNING',
    labels: { 'kip-cluster': 'c2' },
    scheduling: { automaticRestart: true },
  },
  { name: 'bare', status: 'RUNNING', scheduling: { automaticRestart: true } },
];
const names = (filter: string) => vms.filter(compileFilter(filter)).map((v) => v.name);

describe('GCE list filters', () => {
  it('matches labels in the spellings clients send', () => {
    assert.deepEqual(names('labels.kip-cluster = "c1"'), ['cell-a', 'cell-b']);
    assert.deepEqual(names('labels.kip-cluster=c1'), ['cell-a', 'cell-b']);
    assert.deepEqual(names("labels.kip-cluster = 'c2'"), ['other']);
    assert.deepEqual(names('labels.kip-cluster eq c1'), ['cell-a', 'cell-b']);
    assert.deepEqual(names('labels.role:*'), ['cell-a']);
  });

  it('combines expressions with implicit AND, AND, OR and NOT', () => {
    assert.deepEqual(names('(labels.kip-cluster = "c1") (status = RUNNING)'), ['cell-a']);
    assert.deepEqual(names('labels.kip-cluster = c1 AND status != RUNNING'), ['cell-b']);
    assert.deepEqual(names('(labels.kip-cluster = c2) OR (name = cell-b)'), ['cell-b', 'other']);
    assert.deepEqual(names('NOT labels.kip-cluster:*'), ['bare']);
    assert.deepEqual(names('scheduling.automaticRestart = false'), ['cell-a']);
  });

  it('supports wildcards and the regular-expression form', () => {
    assert.deepEqual(names('name = cell-*'), ['cell-a', 'cell-b']);
    assert.deepEqual(names("name eq 'cell-.*'"), ['cell-a', 'cell-b']);
    assert.deepEqual(names('name ne cell-.*'), ['other', 'bare']);
  });

  it('rejects malformed filters', () => {
    assert.throws(() => compileFilter('(labels.a = b'), FilterError);
    assert.throws(() => compileFilter('labels.a ='), FilterError);
    assert.throws(() => compileFilter('= b'), FilterError);
  });
});
