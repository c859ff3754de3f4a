/**
 * Standby cells end to end on real parts: etcd, the Kubernetes API emulator (with kubectl), a
 * docker-registry, the Compute Engine emulator whose netns hypervisor boots the real cell agent,
 * and the provider as a child process with `cells.standby: [{machineType: e2-small, count: 1}]`.
 */
import assert from 'node:assert/strict';
import { labelValue } from '../../provider/cloud/instance-names.ts';
import { eventually } from '../../provider/testing/kube.ts';
import { startProviderTestbed, type ProviderTestbed } from './testbed.ts';

interface Vm {
  name: string;
  status: string;
  machineType: string;
  ip?: string;
  podUid?: string;
  standby: boolean;
}

describe('provider standby cells (kube emulator, GCE emulator with netns cells, real agent)', function () {
  this.timeout(150_000);
  let bed: ProviderTestbed;

  const vms = async (): Promise<Vm[]> =>
    (await bed.instances())
      .filter((i) => i.status !== 'STOPPING' && i.status !== 'TERMINATED')
      .map((i) => ({
        name: i.name!,
        status: i.status!,
        machineType: (i.machineType ?? '').split('/').pop()!,
        ip: i.networkInterfaces?.[0]?.networkIP ?? undefined,
        podUid: i.labels?.['kip-pod-uid'],
        standby: i.labels?.['kip-standby'] === 'true',
      }));
  const standbyVms = async () => (await vms()).filter((v) => v.standby);
  const inserts = async () => (await bed.emu.admin.calls()).byMethod['compute.instances.insert']?.total ?? 0;
  const metrics = async () => (await fetch((bed.provider!.ready as { metrics: string }).metrics)).text();
  const apply = (name: string, annotations: Record<string, string> = {}) =>
    bed.apply(bed.podSpec(name, { containers: [{ name: 'app', image: bed.image }] }, annotations));
  const running = (name: string, timeoutMs?: number) => bed.running(name, timeoutMs);
  /** The one ready standby VM, once the provider's metrics say it is ready. */
  const oneReadyStandby = async (timeoutMs = 60_000) =>
    eventually(
      async () => {
        const m = await metrics();
        if (!/^kip_standby_cells_ready\{machine_type="e2-small",capacity_type="on-demand"\} 1$/m.test(m))
          return undefined;
        const s = await standbyVms();
        return s.length === 1 && s[0]!.status === 'RUNNING' ? s[0] : undefined;
      },
      timeoutMs,
      'one ready standby cell',
    );

  before(async () => {
    bed = await startProviderTestbed('standby', {
      defaultMachineType: 'e2-small',
      standby: [{ machineType: 'e2-small', count: 1 }],
    });
  });

  after(() => bed?.close());

  afterEach(function () {
    if (this.currentTest?.state === 'failed' && bed?.provider)
      console.error(bed.provider.stderr().slice(-6000));
  });

  let first: Vm;

  it('boots one standby cell of the configured shape, with no pod labels', async () => {
    first = await oneReadyStandby();
    assert.equal(first.machineType, 'e2-small');
    assert.equal(first.podUid, undefined);
    assert.equal((await vms()).length, 1, 'only the standby VM exists');
  });

  it('runs an e2-small pod on the standby VM at once, inserts no VM for it, and replenishes the pool', async () => {
    const before = new Set((await vms()).map((v) => v.name));
    const insertsBefore = await inserts();
    const t0 = Date.now();
    await apply('quick');
    const pod = await running('quick', 30_000);
    const seconds = (Date.now() - t0) / 1000;
    assert.equal(pod.status!.podIP, first.ip, 'the pod runs on the standby VM');
    assert.ok(seconds < 20, `Running after ${seconds}s`);
    // The claimed VM is relabelled for the pod; no VM was inserted for the pod itself.
    const mine = await eventually(
      async () => {
        const v = (await vms()).find((x) => x.name === first.name);
        return v?.podUid === labelValue(pod.metadata!.uid!) && !v.standby ? v : undefined;
      },
      20_000,
      'the standby VM relabelled for the pod',
    );
    assert.equal(mine.machineType, 'e2-small');
    const uidHex = pod.metadata!.uid!.replace(/-/g, '');
    assert.ok(!(await vms()).some((v) => v.name.includes(uidHex)), 'no VM named for the pod');
    const reasons = (await bed.events('quick')).map((e) => e.reason);
    assert.ok(reasons.includes('StandbyCellClaimed'), `events: ${reasons.join(',')}`);
    assert.ok(!reasons.includes('CellCreated'), `events: ${reasons.join(',')}`);

    // Replenished: a new standby VM, still exactly one.
    const next = await oneReadyStandby();
    assert.notEqual(next.name, first.name);
    assert.ok(!before.has(next.name));
    assert.equal((await inserts()) - insertsBefore, 1, 'one insert: the replacement standby cell only');
    assert.match(
      await metrics(),
      /^kip_standby_cells_claimed_total\{machine_type="e2-small",capacity_type="on-demand"\} 1$/m,
    );
    first = next;
  });

  it('boots its own VM for a pod of another shape or other placement, leaving the standby cell alone', async () => {
    await apply('bigger', { 'pod.elotl.co/instance-type': 'e2-medium' });
    // The standby shape, but a bigger disk than the standby cell has.
    await apply('placed', { 'pod.elotl.co/volume-size': '20Gi' });
    const pod = await running('bigger');
    const placed = await running('placed');
    const placedVm = (await vms()).filter((v) => v.podUid === labelValue(placed.metadata!.uid!));
    assert.equal(placedVm.length, 1);
    assert.equal(placedVm[0]!.machineType, 'e2-small');
    assert.notEqual(placedVm[0]!.name, first.name);
    const own = (await vms()).filter((v) => v.podUid === labelValue(pod.metadata!.uid!));
    assert.equal(own.length, 1);
    assert.equal(own[0]!.machineType, 'e2-medium');
    assert.notEqual(own[0]!.name, first.name);
    assert.equal(pod.status!.podIP, own[0]!.ip);
    const s = await standbyVms();
    assert.deepEqual(
      s.map((v) => v.name),
      [first.name],
    );
  });

  it('keeps the standby cell across a provider restart (no second standby VM)', async () => {
    await bed.provider!.stop(10_000);
    const insertsBefore = await inserts();
    await bed.startProvider();
    const again = await oneReadyStandby();
    assert.equal(again.name, first.name);
    // Several listings later there is still only the one standby VM, and the pods' VMs remain.
    await new Promise((r) => setTimeout(r, 3000));
    assert.deepEqual(
      (await standbyVms()).map((v) => v.name),
      [first.name],
    );
    assert.equal((await vms()).length, 4, 'standby + the three pods');
    assert.equal(await inserts(), insertsBefore, 'no VM inserted after the restart');
    await running('quick', 10_000);
  });

  it('deleting the pods deletes their VMs, including the one that was a standby cell; the pool stays', async () => {
    await bed.kube.kubectl('delete', 'pod', 'quick', 'bigger', 'placed', '--wait=false');
    await eventually(
      async () => {
        const all = await vms();
        const left = await Promise.all(['quick', 'bigger', 'placed'].map(bed.getPod));
        return all.length === 1 && all[0]!.name === first.name && left.every((p) => !p) ? all : undefined;
      },
      60_000,
      'only the standby VM left',
    );
  });
});
