import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { FirewallsClient } from '@google-cloud/compute';
import type { V1Pod } from '@kubernetes/client-node';
import { startGceEmulator, type GceEmulator } from '../../test/support/gce.ts';
import type { CellInstance, CellSpec } from './cloud-provider.ts';
import { InvalidRequestError, QuotaExceededError, RateLimitedError } from './errors.ts';
import { GceCloudProvider, type GceCloudProviderOptions } from './gce-cloud-provider.ts';
import { InstanceObserver } from './instance-observer.ts';
import { validateProviderConfig } from '../config.ts';
import { gceCloudProviderFromConfig } from './from-config.ts';
import { cellNetworkTag, firewallName } from './instance-names.ts';
import { OrphanCollector } from './orphan-collector.ts';
import { cellRequestFromPod } from './pod-resources.ts';

interface PodShape {
  cpu?: string;
  memory?: string;
  gpu?: number;
  initCpu?: string;
  accelerator?: string;
  annotations?: Record<string, string>;
}

function pod(s: PodShape): V1Pod {
  const requests: Record<string, string> = {};
  if (s.cpu) requests.cpu = s.cpu;
  if (s.memory) requests.memory = s.memory;
  return {
    metadata: {
      namespace: 'team-a',
      name: `p-${randomUUID().slice(0, 8)}`,
      uid: randomUUID(),
      annotations: s.annotations,
    },
    spec: {
      nodeSelector: s.accelerator ? { 'cloud.google.com/gke-accelerator': s.accelerator } : undefined,
      initContainers: s.initCpu
        ? [{ name: 'init', image: 'busybox', resources: { requests: { cpu: s.initCpu } } }]
        : undefined,
      containers: [
        {
          name: 'app',
          image: 'busybox',
          resources: { requests, limits: s.gpu ? { 'nvidia.com/gpu': String(s.gpu) } : undefined },
        },
      ],
    },
  };
}

function cellFor(p: V1Pod, bootstrap = '{"agent":"config"}'): CellSpec {
  const { request, placement } = cellRequestFromPod(p);
  return {
    cellId: `cell-${p.metadata!.uid!.slice(0, 8)}`,
    pod: { namespace: p.metadata!.namespace!, name: p.metadata!.name!, uid: p.metadata!.uid! },
    request,
    placement,
    bootstrap,
  };
}

describe('GCE cloud provider against the Compute Engine emulator', function () {
  this.timeout(120_000);
  let emu: GceEmulator;
  const providers: GceCloudProvider[] = [];

  const provider = (extra: Partial<GceCloudProviderOptions> = {}) => {
    const p = new GceCloudProvider({
      project: emu.project,
      zones: emu.zones,
      network: 'default',
      clusterId: `test-${process.pid}-${randomUUID().slice(0, 6)}`,
      endpoint: { host: emu.host, port: emu.port },
      backoff: { initialMs: 20, maxMs: 400, maxAttempts: 12 },
      ...extra,
    });
    providers.push(p);
    return p;
  };

  before(async () => {
    emu = await startGceEmulator({
      config: { delays: { provisioningMs: 30, stagingMs: 30, deleteMs: 30, operationPendingMs: 5 } },
    });
  });
  afterEach(async () => {
    await emu.admin.setFaults({
      errorRate: 0,
      lostResponseRate: 0,
      stockouts: [],
      methods: [],
      errorKinds: ['503'],
    });
    await emu.admin.setQuotas({
      readRequestsPerMinute: 0,
      writeRequestsPerMinute: 0,
      windowMs: 60_000,
      limits: { CPUS: 2400, N2_CPUS: 2400, N2D_CPUS: 2400, T2D_CPUS: 2400 },
    });
  });
  after(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await emu?.stop();
  });

  it('creates the cheapest fitting shape for a table of pods, at the table price', async () => {
    const p = provider();
    const table: Array<[string, PodShape, string, number]> = [
      ['small web pod', { cpu: '100m', memory: '256Mi' }, 'e2-micro', 0.008376],
      ['quarter core', { cpu: '250m', memory: '512Mi' }, 'e2-small', 0.016753],
      ['fits e2-medium baseline', { cpu: '800m', memory: '3Gi' }, 'e2-medium', 0.033506],
      ['one core: custom E2', { cpu: '1', memory: '2Gi' }, 'e2-custom-2-2304', 0.052711],
      [
        'init container dominates',
        { cpu: '500m', memory: '1Gi', initCpu: '3' },
        'e2-custom-4-2048',
        0.097748,
      ],
      ['memory heavy, custom', { cpu: '500m', memory: '20Gi' }, 'e2-custom-4-20736', 0.15377],
      ['memory heavy, predefined wins', { cpu: '500m', memory: '31Gi' }, 'e2-highmem-4', 0.180799],
      ['larger than E2: N2D custom', { cpu: '40', memory: '100Gi' }, 'n2d-custom-48-102656', 1.774064],
      ['asks for nothing: default', {}, 'e2-small', 0.016753],
      ['one T4', { cpu: '1', memory: '4Gi', gpu: 1 }, 'custom-2-4352', 0.435244],
      [
        'one L4 by nodeSelector',
        { cpu: '4', memory: '16Gi', gpu: 1, accelerator: 'nvidia-l4' },
        'g2-standard-8',
        0.853608,
      ],
    ];
    const made = await Promise.all(table.map(([, shape]) => p.create(cellFor(pod(shape)))));
    const listed = new Map((await p.list()).map((c) => [c.name, c]));
    table.forEach(([title, , machineType, price], i) => {
      assert.equal(made[i]!.machineType, machineType, title);
      assert.equal(made[i]!.hourlyPriceUSD, price, title);
      assert.equal(listed.get(made[i]!.name)?.machineType, machineType, `${title}: the emulator runs it`);
    });
    await Promise.all(made.map((c) => p.delete(c)));
  });

  it('custom shapes it creates are valid by GCE rules, and an invalid one is refused before any call', async () => {
    const p = provider();
    const shapes: PodShape[] = [
      { cpu: '1900m', memory: '15Gi' },
      { cpu: '3', memory: '1Gi' },
      { cpu: '1', memory: '18Gi', annotations: { 'pod.elotl.co/instance-type': 'n2-custom-2-*' } },
      { cpu: '6', memory: '7Gi', annotations: { 'pod.elotl.co/instance-type': 'n2d-custom-*' } },
      { cpu: '1', memory: '7Gi', annotations: { 'pod.elotl.co/instance-type': 'custom-*' } },
    ];
    const made = await Promise.all(shapes.map((s) => p.create(cellFor(pod(s)))));
    const names = made.map((m) => m.machineType);
    assert.deepEqual(names, [
      'e2-highmem-2',
      'e2-custom-4-2048',
      'n2-custom-2-18688-ext',
      'n2d-custom-8-7424',
      'custom-2-7424',
    ]);
    const before = p.api.callCounts()['instances.insert'] ?? 0;
    await assert.rejects(
      p.create(cellFor(pod({ cpu: '1', annotations: { 'pod.elotl.co/instance-type': 'e2-custom-3-3072' } }))),
      (e: unknown) => e instanceof InvalidRequestError && /e2 custom vCPUs must be one of/.test(e.message),
    );
    assert.equal(p.api.callCounts()['instances.insert'] ?? 0, before);
    await Promise.all(made.map((c) => p.delete(c)));
  });

  it('spot, GPU and annotations shape the VM', async () => {
    const p = provider({ networkTags: ['kip-extra'] });
    const spot = await p.create(
      cellFor(
        pod({
          cpu: '500m',
          memory: '1Gi',
          annotations: {
            'pod.elotl.co/launch-type': 'spot',
            'pod.elotl.co/private-ip-only': 'false',
            'pod.elotl.co/volume-size': '30Gi',
            'pod.elotl.co/security-groups': 'web,db',
            'pod.elotl.co/instance-profile': 'runner@kip-lab.iam.gserviceaccount.com',
          },
        }),
        'bootstrap-document',
      ),
    );
    const s = (await emu.admin.instance(spot.zone, spot.name)).instance as Record<string, never>;
    assert.equal(spot.capacityType, 'spot');
    assert.deepEqual(s.scheduling, {
      onHostMaintenance: 'TERMINATE',
      automaticRestart: false,
      preemptible: false,
      provisioningModel: 'SPOT',
      instanceTerminationAction: 'DELETE',
    });
    assert.deepEqual(
      (s.tags as { items: string[] }).items.sort(),
      [cellNetworkTag(p['o'].clusterId), 'db', 'kip-extra', 'web'].sort(),
    );
    assert.equal((s.disks as Array<{ diskSizeGb: string }>)[0]!.diskSizeGb, '30');
    assert.equal(
      (s.serviceAccounts as Array<{ email: string }>)[0]!.email,
      'runner@kip-lab.iam.gserviceaccount.com',
    );
    assert.ok((s.networkInterfaces as Array<{ accessConfigs?: unknown[] }>)[0]!.accessConfigs?.length);
    assert.deepEqual((s.metadata as { items: unknown[] }).items, [
      { key: 'kip-cell-agent-config', value: 'bootstrap-document' },
    ]);
    const labels = s.labels as Record<string, string>;
    assert.equal(labels['kip-pod-namespace'], 'team-a');
    assert.equal(labels['kip-pod-uid'], spot.pod!.uid);
    assert.equal(labels['kip-cell'], spot.cellId);

    const gpu = await p.create(
      cellFor(pod({ cpu: '2', memory: '8Gi', gpu: 1, accelerator: 'nvidia-tesla-t4' })),
    );
    const g = (await emu.admin.instance(gpu.zone, gpu.name)).instance as Record<string, never>;
    assert.match(
      (g.guestAccelerators as Array<{ acceleratorType: string }>)[0]!.acceleratorType,
      /nvidia-tesla-t4$/,
    );
    assert.equal((g.scheduling as { onHostMaintenance: string }).onHostMaintenance, 'TERMINATE');
    assert.equal(
      (g.networkInterfaces as Array<{ accessConfigs?: unknown[] }>)[0]!.accessConfigs,
      undefined,
      'private by default',
    );

    const exact = await p.create(
      cellFor(pod({ cpu: '100m', annotations: { 'pod.elotl.co/instance-type': 'n2-standard-4' } })),
    );
    assert.equal(exact.machineType, 'n2-standard-4');
    await assert.rejects(
      p.create(cellFor(pod({ cpu: '1', gpu: 1, accelerator: 'nvidia-h100-80gb' }))),
      /accelerator nvidia-h100-80gb is not offered/,
    );
    await Promise.all([spot, gpu, exact].map((c) => p.delete(c)));
  });

  it('insert is idempotent across a crash between insert and record', async () => {
    const clusterId = `crash-${process.pid}`;
    const spec = cellFor(pod({ cpu: '1', memory: '2Gi' }));
    // A provider that listed before the VM existed and would now choose differently.
    const late = provider({ clusterId, selector: { allowCustom: false } });
    assert.deepEqual(await late.list(), []);
    const restarted = provider({ clusterId });
    await restarted.list();
    // The insert takes effect but its response is lost, and the provider dies before retrying.
    await emu.admin.setFaults({ lostResponseRate: 1, methods: ['compute.instances.insert'] });
    const crashed = provider({ clusterId, backoff: { maxAttempts: 1 } });
    await assert.rejects(
      crashed.create(spec),
      (e: unknown) => e instanceof RateLimitedError && /retry the same call/.test(e.action),
    );
    await emu.admin.setFaults({ lostResponseRate: 0, methods: [] });
    // Another provider process creates the same cell again. It listed before the crash, so it
    // does not know the VM: the same name and the same requestId get GCE's original operation.
    const vm = await restarted.create(spec);
    assert.equal(restarted.api.callCounts()['instances.insert'], 1);
    assert.equal(restarted.api.callCounts()['instances.get'], undefined);
    const all = await restarted.list();
    assert.equal(all.length, 1);
    assert.equal(all[0]!.name, vm.name);
    // Lost responses with retries in one process also end with one VM.
    await emu.admin.setFaults({
      lostResponseRate: 0.5,
      methods: ['compute.instances.insert', 'compute.instances.delete'],
    });
    const other = cellFor(pod({ cpu: '1', memory: '2Gi' }));
    const again = await restarted.create(other);
    assert.equal((await restarted.list()).length, 2);
    // A restart lists before its first create and finds the VM without another insert.
    const third = provider({ clusterId });
    const found = await third.create(other);
    assert.equal(found.name, again.name);
    assert.equal(third.api.callCounts()['instances.insert'], undefined);
    // Its choice differs (custom shapes off), so its insert has another requestId; GCE answers
    // that the name exists, and the provider adopts the VM whose labels name this pod.
    const adopted = await late.create(spec);
    assert.deepEqual([adopted.name, adopted.zone, adopted.machineType], [vm.name, vm.zone, vm.machineType]);
    assert.equal(late.api.callCounts()['instances.get'], 1);
    assert.equal((await late.list()).length, 2);
    await restarted.delete(vm);
    await restarted.delete(again);
    await restarted.delete(again); // deleting what is gone succeeds
  });

  it('with 30% injected 503s and tight quotas, creates every cell and stays within quota', async () => {
    // Short windows stand in for GCE's minute; the provider keeps a quarter of each as headroom for
    // the scheduling jitter between its limiter and the server's clock on a shared machine.
    const windowMs = 2000;
    await emu.admin.setQuotas({ readRequestsPerMinute: 40, writeRequestsPerMinute: 28, windowMs });
    await emu.admin.setFaults({ errorRate: 0.3, errorKinds: ['503'], lostResponseRate: 0.1 });
    await emu.admin.resetCalls();
    const codes = new Map<string, number>();
    const p = provider({
      readRequestsPerMinute: 30,
      writeRequestsPerMinute: 21,
      quotaWindowMs: windowMs,
      onCall: (_method, code) => codes.set(code, (codes.get(code) ?? 0) + 1),
    });
    await p.instanceTypes();
    const specs = Array.from({ length: 30 }, (_, i) =>
      cellFor(pod({ cpu: `${100 + i * 50}m`, memory: '512Mi' })),
    );
    const made = await Promise.all(specs.map((s) => p.create(s)));
    assert.equal(new Set(made.map((m) => m.name)).size, 30);
    assert.equal((await p.list()).length, 30);
    await Promise.all(made.map((m) => p.delete(m)));
    const calls = await emu.admin.calls();
    const refused = Object.values(calls.byMethod).reduce(
      (n, m) => n + (m.codes['403'] ?? 0) + (m.codes['429'] ?? 0),
      0,
    );
    assert.equal(refused, 0, `calls over quota: ${JSON.stringify(calls.byMethod)}`);
    const injected = Object.values(calls.byMethod).reduce((n, m) => n + (m.codes['503'] ?? 0), 0);
    assert.ok(injected > 10, `503s were injected (${injected})`);
    // The metrics hook saw every 503 the emulator answered (a connection reset on a busy machine
    // reaches it as UNAVAILABLE too, so it may see a few more).
    assert.ok((codes.get('503') ?? 0) >= injected, `503s seen ${codes.get('503')}, injected ${injected}`);
    assert.equal(
      [...codes.values()].reduce((a, b) => a + b, 0),
      Object.values(p.api.callCounts()).reduce((a, b) => a + b, 0),
    );

    // Injected 403 rateLimitExceeded and 429 too: backoff holds the bucket and every cell still comes up.
    await emu.admin.setFaults({
      errorRate: 0.3,
      errorKinds: ['503', '429', 'rateLimitExceeded'],
      lostResponseRate: 0,
    });
    const more = await Promise.all(
      Array.from({ length: 6 }, () => p.create(cellFor(pod({ cpu: '200m', memory: '256Mi' })))),
    );
    await emu.admin.setFaults({ errorRate: 0 });
    assert.equal((await p.list()).filter((c) => c.status !== 'STOPPING').length, 6);
    await Promise.all(more.map((m) => p.delete(m)));
  });

  it('falls back across zones, then series, then spot to on-demand, and remembers stockouts', async () => {
    const [za, zb] = emu.zones as [string, string];
    const p = provider();
    await emu.admin.setFaults({ stockouts: [{ zone: za, family: 'e2' }] });
    const a = await p.create(cellFor(pod({ cpu: '1', memory: '2Gi' })));
    assert.deepEqual([a.zone, a.machineType], [zb, 'e2-custom-2-2304']);
    await emu.admin.setFaults({
      stockouts: [
        { zone: za, family: 'e2' },
        { zone: zb, family: 'e2' },
      ],
    });
    const inserts = () => p.api.callCounts()['instances.insert'] ?? 0;
    const before = inserts();
    const b = await p.create(cellFor(pod({ cpu: '1', memory: '2Gi' })));
    assert.notEqual(b.machineType.split('-')[0], 'e2');
    // Zone b's e2 fails, the next series succeeds; zone a's e2 stockout was remembered, not retried.
    assert.equal(inserts() - before, 2);
    // Spot capacity gone everywhere: on-demand.
    await emu.admin.setFaults({
      stockouts: emu.zones.map((zone) => ({ zone, family: '*', provisioningModel: 'SPOT' })),
    });
    const c = await p.create(
      cellFor(pod({ cpu: '1', memory: '2Gi', annotations: { 'pod.elotl.co/launch-type': 'spot' } })),
    );
    assert.equal(c.capacityType, 'on-demand');
    assert.ok(p.unavailable.entries().some((e) => e.offering.endsWith('/spot')));
    await Promise.all([a, b, c].map((x) => p.delete(x)));
  });

  it('moves to another series when a regional CPU quota is spent, and says which quota when all are', async () => {
    const p = provider();
    await emu.admin.setQuotas({ limits: { CPUS: 0 } }); // E2 and N1 count against CPUS
    const a = await p.create(cellFor(pod({ cpu: '1', memory: '2Gi' })));
    assert.ok(!['e2', 'custom'].includes(a.machineType.split('-')[0]!), a.machineType);
    await emu.admin.setQuotas({ limits: { CPUS: 0, N2_CPUS: 0, N2D_CPUS: 0, T2D_CPUS: 0 } });
    await assert.rejects(
      p.create(cellFor(pod({ cpu: '1', memory: '2Gi' }))),
      (e: unknown) =>
        e instanceof QuotaExceededError &&
        /Quota '\w*CPUS' exceeded/.test(e.message) &&
        /raise the quota/.test(e.action),
    );
    await p.delete(a);
  });

  it('collects orphans: owned, no cell record, seen twice', async () => {
    const p = provider();
    const kept = await p.create(cellFor(pod({ cpu: '100m' })));
    const orphan = await p.create(cellFor(pod({ cpu: '100m' })));
    const collector = new OrphanCollector({
      provider: p,
      claims: () => Promise.resolve((vm: CellInstance) => vm.cellId === kept.cellId),
    });
    const deleted: string[] = [];
    const observer = new InstanceObserver({
      provider: p,
      onObserve: async (l) => void deleted.push(...(await collector.observe(l)).map((r) => r.name)),
    });
    await observer.refresh();
    assert.deepEqual(deleted, [], 'seen once: kept');
    await observer.refresh();
    assert.deepEqual(deleted, [orphan.name]);
    // The delete is not awaited: the VM leaves within the emulator's operation and stop delays.
    let after = await p.list();
    for (let i = 0; i < 50 && after.some((c) => c.name === orphan.name); i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await p.list();
    }
    assert.deepEqual(
      after.map((c) => c.name),
      [kept.name],
    );
    // One listing costs one list call per zone, however many VMs there are.
    const lists = p.api.callCounts()['instances.list']!;
    await observer.refresh();
    assert.equal(p.api.callCounts()['instances.list']! - lists, emu.zones.length);
    // Waiting for a cell to run is a wait on the listings, not a get per VM.
    const gets = p.api.callCounts()['instances.get'] ?? 0;
    const ticking = new InstanceObserver({ provider: p, intervalMs: 100 });
    ticking.start();
    try {
      const running = await ticking.waitFor(
        kept.name,
        (c) => c.status === 'RUNNING' && Boolean(c.internalIp),
        10_000,
      );
      assert.match(running.internalIp!, /^198\.1[89]\./);
    } finally {
      ticking.stop();
    }
    assert.equal(p.api.callCounts()['instances.get'] ?? 0, gets);
    // Many requests for a listing in a short time share one, which waits out the gap since the last.
    const listCalls = () => p.api.callCounts()['instances.list'] ?? 0;
    const spaced = new InstanceObserver({ provider: p, intervalMs: 60_000 });
    spaced.start();
    await spaced.waitFor(kept.name, () => true, 10_000);
    const before = listCalls();
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    for (let i = 0; i < 50; i++) spaced.requestRefresh(500);
    await sleep(200);
    assert.equal(spaced.listings, 1, 'no second listing within 500 ms of the first');
    await sleep(800);
    assert.equal(spaced.listings, 2, 'one listing for 50 requests');
    assert.equal((listCalls() - before) / emu.zones.length, 1, 'one list call per zone and listing');
    spaced.stop();
    await p.delete(kept);
  });

  it('is built from the provider config file', async () => {
    const cfg = validateProviderConfig({
      cloud: {
        project: emu.project,
        endpoint: { host: emu.host, port: emu.port },
        networkTags: ['kip-cell', 'lab'],
      },
      cells: { defaultMachineType: 'e2-medium', diskSizeGb: 12 },
    });
    const p = gceCloudProviderFromConfig(cfg, `cfg-${process.pid}`);
    providers.push(p);
    const vm = await p.create(cellFor(pod({})));
    assert.equal(vm.machineType, 'e2-medium');
    const inst = (await emu.admin.instance(vm.zone, vm.name)).instance as Record<string, never>;
    assert.equal((inst.disks as Array<{ diskSizeGb: string }>)[0]!.diskSizeGb, '12');
    assert.ok((inst.tags as { items: string[] }).items.includes('lab'));
    await p.delete(vm);
  });

  it('lists only this cluster’s VMs', async () => {
    const mine = provider();
    const theirs = provider();
    const a = await mine.create(cellFor(pod({ cpu: '100m' })));
    const b = await theirs.create(cellFor(pod({ cpu: '100m' })));
    assert.deepEqual(
      (await mine.list()).map((c) => c.name),
      [a.name],
    );
    assert.deepEqual(
      (await theirs.list()).map((c) => c.name),
      [b.name],
    );
    await mine.delete(a);
    await theirs.delete(b);
  });

  it('ensures a firewall rule opening the agent port to the provider only, and repairs it', async () => {
    const p = provider({ agentPort: 6421, providerSourceRanges: ['10.8.0.0/14'] });
    await p.ensureFirewall();
    const fw = new FirewallsClient(emu.clientOptions);
    const name = firewallName(p['o'].clusterId);
    const [rule] = await fw.get({ project: emu.project, firewall: name });
    assert.deepEqual(
      rule.allowed?.map((x) => [x.IPProtocol, x.ports]),
      [['tcp', ['6421']]],
    );
    assert.deepEqual(rule.sourceRanges, ['10.8.0.0/14']);
    assert.deepEqual(rule.targetTags, [cellNetworkTag(p['o'].clusterId)]);
    assert.equal(rule.direction, 'INGRESS');
    // Someone widens it; ensureFirewall puts it back.
    const [op] = await fw.patch({
      project: emu.project,
      firewall: name,
      firewallResource: {
        allowed: [{ IPProtocol: 'tcp', ports: ['6421', '22'] }],
        sourceRanges: ['0.0.0.0/0'],
      },
    });
    await p.api.waitGlobalOperation(emu.project, op.latestResponse as never);
    await p.ensureFirewall();
    const [fixed] = await fw.get({ project: emu.project, firewall: name });
    assert.deepEqual(
      fixed.allowed?.map((x) => x.ports),
      [['6421']],
    );
    assert.deepEqual(fixed.sourceRanges, ['10.8.0.0/14']);
    const gets = p.api.callCounts()['firewalls.get']!;
    await p.ensureFirewall();
    assert.equal(p.api.callCounts()['firewalls.get']! - gets, 1);
    assert.equal(p.api.callCounts()['firewalls.patch'], 1, 'an intact rule is left alone');
    await fw.close();
  });
});
