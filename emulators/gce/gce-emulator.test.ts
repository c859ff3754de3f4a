import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  AcceleratorTypesClient,
  DisksClient,
  FirewallsClient,
  GlobalOperationsClient,
  ImagesClient,
  InstancesClient,
  MachineTypesClient,
  RegionsClient,
  SnapshotsClient,
  ZoneOperationsClient,
  ZonesClient,
  type protos,
} from '@google-cloud/compute';
import { startGceEmulator, type GceEmulator } from '../../test/support/gce.ts';

type Operation = protos.google.cloud.compute.v1.IOperation;
type Instance = protos.google.cloud.compute.v1.IInstance;
const A = 'us-central1-a';
const B = 'us-central1-b';
const IMAGE = 'projects/kip-cells/global/images/family/kip-cell';
const NO_RETRY = { retry: null, timeout: 5000 } as never;

function vm(name: string, machineType: string, zone = A, extra: Instance = {}): Instance {
  return {
    name,
    machineType: `zones/${zone}/machineTypes/${machineType}`,
    disks: [{ boot: true, autoDelete: true, initializeParams: { sourceImage: IMAGE, diskSizeGb: '10' } }],
    networkInterfaces: [{ network: 'global/networks/default' }],
    ...extra,
  };
}

/** The gRPC code and message of a rejected call. */
async function rejection(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (e) {
    return { code: (e as { code: number }).code, message: (e as Error).message };
  }
  throw new Error('expected the call to fail');
}

describe('Compute Engine emulator through @google-cloud/compute', function () {
  this.timeout(60000);
  let emu: GceEmulator;
  let project: string;
  let instances: InstancesClient;
  let zoneOps: ZoneOperationsClient;

  before(async () => {
    emu = await startGceEmulator({
      project: 'kip-test-project',
      config: { quotas: { limits: { G2_CPUS: 48 } } },
    });
    project = emu.project;
    instances = new InstancesClient(emu.clientOptions);
    zoneOps = new ZoneOperationsClient(emu.clientOptions);
  });
  after(async () => {
    await emu?.stop();
  });

  /** Waits on a zonal operation the way the provider does: wait until DONE. */
  async function done(op: Operation, zone = A): Promise<Operation> {
    let cur = op;
    while (cur.status !== 'DONE') [cur] = await zoneOps.wait({ project, zone, operation: cur.name! });
    return cur;
  }
  async function insert(resource: Instance, zone = A, requestId?: string): Promise<Operation> {
    const [lro] = await instances.insert({
      project,
      zone,
      instanceResource: resource,
      ...(requestId ? { requestId } : {}),
    });
    return lro.latestResponse as Operation;
  }
  async function running(name: string, zone = A): Promise<Instance> {
    for (let i = 0; i < 100; i++) {
      const [i0] = await instances.get({ project, zone, instance: name });
      if (i0.status === 'RUNNING') return i0;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`${name} never reached RUNNING`);
  }
  async function remove(name: string, zone = A): Promise<void> {
    const [lro] = await instances.delete({ project, zone, instance: name });
    await done(lro.latestResponse as Operation, zone);
  }
  async function cpusUsed(): Promise<number> {
    const [region] = await new RegionsClient(emu.clientOptions).get({ project, region: 'us-central1' });
    return region.quotas!.find((q) => q.metric === 'CPUS')!.usage!;
  }

  it('serves the catalog: zones, region quotas, machine and accelerator types, images', async () => {
    assert.match(JSON.stringify(await emu.admin.state()), /kip-test-project/);
    const [zones] = await new ZonesClient(emu.clientOptions).list({ project });
    assert.deepEqual(
      zones.map((z) => z.name),
      [A, B],
    );
    const [region] = await new RegionsClient(emu.clientOptions).get({ project, region: 'us-central1' });
    const cpus = region.quotas!.find((q) => q.metric === 'CPUS')!;
    assert.equal(cpus.limit, 2400);
    assert.ok(region.quotas!.some((q) => q.metric === 'N2_CPUS'));
    assert.equal(
      region.quotas!.find((q) => q.metric === 'G2_CPUS')!.limit,
      48,
      'the config file sets limits',
    );

    const mt = new MachineTypesClient(emu.clientOptions);
    const [types] = await mt.list({ project, zone: A });
    const byName = new Map(types.map((t) => [t.name, t]));
    assert.deepEqual(
      [
        byName.get('e2-micro')?.guestCpus,
        byName.get('e2-micro')?.memoryMb,
        byName.get('e2-micro')?.isSharedCpu,
      ],
      [2, 1024, true],
    );
    assert.equal(byName.get('e2-medium')?.memoryMb, 4096);
    assert.equal(byName.get('n2-standard-4')?.memoryMb, 16384);
    assert.equal(byName.get('n2d-highcpu-8')?.memoryMb, 8192);
    assert.equal(byName.get('t2d-standard-1')?.memoryMb, 4096);
    assert.equal(byName.get('n1-standard-1')?.memoryMb, 3840);
    assert.deepEqual(
      byName
        .get('g2-standard-4')
        ?.accelerators?.map((a) => [a.guestAcceleratorType, a.guestAcceleratorCount]),
      [['nvidia-l4', 1]],
    );
    assert.ok(byName.has('a2-ultragpu-1g'));
    const [typesB] = await mt.list({ project, zone: B });
    assert.ok(!typesB.some((t) => t.name === 'a2-ultragpu-1g'), 'zone b has no A100 80GB');
    const [custom] = await mt.get({ project, zone: A, machineType: 'n2-custom-4-10240' });
    assert.deepEqual([custom.guestCpus, custom.memoryMb], [4, 10240]);

    const scopes: string[] = [];
    for await (const [scope, list] of mt.aggregatedListAsync({ project }))
      if (list.machineTypes?.length) scopes.push(scope);
    assert.deepEqual(scopes.sort(), [`zones/${A}`, `zones/${B}`]);

    const acc = new AcceleratorTypesClient(emu.clientOptions);
    const [accA] = await acc.list({ project, zone: A });
    const [accB] = await acc.list({ project, zone: B });
    assert.ok(accA.some((a) => a.name === 'nvidia-tesla-p4'));
    assert.ok(!accB.some((a) => a.name === 'nvidia-tesla-p4'));
    assert.ok(accB.some((a) => a.name === 'nvidia-tesla-t4'));

    const [image] = await new ImagesClient(emu.clientOptions).getFromFamily({
      project: 'kip-cells',
      family: 'kip-cell',
    });
    assert.deepEqual([image.name, image.family, image.status], ['kip-cell-v1', 'kip-cell', 'READY']);
    const missing = await rejection(
      new ImagesClient(emu.clientOptions).getFromFamily({ project: 'kip-cells', family: 'nope' }, NO_RETRY),
    );
    assert.equal(missing.code, 5);
  });

  it('inserts predefined and custom machine types; they go PROVISIONING → RUNNING with an address', async () => {
    const before = await cpusUsed();
    const op = await insert(vm('vm-predefined', 'e2-standard-2'));
    assert.equal(op.operationType, 'insert');
    assert.ok(['PENDING', 'RUNNING'].includes(op.status as string));
    const [early] = await instances.get({ project, zone: A, instance: 'vm-predefined' });
    assert.ok(['PROVISIONING', 'STAGING'].includes(early.status as string), String(early.status));
    const fin = await done(op);
    assert.equal(fin.error, undefined);
    const a = await running('vm-predefined');
    assert.match(a.networkInterfaces![0]!.networkIP!, /^198\.1[89]\./);
    assert.match(a.machineType!, /machineTypes\/e2-standard-2$/);

    await done(await insert(vm('vm-custom', 'e2-custom-4-9216')));
    const c = await running('vm-custom');
    assert.match(c.machineType!, /e2-custom-4-9216$/);
    assert.notEqual(c.networkInterfaces![0]!.networkIP, a.networkInterfaces![0]!.networkIP);
    await done(await insert(vm('vm-ext', 'n2-custom-2-24576-ext')));
    assert.equal(await cpusUsed(), before + 2 + 4);
  });

  it('refuses invalid custom shapes with GCE messages', async () => {
    const bad = await rejection(
      instances.insert({ project, zone: A, instanceResource: vm('vm-bad', 'n1-custom-1-921') }),
    );
    assert.equal(bad.code, 3);
    assert.match(
      bad.message,
      /Invalid value for field 'resource\.machineType': 'zones\/us-central1-a\/machineTypes\/n1-custom-1-921'\. Memory should be a multiple of 256MiB, while 921MiB is requested\./,
    );
    const odd = await rejection(
      instances.insert({ project, zone: A, instanceResource: vm('vm-bad', 'e2-custom-3-3072') }),
    );
    assert.match(odd.message, /Number of vCPUs should be an even number between 2 and 32/);
    const t2d = await rejection(
      instances.insert({ project, zone: A, instanceResource: vm('vm-bad', 't2d-custom-2-8192') }),
    );
    assert.match(
      t2d.message,
      /Machine type with name 't2d-custom-2-8192' does not exist in zone 'us-central1-a'/,
    );
    const bare = await rejection(
      instances.insert({
        project,
        zone: A,
        instanceResource: { ...vm('vm-bad', 'x'), machineType: 'e2-micro' },
      }),
    );
    assert.match(bare.message, /Must be a URL to a valid Compute resource/);
    const name = await rejection(
      instances.insert({ project, zone: A, instanceResource: vm('Bad_Name', 'e2-micro') }),
    );
    assert.match(name.message, /resource\.name/);
    const [list] = await instances.list({ project, zone: A, filter: 'name = vm-bad' });
    assert.equal(list.length, 0);
  });

  it('makes insert idempotent by requestId', async () => {
    const requestId = '5b4a3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d';
    const first = await insert(vm('vm-idem', 'e2-small'), A, requestId);
    const second = await insert(vm('vm-idem', 'e2-small'), A, requestId);
    assert.equal(second.name, first.name);
    assert.equal(second.targetId, first.targetId);
    await done(first);
    const third = await insert(vm('vm-idem', 'e2-small'), A, requestId);
    assert.equal(third.name, first.name);
    assert.equal(third.status, 'DONE');
    const [list] = await instances.list({ project, zone: A, filter: 'name = vm-idem' });
    assert.equal(list.length, 1);
    const dup = await rejection(
      instances.insert({ project, zone: A, instanceResource: vm('vm-idem', 'e2-small') }),
    );
    // GCE answers 409, which the client maps to ABORTED (10).
    assert.equal(dup.code, 10);
    assert.match(dup.message, /already exists/);
    const badId = await rejection(
      instances.insert({
        project,
        zone: A,
        requestId: 'not-a-uuid',
        instanceResource: vm('vm-x', 'e2-small'),
      }),
    );
    assert.match(badId.message, /requestId/);
  });

  it('lists with label filters and pages; aggregatedList covers both zones', async () => {
    const ops = [];
    for (let i = 0; i < 7; i++) {
      ops.push(
        await insert(
          vm(`cell-${i}`, 'e2-micro', B, { labels: { 'kip-cluster': i < 5 ? 'c1' : 'c2', cell: `n${i}` } }),
          B,
        ),
      );
    }
    for (const op of ops) await done(op, B);
    await emu.admin.resetCalls();
    const [c1] = await instances.list({
      project,
      zone: B,
      filter: 'labels.kip-cluster = "c1"',
      maxResults: 2,
    });
    assert.deepEqual(
      c1.map((i) => i.name),
      ['cell-0', 'cell-1', 'cell-2', 'cell-3', 'cell-4'],
    );
    assert.equal(
      (await emu.admin.calls()).byMethod['compute.instances.list']!.total,
      3,
      'three pages of two',
    );
    const [page, next] = await instances.list(
      { project, zone: B, filter: '(labels.kip-cluster = c1) (labels.cell = n3)', maxResults: 5 },
      { autoPaginate: false },
    );
    assert.deepEqual(
      page.map((i) => i.name),
      ['cell-3'],
    );
    assert.equal(next, null);
    const [c2] = await instances.list({ project, zone: B, filter: 'labels.kip-cluster eq c2' });
    assert.deepEqual(
      c2.map((i) => i.name),
      ['cell-5', 'cell-6'],
    );
    const bad = await rejection(
      instances.list({ project, zone: B, filter: '(labels.kip-cluster = ' }, NO_RETRY),
    );
    assert.equal(bad.code, 3);

    const seen = new Map<string, number>();
    for await (const [scope, list] of instances.aggregatedListAsync({
      project,
      filter: 'labels.kip-cluster:*',
      maxResults: 3,
    })) {
      seen.set(scope, (seen.get(scope) ?? 0) + (list.instances?.length ?? 0));
    }
    assert.equal(seen.get(`zones/${B}`), 7);
    assert.equal(seen.get(`zones/${A}`), 0);
  });

  it('sets labels and metadata only with the current fingerprint', async () => {
    const [cur] = await instances.get({ project, zone: B, instance: 'cell-0' });
    const [lro] = await instances.setLabels({
      project,
      zone: B,
      instance: 'cell-0',
      instancesSetLabelsRequestResource: {
        labels: { ...cur.labels, pod: 'web-1' },
        labelFingerprint: cur.labelFingerprint,
      },
    });
    await done(lro.latestResponse as Operation, B);
    const [after] = await instances.get({ project, zone: B, instance: 'cell-0' });
    assert.equal(after.labels!.pod, 'web-1');
    assert.notEqual(after.labelFingerprint, cur.labelFingerprint);
    const stale = await rejection(
      instances.setLabels({
        project,
        zone: B,
        instance: 'cell-0',
        instancesSetLabelsRequestResource: { labels: {}, labelFingerprint: cur.labelFingerprint },
      }),
    );
    assert.equal(stale.code, 9);
    const badLabel = await rejection(
      instances.setLabels({
        project,
        zone: B,
        instance: 'cell-0',
        instancesSetLabelsRequestResource: { labels: { Pod: 'x' }, labelFingerprint: after.labelFingerprint },
      }),
    );
    assert.match(badLabel.message, /labels\.Pod/);

    const [m] = await instances.setMetadata({
      project,
      zone: B,
      instance: 'cell-0',
      metadataResource: {
        fingerprint: after.metadata!.fingerprint,
        items: [{ key: 'kip-pod', value: 'default/web-1' }],
      },
    });
    await done(m.latestResponse as Operation, B);
    const [meta] = await instances.get({ project, zone: B, instance: 'cell-0' });
    assert.deepEqual(
      meta.metadata!.items!.map((i) => [i.key, i.value]),
      [['kip-pod', 'default/web-1']],
    );
    const staleMeta = await rejection(
      instances.setMetadata({
        project,
        zone: B,
        instance: 'cell-0',
        metadataResource: { fingerprint: after.metadata!.fingerprint, items: [] },
      }),
    );
    assert.equal(staleMeta.code, 9);
  });

  it('deletes: the instance goes, its boot disk and quota are released', async () => {
    const before = await cpusUsed();
    const disks = new DisksClient(emu.clientOptions);
    const [disk] = await disks.get({ project, zone: A, disk: 'vm-custom' });
    assert.equal(disk.users!.length, 1);
    await remove('vm-custom');
    assert.equal(
      (await rejection(instances.get({ project, zone: A, instance: 'vm-custom' }, NO_RETRY))).code,
      5,
    );
    assert.equal((await rejection(disks.get({ project, zone: A, disk: 'vm-custom' }, NO_RETRY))).code, 5);
    assert.equal(await cpusUsed(), before - 4);
    assert.equal((await rejection(instances.delete({ project, zone: A, instance: 'vm-custom' }))).code, 5);
  });

  it('operations.wait blocks until DONE, or returns early after waitMaxMs', async () => {
    await emu.admin.setDelays({ operationPendingMs: 400 });
    try {
      const op = await insert(vm('vm-slow', 'e2-micro'));
      const t0 = Date.now();
      const [w] = await zoneOps.wait({ project, zone: A, operation: op.name! });
      assert.equal(w.status, 'DONE');
      assert.ok(Date.now() - t0 >= 250, 'wait blocked');
      assert.ok(w.endTime && w.startTime && w.insertTime);
      await emu.admin.setDelays({ waitMaxMs: 100 });
      const op2 = await insert(vm('vm-slow2', 'e2-micro'));
      const [early] = await zoneOps.wait({ project, zone: A, operation: op2.name! });
      assert.notEqual(early.status, 'DONE');
      const [got] = await zoneOps.get({ project, zone: A, operation: op2.name! });
      assert.equal(got.name, op2.name);
    } finally {
      await emu.admin.setDelays({ operationPendingMs: 20, waitMaxMs: 120000 });
    }
  });

  it('delays boots by faults.bootDelayMs', async () => {
    await emu.admin.setFaults({ bootDelayMs: 600 });
    try {
      await done(await insert(vm('vm-late', 'e2-micro')));
      const t0 = Date.now();
      const [staging] = await instances.get({ project, zone: A, instance: 'vm-late' });
      assert.equal(staging.status, 'STAGING');
      await running('vm-late');
      assert.ok(Date.now() - t0 >= 400, `RUNNING after ${Date.now() - t0} ms`);
    } finally {
      await emu.admin.setFaults({ bootDelayMs: 0 });
    }
  });

  it('injects 503s for a fraction of calls', async () => {
    const zones = new ZonesClient(emu.clientOptions);
    await emu.admin.setFaults({ errorRate: 0.5, errorKinds: ['503'], methods: ['compute.zones.get'] });
    try {
      let failed = 0;
      for (let i = 0; i < 40; i++) {
        try {
          await zones.get({ project, zone: A }, NO_RETRY);
        } catch (e) {
          assert.equal((e as { code: number }).code, 14);
          failed++;
        }
      }
      assert.ok(failed >= 8 && failed <= 32, `failed ${failed} of 40`);
      const calls = await emu.admin.calls();
      assert.equal(calls.byMethod['compute.zones.get']!.codes['503'], failed);
    } finally {
      await emu.admin.setFaults({ errorRate: 0, methods: [] });
    }
    await emu.admin.setFaults({ errorRate: 1, errorKinds: ['429'], methods: ['compute.zones.list'] });
    try {
      const e = await rejection(zones.list({ project }, NO_RETRY));
      assert.equal(e.code, 8);
      assert.match(e.message, /Quota exceeded/);
    } finally {
      await emu.admin.setFaults({ errorRate: 0, methods: [] });
    }
  });

  it('a lost insert response is recovered by retrying with the same requestId', async () => {
    const requestId = '0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f';
    await emu.admin.setFaults({ lostResponseRate: 1, methods: ['compute.instances.insert'] });
    const lost = await rejection(
      instances.insert({ project, zone: A, requestId, instanceResource: vm('vm-lost', 'e2-micro') }),
    );
    assert.equal(lost.code, 14);
    await emu.admin.setFaults({ lostResponseRate: 0, methods: [] });
    const op = await insert(vm('vm-lost', 'e2-micro'), A, requestId);
    assert.equal((await done(op)).error, undefined);
    const [list] = await instances.list({ project, zone: A, filter: 'name = vm-lost' });
    assert.equal(list.length, 1);
  });

  it('enforces per-minute read request quotas with 403 rateLimitExceeded', async () => {
    const zones = new ZonesClient(emu.clientOptions);
    await zones.get({ project, zone: A }); // the client's first call is slow: it initialises
    await emu.admin.setQuotas({ readRequestsPerMinute: 5, windowMs: 2500 });
    try {
      // Start at a window boundary so all eight calls land in one window.
      await new Promise((r) => setTimeout(r, 2500 - (Date.now() % 2500) + 20));
      const results: (number | 'ok')[] = [];
      for (let i = 0; i < 8; i++) {
        try {
          await zones.get({ project, zone: A }, NO_RETRY);
          results.push('ok');
        } catch (e) {
          results.push((e as { code: number }).code);
          assert.match(
            (e as Error).message,
            /Quota exceeded for quota metric 'compute\.googleapis\.com\/read_requests'/,
          );
        }
      }
      assert.deepEqual(results, ['ok', 'ok', 'ok', 'ok', 'ok', 7, 7, 7]);
      await new Promise((r) => setTimeout(r, 2600));
      await zones.get({ project, zone: A }, NO_RETRY);
    } finally {
      await emu.admin.setQuotas({ readRequestsPerMinute: 0, windowMs: 60000 });
    }
  });

  it('enforces the write bucket separately from reads', async () => {
    await emu.admin.setQuotas({ writeRequestsPerMinute: 2, windowMs: 60000 });
    try {
      const codes = [];
      for (let i = 0; i < 3; i++)
        codes.push((await rejection(instances.delete({ project, zone: A, instance: 'nothing-here' }))).code);
      assert.deepEqual(codes, [5, 5, 7]);
      await instances.get({ project, zone: A, instance: 'vm-predefined' }, NO_RETRY);
    } finally {
      await emu.admin.setQuotas({ writeRequestsPerMinute: 0 });
    }
  });

  it('refuses bad admin input and a bad config file, naming the field', async () => {
    await assert.rejects(
      emu.admin.setFaults({ errorRate: 'often' }),
      /faults: field \\"errorRate\\" must be number/,
    );
    await assert.rejects(emu.admin.setFaults({ stockouts: [{ zone: A }] }), /stockouts\[0\]\.family/);
    await assert.rejects(
      startGceEmulator({ config: { faults: { errorRate: 2 } } }),
      /exited with 2[\s\S]*field "faults\.errorRate" must be <= 1/,
    );
  });

  it('reports CPU quota and stockouts in the operation error', async () => {
    const used = await cpusUsed();
    await emu.admin.setQuotas({ limits: { CPUS: used + 2 } });
    try {
      const op = await done(await insert(vm('vm-quota', 'e2-standard-4')));
      assert.equal(op.error!.errors![0]!.code, 'QUOTA_EXCEEDED');
      assert.match(
        op.error!.errors![0]!.message!,
        /^Quota 'CPUS' exceeded\. {2}Limit: \d+\.0 in region us-central1\.$/,
      );
      assert.equal(op.httpErrorStatusCode, 403);
      assert.equal(
        (await rejection(instances.get({ project, zone: A, instance: 'vm-quota' }, NO_RETRY))).code,
        5,
      );
      assert.equal((await done(await insert(vm('vm-fits', 'e2-standard-2')))).error, undefined);
      // N2 counts against N2_CPUS, not CPUS.
      assert.equal((await done(await insert(vm('vm-n2', 'n2-standard-2')))).error, undefined);
    } finally {
      await emu.admin.setQuotas({ limits: { CPUS: 2400 } });
    }

    await emu.admin.setFaults({
      stockouts: [
        { zone: A, family: 'n2d' },
        { zone: B, family: 'n2d', provisioningModel: 'SPOT' },
      ],
    });
    try {
      const out = await done(await insert(vm('vm-stock', 'n2d-standard-2')));
      assert.equal(out.error!.errors![0]!.code, 'ZONE_RESOURCE_POOL_EXHAUSTED');
      assert.match(
        out.error!.errors![0]!.message!,
        /zones\/us-central1-a' does not have enough resources available/,
      );
      assert.equal(
        (await rejection(instances.get({ project, zone: A, instance: 'vm-stock' }, NO_RETRY))).code,
        5,
      );
      const spot = { scheduling: { provisioningModel: 'SPOT', instanceTerminationAction: 'DELETE' } };
      const spotOut = await done(await insert(vm('vm-stock', 'n2d-standard-2', B, spot), B), B);
      assert.equal(spotOut.error!.errors![0]!.code, 'ZONE_RESOURCE_POOL_EXHAUSTED');
      assert.equal((await done(await insert(vm('vm-stock', 'n2d-standard-2', B), B), B)).error, undefined);
      assert.equal((await done(await insert(vm('vm-stock-e2', 'e2-standard-2')))).error, undefined);
    } finally {
      await emu.admin.setFaults({ stockouts: [] });
    }
  });

  it('validates GPUs against the zone and family; honours Spot and preemption', async () => {
    const t4 = {
      guestAccelerators: [
        { acceleratorType: `zones/${A}/acceleratorTypes/nvidia-tesla-t4`, acceleratorCount: 1 },
      ],
      scheduling: { onHostMaintenance: 'TERMINATE' },
    };
    assert.equal((await done(await insert(vm('vm-t4', 'n1-standard-4', A, t4)))).error, undefined);
    const [gpuVm] = await instances.get({ project, zone: A, instance: 'vm-t4' });
    assert.match(gpuVm.guestAccelerators![0]!.acceleratorType!, /nvidia-tesla-t4$/);
    const migrate = await rejection(
      instances.insert({
        project,
        zone: A,
        instanceResource: vm('vm-g1', 'n1-standard-4', A, { ...t4, scheduling: {} }),
      }),
    );
    assert.match(migrate.message, /do not support live migration/);
    const p4 = {
      guestAccelerators: [
        { acceleratorType: `zones/${B}/acceleratorTypes/nvidia-tesla-p4`, acceleratorCount: 1 },
      ],
      scheduling: { onHostMaintenance: 'TERMINATE' },
    };
    const noP4 = await rejection(
      instances.insert({ project, zone: B, instanceResource: vm('vm-g2', 'n1-standard-4', B, p4) }),
    );
    assert.match(noP4.message, /Accelerator type 'nvidia-tesla-p4' does not exist in zone 'us-central1-b'/);
    const onE2 = await rejection(
      instances.insert({ project, zone: A, instanceResource: vm('vm-g3', 'e2-standard-4', A, t4) }),
    );
    assert.match(onE2.message, /cannot be attached to machine type 'e2-standard-4'/);
    const tooMany = await rejection(
      instances.insert({
        project,
        zone: A,
        instanceResource: vm('vm-g4', 'n1-standard-16', A, {
          ...t4,
          guestAccelerators: [{ acceleratorType: 'nvidia-tesla-v100', acceleratorCount: 1 }],
        }),
      }),
    );
    assert.match(tooMany.message, /At most 12 vCPUs can be used along with 1 accelerator cards/);
    assert.equal(
      (
        await done(
          await insert(
            vm('vm-l4', 'g2-standard-4', B, { scheduling: { onHostMaintenance: 'TERMINATE' } }),
            B,
          ),
          B,
        )
      ).error,
      undefined,
    );
    const [l4] = await instances.get({ project, zone: B, instance: 'vm-l4' });
    assert.deepEqual(
      [
        l4.guestAccelerators![0]!.acceleratorCount,
        /nvidia-l4$/.test(l4.guestAccelerators![0]!.acceleratorType!),
      ],
      [1, true],
    );

    const spot = { scheduling: { provisioningModel: 'SPOT', instanceTerminationAction: 'DELETE' } };
    await done(await insert(vm('vm-spot', 'e2-medium', A, spot)));
    const s = await running('vm-spot');
    assert.deepEqual(
      [s.scheduling!.provisioningModel, s.scheduling!.automaticRestart, s.scheduling!.onHostMaintenance],
      ['SPOT', false, 'TERMINATE'],
    );
    const restart = await rejection(
      instances.insert({
        project,
        zone: A,
        instanceResource: vm('vm-spot2', 'e2-medium', A, {
          scheduling: { provisioningModel: 'SPOT', automaticRestart: true },
        }),
      }),
    );
    assert.match(restart.message, /Automatic restart must be false/);
    assert.equal(await emu.admin.preempt(A, 'vm-spot'), 'deleted');
    assert.equal(
      (await rejection(instances.get({ project, zone: A, instance: 'vm-spot' }, NO_RETRY))).code,
      5,
    );
  });

  it('backs up a disk to a snapshot and restores it to a new disk', async () => {
    const disks = new DisksClient(emu.clientOptions);
    const snapshots = new SnapshotsClient(emu.clientOptions);
    const globalOps = new GlobalOperationsClient(emu.clientOptions);
    const { dir } = await emu.admin.disk(A, 'vm-predefined');
    writeFileSync(join(dir, 'etcd.db'), 'state-v1');
    const [snapOp] = await disks.createSnapshot({
      project,
      zone: A,
      disk: 'vm-predefined',
      snapshotResource: { name: 'backup-1', labels: { kip: 'backup' } },
    });
    await done(snapOp.latestResponse as Operation);
    writeFileSync(join(dir, 'etcd.db'), 'state-v2');
    const [snap] = await snapshots.get({ project, snapshot: 'backup-1' });
    assert.deepEqual([snap.status, snap.diskSizeGb, snap.labels!.kip], ['READY', '10', 'backup']);
    assert.match(snap.sourceDisk!, /disks\/vm-predefined$/);
    const [snaps] = await snapshots.list({ project, filter: 'labels.kip = backup' });
    assert.deepEqual(
      snaps.map((x) => x.name),
      ['backup-1'],
    );

    const [restore] = await disks.insert({
      project,
      zone: B,
      diskResource: {
        name: 'restored',
        sourceSnapshot: 'global/snapshots/backup-1',
        sizeGb: '20',
        type: `zones/${B}/diskTypes/pd-balanced`,
      },
    });
    assert.equal((await done(restore.latestResponse as Operation, B)).error, undefined);
    const [disk] = await disks.get({ project, zone: B, disk: 'restored' });
    assert.deepEqual([disk.status, disk.sizeGb], ['READY', '20']);
    assert.match(disk.sourceSnapshot!, /snapshots\/backup-1$/);
    const restored = await emu.admin.disk(B, 'restored');
    assert.equal(readFileSync(join(restored.dir, 'etcd.db'), 'utf8'), 'state-v1');

    const small = await rejection(
      disks.insert({
        project,
        zone: B,
        diskResource: { name: 'small', sourceSnapshot: 'global/snapshots/backup-1', sizeGb: '5' },
      }),
    );
    assert.match(small.message, /at least the snapshot size/);
    const inUse = await rejection(disks.delete({ project, zone: A, disk: 'vm-predefined' }));
    assert.match(inUse.message, /is already being used by/);
    // A restored disk boots a new instance with the old content.
    await done(
      await insert(
        { ...vm('vm-restored', 'e2-micro', B), disks: [{ boot: true, source: `zones/${B}/disks/restored` }] },
        B,
      ),
      B,
    );
    assert.equal((await emu.admin.instance(B, 'vm-restored')).dataDir, restored.dir);

    const [del] = await snapshots.delete({ project, snapshot: 'backup-1' });
    let op = del.latestResponse as Operation;
    while (op.status !== 'DONE') [op] = await globalOps.wait({ project, operation: op.name! });
    assert.equal((await rejection(snapshots.get({ project, snapshot: 'backup-1' }, NO_RETRY))).code, 5);
    assert.ok(!existsSync(join(emu.stateDir, 'snapshots', 'backup-1')));
  });

  it('creates, reads, patches, lists and deletes firewall rules', async () => {
    const fw = new FirewallsClient(emu.clientOptions);
    const globalOps = new GlobalOperationsClient(emu.clientOptions);
    const wait = async (op: Operation) => {
      let cur = op;
      while (cur.status !== 'DONE') [cur] = await globalOps.wait({ project, operation: cur.name! });
      return cur;
    };
    const [ins] = await fw.insert({
      project,
      firewallResource: {
        name: 'kip-agent',
        network: 'global/networks/default',
        allowed: [{ IPProtocol: 'tcp', ports: ['6421'] }],
        sourceRanges: ['10.0.0.0/8'],
        targetTags: ['kip-cell'],
      },
    });
    assert.equal((await wait(ins.latestResponse as Operation)).operationType, 'insert');
    const [rule] = await fw.get({ project, firewall: 'kip-agent' });
    assert.deepEqual(
      [rule.direction, rule.priority, rule.allowed![0]!.ports, rule.targetTags],
      ['INGRESS', 1000, ['6421'], ['kip-cell']],
    );
    const [patch] = await fw.patch({
      project,
      firewall: 'kip-agent',
      firewallResource: { sourceRanges: ['10.8.0.0/14'] },
    });
    await wait(patch.latestResponse as Operation);
    const [patched] = await fw.get({ project, firewall: 'kip-agent' });
    assert.deepEqual([patched.sourceRanges, patched.allowed![0]!.ports], [['10.8.0.0/14'], ['6421']]);
    const [list] = await fw.list({ project });
    assert.deepEqual(
      list.map((r) => r.name),
      ['kip-agent'],
    );
    const bad = await rejection(
      fw.insert({
        project,
        firewallResource: { name: 'bad', allowed: [{ IPProtocol: 'tcp', ports: ['70000'] }] },
      }),
    );
    assert.match(bad.message, /resource\.allowed\[0\]\.ports/);
    assert.equal(
      (
        await rejection(
          fw.insert({ project, firewallResource: { name: 'kip-agent', allowed: [{ IPProtocol: 'icmp' }] } }),
        )
      ).code,
      10,
    );
    const [del] = await fw.delete({ project, firewall: 'kip-agent' });
    await wait(del.latestResponse as Operation);
    assert.equal((await rejection(fw.get({ project, firewall: 'kip-agent' }, NO_RETRY))).code, 5);
  });

  it('exposes Prometheus metrics: instances by status and calls by method and code', async () => {
    const text = await (await fetch(`http://${emu.host}:${emu.port}/metrics`)).text();
    assert.match(text, /gce_emulator_instances\{status="RUNNING"\} \d+/);
    assert.match(text, /gce_emulator_calls_total\{method="compute\.instances\.insert",code="200"\} \d+/);
    assert.match(text, /gce_emulator_calls_total\{method="compute\.zones\.get",code="503"\} \d+/);
  });
});
