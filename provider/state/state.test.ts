import assert from 'node:assert/strict';
import { Etcd3, type Namespace } from 'etcd3';
import { createLogger } from '../../lib/log.ts';
import { certificateSubject } from '../../lib/tls.ts';
import { startEtcd, type TestEtcd } from '../testing/etcd.ts';
import {
  CellConflictError,
  CellExistsError,
  CellStore,
  InvalidCellTransitionError,
  cellNameForPod,
} from './cells.ts';
import { ClusterIdMismatchError, ensureCA, ensureClusterId } from './identity.ts';
import { SchemaTooNewError } from './schema.ts';
import { StandbyStore } from './standby.ts';
import { StateStore, StateUnavailableError } from './store.ts';

const log = createLogger('state-test', 'silent');

describe('etcd state (real etcd)', function () {
  this.timeout(60_000);
  let etcd: TestEtcd;
  let prefixN = 0;
  const prefix = () => `/kip-test-${process.pid}-${prefixN++}/`;
  const open = (p: string, extra: Partial<Parameters<typeof StateStore.open>[0]> = {}) =>
    StateStore.open({ endpoints: [etcd.endpoint], prefix: p, log, ...extra }, 5000);

  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  it('keeps the cluster id and the CA stable across restarts', async () => {
    const p = prefix();
    const first = await open(p);
    const id = await ensureClusterId(first.ns);
    assert.match(id, /^kip-[a-z0-9]{10}$/);
    const ca = await ensureCA(first.ns);
    assert.equal(certificateSubject(ca.certPem).commonName, 'Kip cell CA');
    first.close();

    const second = await open(p);
    try {
      assert.equal(await ensureClusterId(second.ns), id);
      assert.deepEqual(await ensureCA(second.ns), ca, 'the CA is created once');
      await assert.rejects(ensureClusterId(second.ns, 'other-id'), (e: unknown) => {
        assert.ok(e instanceof ClusterIdMismatchError);
        assert.match(e.message, new RegExp(`"other-id" differs from the cluster id "${id}"`));
        return true;
      });
    } finally {
      second.close();
    }
  });

  it('uses a configured cluster id on first start, and concurrent first starts agree on one CA', async () => {
    const p = prefix();
    const stores = await Promise.all([open(p), open(p), open(p)]);
    try {
      assert.equal(await ensureClusterId(stores[0]!.ns, 'kip-lab'), 'kip-lab');
      const cas = await Promise.all(stores.map((s) => ensureCA(s.ns)));
      assert.equal(new Set(cas.map((c) => c.certPem)).size, 1);
    } finally {
      for (const s of stores) s.close();
    }
  });

  it('stores cell records with compare-and-swap updates', async () => {
    const store = await open(prefix());
    let t = Date.parse('2026-01-01T00:00:00Z');
    const cells = new CellStore(store.ns, () => new Date((t += 1000)));
    try {
      const uid = '6f1d2c3b-aaaa-bbbb-cccc-0123456789ab';
      const cellName = cellNameForPod('kip-abc', uid);
      assert.equal(cellName, 'kip-abc-6f1d2c3baaaabbbbcccc0123456789ab');
      const created = await cells.create({ podUid: uid, namespace: 'default', podName: 'web', cellName });
      assert.equal(created.record.state, 'requested');

      await assert.rejects(
        cells.create({ podUid: uid, namespace: 'default', podName: 'web', cellName }),
        (e: unknown) => e instanceof CellExistsError && e.current.record.cellName === cellName,
      );

      const creating = await cells.update(created, { state: 'creating', zone: 'us-central1-a' });
      assert.equal(creating.record.state, 'creating');
      assert.equal(creating.record.createdAt, created.record.createdAt);
      assert.notEqual(creating.record.stateSince, created.record.stateSince);

      // A writer holding the stale read loses, and learns what is there now.
      await assert.rejects(cells.update(created, { state: 'booting' }), (e: unknown) => {
        assert.ok(e instanceof CellConflictError);
        assert.equal(e.current?.record.state, 'creating');
        return true;
      });
      assert.equal((await cells.get(uid))!.record.state, 'creating', 'the losing write changed nothing');

      await assert.rejects(cells.update(creating, { state: 'requested' }), InvalidCellTransitionError);

      // mutate re-reads on conflict; two concurrent mutators both land.
      await Promise.all([
        cells.mutate(uid, () => ({ address: '198.18.0.7' })),
        cells.mutate(uid, () => ({ machineType: 'e2-small' })),
      ]);
      const after = (await cells.get(uid))!;
      assert.equal(after.record.address, '198.18.0.7');
      assert.equal(after.record.machineType, 'e2-small');

      await cells.create({
        podUid: '11111111-2222-3333-4444-555555555555',
        namespace: 'default',
        podName: 'job',
        cellName: 'x',
        state: 'ready',
      });
      const counts = await cells.countByState();
      assert.equal(counts.creating, 1);
      assert.equal(counts.ready, 1);
      assert.equal(counts.deleting, 0);
      assert.equal((await cells.list()).length, 2);

      await assert.rejects(cells.delete(creating), CellConflictError);
      await cells.delete(after);
      assert.equal(await cells.get(uid), null);
    } finally {
      store.close();
    }
  });

  it('hands a ready standby cell to exactly one of two pods claiming it at once', async () => {
    const store = await open(prefix());
    try {
      const standby = new StandbyStore(store.ns);
      const cells = new CellStore(store.ns);
      const created = await standby.create({ name: 'kip-x-s1', machineType: 'e2-small', spot: false });
      assert.equal(
        await standby.claim(created, { podUid: 'p0', namespace: 'd', podName: 'p0' }),
        null,
        'not ready',
      );
      assert.ok(await standby.update(created, { state: 'ready', zone: 'z', address: '10.0.0.9' }));
      const ready = (await standby.get('kip-x-s1'))!;
      const results = await Promise.all(
        ['p1', 'p2'].map((uid) => standby.claim(ready, { podUid: uid, namespace: 'd', podName: uid })),
      );
      const winners = results.filter((r) => r !== null);
      assert.equal(winners.length, 1);
      const won = winners[0]!.record;
      assert.deepEqual(
        (await cells.list()).map((c) => c.record.podUid),
        [won.podUid],
      );
      assert.equal(won.cellName, 'kip-x-s1');
      assert.equal(won.state, 'ready');
      assert.equal(won.address, '10.0.0.9');
      assert.equal(await standby.get('kip-x-s1'), null, 'the standby record is gone');
      // A stale read cannot update or delete a claimed cell.
      assert.equal(await standby.update(ready, { state: 'ready' }), false);
      assert.equal(await standby.delete(ready), false);
    } finally {
      store.close();
    }
  });

  it('migrates the schema forward and refuses a newer stored version', async () => {
    const p = prefix();
    const raw = new Etcd3({ hosts: etcd.endpoint });
    try {
      // Unversioned keys from before versioning count as version 0.
      await raw.namespace(p).put('pods/a').value('x');
      const steps: string[] = [];
      const migrations = [
        {
          from: 0,
          description: 'move pods/ to cells/',
          apply: async (ns: Namespace) => {
            steps.push('0->1');
            const all = await ns.getAll().prefix('pods/').strings();
            for (const [k, v] of Object.entries(all))
              await ns.put(`cells/${k.slice('pods/'.length)}`).value(v);
            await ns.delete().prefix('pods/');
          },
        },
        { from: 1, description: 'noop', apply: async () => void steps.push('1->2') },
      ];
      const s = await open(p, { migrations, schemaVersion: 2 });
      s.close();
      assert.deepEqual(steps, ['0->1', '1->2']);
      assert.equal(await raw.namespace(p).get('cells/a').string(), 'x');
      assert.equal(await raw.namespace(p).get('schema/version').string(), '2');

      // Reopening at the same version runs nothing.
      (await open(p, { migrations, schemaVersion: 2 })).close();
      assert.equal(steps.length, 2);

      // An older provider must not start on newer state.
      await assert.rejects(open(p), (e: unknown) => {
        assert.ok(e instanceof SchemaTooNewError);
        assert.match(e.message, /schema version 2 is newer than this provider supports \(1\)/);
        return true;
      });

      const fresh = prefix();
      (await open(fresh)).close();
      assert.equal(await raw.namespace(fresh).get('schema/version').string(), '1');
    } finally {
      raw.close();
    }
  });

  it('ping fails promptly when etcd is unreachable', async () => {
    const start = Date.now();
    await assert.rejects(
      StateStore.open({ endpoints: ['http://127.0.0.1:1'], prefix: '/x/', log, callTimeoutMs: 500 }, 0),
      StateUnavailableError,
    );
    assert.ok(Date.now() - start < 5000);
  });
});
