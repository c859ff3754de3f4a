import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import { InstancesClient, ZoneOperationsClient, type protos } from '@google-cloud/compute';
import { stringify } from 'yaml';
import { createCA, issueCertificate } from '../../lib/tls.ts';
import {
  cellInstance,
  startGceEmulator,
  waitZoneOperation,
  type GceEmulator,
} from '../../test/support/gce.ts';

type Operation = protos.google.cloud.compute.v1.IOperation;
const ZONE = 'us-central1-a';

const ip = (...args: string[]) =>
  execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} within ${ms} ms: ${String(last)}`);
}

async function bootVm(emu: GceEmulator, name: string, items: { key: string; value: string }[] = []) {
  const instances = new InstancesClient(emu.clientOptions);
  const ops = new ZoneOperationsClient(emu.clientOptions);
  const [lro] = await instances.insert({
    project: emu.project,
    zone: ZONE,
    instanceResource: cellInstance(ZONE, name, { metadata: { items } }),
  });
  const op = await waitZoneOperation(ops, emu.project, ZONE, lro.latestResponse as Operation);
  assert.equal(op.error, undefined);
  const vm = await until('instance RUNNING', 10000, async () => {
    const [i] = await instances.get({ project: emu.project, zone: ZONE, instance: name });
    return i.status === 'RUNNING' ? i : undefined;
  });
  const info = await until('cell booted', 10000, async () => {
    const a = await emu.admin.instance(ZONE, name);
    return a.cell ? a : undefined;
  });
  return { vm, info, instances, ops };
}

describe('netns hypervisor: instances boot as network namespaces', function () {
  this.timeout(90000);
  let emu: GceEmulator;
  let second: GceEmulator | undefined;

  before(async () => {
    emu = await startGceEmulator({
      hypervisor: 'netns',
      config: {
        delays: { provisioningMs: 50, stagingMs: 50 },
        hypervisor: {
          bootCommand: ['busybox', 'httpd', '-f', '-p', '{ip}:8080', '-h', '{dataDir}'],
          stopGraceMs: 2000,
        },
      },
    });
  });
  after(async () => {
    await second?.stop();
    await emu?.stop();
  });

  it('gives the cell its networkIP on the emulator bridge and runs the boot command inside', async () => {
    const bridge = emu.network.bridge!;
    assert.match(
      ip('-j', 'addr', 'show', 'dev', bridge),
      new RegExp(`"local":"${emu.network.gateway.replace(/\./g, '\\.')}"`),
    );
    const { vm, info, instances, ops } = await bootVm(emu, 'cell-web');
    const addr = vm.networkInterfaces![0]!.networkIP!;
    const netns = info.cell!.netns as string;
    const pid = info.cell!.pid as number;
    assert.match(
      ip('-n', netns, 'addr', 'show', 'dev', 'eth0'),
      new RegExp(`inet ${addr.replace(/\./g, '\\.')}/`),
    );
    writeFileSync(join(info.dataDir!, 'hello.txt'), 'from the cell disk');
    const body = await until('httpd answers', 10000, async () => {
      const res = await fetch(`http://${addr}:8080/hello.txt`);
      return res.ok ? res.text() : undefined;
    });
    assert.equal(body, 'from the cell disk');

    const [lro] = await instances.delete({ project: emu.project, zone: ZONE, instance: 'cell-web' });
    await waitZoneOperation(ops, emu.project, ZONE, lro.latestResponse as Operation);
    assert.ok(!alive(pid), 'the cell process is stopped');
    assert.ok(!ip('netns', 'list').includes(netns), 'the namespace is removed');
  });

  it('a second emulator on the host gets its own bridge and address block', async () => {
    second = await startGceEmulator({ hypervisor: 'netns' });
    assert.notEqual(second.network.bridge, emu.network.bridge);
    assert.notEqual(second.network.gateway, emu.network.gateway);
    const bridge = second.network.bridge!;
    await second.stop();
    second = undefined;
    assert.throws(() => ip('link', 'show', bridge), 'the bridge is removed on exit');
  });

  it('a new emulator removes what a killed one left behind', async () => {
    const dead = await startGceEmulator({
      hypervisor: 'netns',
      config: {
        delays: { provisioningMs: 50, stagingMs: 50 },
        hypervisor: { bootCommand: ['busybox', 'httpd', '-f', '-p', '{ip}:8080', '-h', '{dataDir}'] },
      },
    });
    let fresh: GceEmulator | undefined;
    try {
      const { info } = await bootVm(dead, 'cell-orphan');
      const netns = info.cell!.netns as string;
      const cellPid = info.cell!.pid as number;
      const emulatorPid = dead.proc.ready.pid as number;
      process.kill(emulatorPid, 'SIGKILL');
      await until('emulator gone', 10000, async () => (alive(emulatorPid) ? undefined : true));
      assert.ok(ip('netns', 'list').includes(netns), 'a killed emulator leaves its namespace');
      fresh = await startGceEmulator({ hypervisor: 'netns' });
      assert.ok(!ip('netns', 'list').includes(netns), 'the next emulator removed the namespace');
      assert.throws(() => ip('link', 'show', dead.network.bridge!), 'and the bridge');
      await until('orphaned cell process gone', 5000, async () => (alive(cellPid) ? undefined : true));
    } finally {
      await fresh?.stop();
      await dead.stop();
    }
  });

  it('runs the real cell agent from kip-cell-agent-config metadata and answers /v1/healthz over mutual TLS', async () => {
    const agentEmu = await startGceEmulator({
      hypervisor: 'netns',
      config: { delays: { provisioningMs: 50, stagingMs: 50 } },
    });
    try {
      // The address is known only after insert, so the server certificate names the whole block's first hosts.
      const ca = await createCA('kip-test-cells');
      const hosts = Array.from({ length: 8 }, (_, i) => {
        const [a, b, c, d] = agentEmu.network.gateway.split('.').map(Number) as [
          number,
          number,
          number,
          number,
        ];
        return `${a}.${b}.${c}.${d + 1 + i}`;
      });
      const server = await issueCertificate(ca, { commonName: 'cell', hosts, usage: 'server' });
      const client = await issueCertificate(ca, { commonName: 'kip-provider', usage: 'client' });
      const agentConfig = stringify({
        tls: { certPem: server.certPem, keyPem: server.keyPem, clientCaPem: ca.certPem },
      });
      const { vm, info } = await bootVm(agentEmu, 'cell-agent-1', [
        { key: 'kip-cell-agent-config', value: agentConfig },
      ]);
      const addr = vm.networkInterfaces![0]!.networkIP!;
      assert.ok(hosts.includes(addr));
      const health = await until(
        'agent healthz',
        45000,
        () =>
          new Promise<Record<string, unknown> | undefined>((resolve, reject) => {
            https
              .get(
                {
                  host: addr,
                  port: 6421,
                  path: '/v1/healthz',
                  ca: ca.certPem,
                  cert: client.certPem,
                  key: client.keyPem,
                  timeout: 2000,
                },
                (res) => {
                  let text = '';
                  res.on('data', (d: Buffer) => (text += d.toString()));
                  res.on('end', () =>
                    resolve(
                      res.statusCode === 200 ? (JSON.parse(text) as Record<string, unknown>) : undefined,
                    ),
                  );
                },
              )
              .on('error', reject);
          }),
      );
      assert.ok(health);
      const log = info.cell!.logFile as string;
      assert.match(execFileSync('cat', [log], { encoding: 'utf8' }), /cell-agent/);
    } finally {
      await agentEmu.stop();
    }
  });
});
