/**
 * Metering through the real provider in the lab: a pod applied with kubectl runs in its own cell;
 * once it is deleted, what the Service Control emulator billed (through the real usage reporter)
 * equals the time the cell's VM ran.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { REPO_ROOT } from '../../scripts/lab/lab.ts';
import { labProviderConfig, startLabProvider } from '../../scripts/lab/provider.ts';
import { writeLabState } from '../../scripts/lab/state.ts';
import { EmulatorHandle, ReporterHandle, ReporterHome, waitFor } from '../../usage-reporter/test-harness.ts';
import { startLab, type TestLab } from '../support/lab.ts';
import { providerReporterConfig } from './reporter-config.ts';

describe('metering through the provider (e2e)', function () {
  this.timeout(150_000);
  let emu: EmulatorHandle;
  let home: ReporterHome;
  let reporter: ReporterHandle;
  let lab: TestLab;

  before(async () => {
    emu = await EmulatorHandle.start();
    home = new ReporterHome();
    home.writeConfig(providerReporterConfig(emu.rootUrl));
    reporter = await ReporterHandle.start(home);
    lab = await startLab({ provider: false });
    // The lab's provider config, plus metering to this test's reporter every second. The meter
    // hears of a VM's start and end when the provider's listing sees them: a short listing
    // interval keeps that within the second the test allows.
    const config = {
      ...(await labProviderConfig(lab.state, { cloud: { listIntervalSeconds: 0.2 } })),
      usageReporter: { url: reporter.url, intervalSeconds: 1 },
    };
    writeFileSync(join(lab.state.dir, 'provider.yaml'), stringify(config));
    lab.state.provider = await startLabProvider(lab.state.dir, REPO_ROOT, lab.state);
    writeLabState(lab.state);
  });

  after(async () => {
    await lab?.stop();
    await reporter?.terminate();
    await emu?.stop();
    home?.remove();
  });

  /** The Compute Engine emulator's instance for a pod, as its REST API returns it. */
  async function instanceOf(uid: string): Promise<Record<string, unknown> | undefined> {
    const compute = lab.state.compute!;
    const res = await fetch(`${compute.url}/compute/v1/projects/${compute.project}/aggregated/instances`);
    const body = (await res.json()) as { items?: Record<string, { instances?: Record<string, unknown>[] }> };
    return Object.values(body.items ?? {})
      .flatMap((s) => s.instances ?? [])
      .find((i) => (i.labels as Record<string, string> | undefined)?.['kip-pod-uid'] === uid);
  }

  /** Applies the hello example, waits until it runs, and finds its VM once it has started. */
  async function startHello() {
    await lab.kubectlOk(['apply', '-f', '-'], { input: lab.example('hello.yaml') });
    const r = await lab.kubectl(
      ['wait', '--for=jsonpath={.status.phase}=Running', 'pod/hello', '--timeout=90s'],
      {
        timeoutMs: 100_000,
      },
    );
    assert.equal(r.code, 0, `${r.stderr}\n${lab.logTail('provider')}`);
    const uid = (await lab.kubectlOk(['get', 'pod', 'hello', '-o', 'jsonpath={.metadata.uid}'])).trim();
    const vm = await waitFor(
      async () => {
        const v = await instanceOf(uid);
        return v?.lastStartTimestamp ? v : undefined;
      },
      10_000,
      'the VM',
    );
    const runningSince = Date.parse(String(vm.lastStartTimestamp));
    return { uid, vm, runningSince };
  }

  /**
   * Deletes the hello pod, waits until its VM is gone and the final interval is posted, and asserts
   * that the cell-seconds billed equal the time the VM ran, within a second.
   */
  async function deleteHelloBilledAsRan(uid: string, runningSince: number): Promise<void> {
    await lab.kubectlOk(['delete', 'pod', 'hello', '--timeout=60s'], { timeoutMs: 70_000 });
    const gone = await waitFor(
      async () => ((await instanceOf(uid)) ? undefined : Date.now()),
      30_000,
      'the VM deleted',
    );
    const ranSeconds = (gone - runningSince) / 1000;
    // The final interval: billed within a couple of flushes, then nothing more.
    await new Promise((res) => setTimeout(res, 2500));
    await reporter.settled();
    const billed = Number(await emu.total('cell_seconds'));
    assert.ok(
      Math.abs(billed - ranSeconds) <= 1,
      `billed ${billed} cell-seconds, the VM ran ${ranSeconds.toFixed(2)} s\n${lab.logTail('provider')}`,
    );
  }

  it("bills a pod's cell the time its VM ran, within a second", async () => {
    const { uid, vm, runningSince } = await startHello();
    const machineType = String(vm.machineType).split('/').pop()!;
    // Billed while it runs, interval by interval.
    await waitFor(
      async () => ((await emu.total('cell_seconds')) >= 2n ? true : undefined),
      20_000,
      'cell_seconds billed while the pod runs',
    );
    await new Promise((res) => setTimeout(res, 3000));
    await deleteHelloBilledAsRan(uid, runningSince);
    const recorded = await emu.recorded();
    const family = machineType.split('-')[0];
    for (const { operation } of recorded.operations) {
      assert.deepEqual(
        { family: operation.userLabels?.machine_family, spot: operation.userLabels?.spot },
        { family, spot: 'false' },
      );
    }
    assert.equal(recorded.duplicates, 0);
    assert.ok(Number(await emu.total('vcpu_seconds')) > 0);
    assert.ok(Number(await emu.total('memory_gib_seconds')) >= 0);
  });
  it('a provider killed with SIGKILL while a cell runs, then restarted, bills it neither less nor twice', async () => {
    await reporter.settled();
    const res = await fetch(new URL('/admin/operations', emu.rootUrl), { method: 'DELETE' });
    assert.ok(res.ok);
    const { uid, runningSince } = await startHello();
    await waitFor(
      async () => ((await emu.total('cell_seconds')) >= 1n ? true : undefined),
      20_000,
      'cell_seconds billed while the pod runs',
    );
    await lab.killProvider();
    await new Promise((res) => setTimeout(res, 2000));
    await lab.restartProvider();
    await new Promise((res) => setTimeout(res, 2000));
    await deleteHelloBilledAsRan(uid, runningSince);
  });
});
