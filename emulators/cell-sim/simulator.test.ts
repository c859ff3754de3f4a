import assert from 'node:assert/strict';
import { InstancesClient } from '@google-cloud/compute';
import { after, before, describe, it } from 'mocha';
import { stringify } from 'yaml';
import { CellAgentClient } from '../../lib/cell-agent-client.ts';
import type { PodStatusReply } from '../../lib/cell-agent-api.ts';
import { createLogger } from '../../lib/log.ts';
import { createCA, issueCertificate, type KeyPair } from '../../lib/tls.ts';
import { cellInstance, startGceEmulator, type GceEmulator } from '../../test/support/gce.ts';
import { CELL_CONFIG_METADATA_KEY, startCellSimulator, type CellSimulator } from './simulator.ts';

const ZONE = 'us-central1-a';

describe('cell simulator: the agent API over mutual TLS for none-hypervisor cells', function () {
  this.timeout(60_000);
  let emu: GceEmulator;
  let sim: CellSimulator;
  let ca: KeyPair;
  let client: KeyPair;
  const clients: CellAgentClient[] = [];

  /** Inserts a VM carrying an agent config the way the provider does, and waits for RUNNING. */
  async function cell(name: string): Promise<string> {
    const instances = new InstancesClient(emu.clientOptions);
    const server = await issueCertificate(ca, { commonName: name, hosts: [name], usage: 'server' });
    const config = stringify({
      listen: '0.0.0.0:6421',
      dataDir: '/var/lib/kip-cell',
      tls: { certPem: server.certPem, keyPem: server.keyPem, clientCaPem: ca.certPem },
    });
    await instances.insert({
      project: emu.project,
      zone: ZONE,
      instanceResource: cellInstance(ZONE, name, {
        metadata: { items: [{ key: CELL_CONFIG_METADATA_KEY, value: config }] },
      }),
    });
    for (;;) {
      const [i] = await instances.get({ project: emu.project, zone: ZONE, instance: name });
      if (i.status === 'RUNNING') return i.networkInterfaces![0]!.networkIP!;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  function agent(name: string, creds: KeyPair = client, caPem = ca.certPem): CellAgentClient {
    const c = new CellAgentClient({
      baseUrl: `https://127.0.0.1:${sim.port}`,
      ca: caPem,
      cert: creds.certPem,
      key: creds.keyPem,
      servername: name,
      timeoutMs: 5000,
    });
    clients.push(c);
    return c;
  }

  before(async () => {
    emu = await startGceEmulator({ hypervisor: 'none' });
    ca = await createCA('kip-test-ca');
    client = await issueCertificate(ca, { commonName: 'kip-provider', usage: 'client' });
    sim = await startCellSimulator({
      listen: '127.0.0.1:0',
      computeAdmin: `http://${emu.host}:${emu.port}/admin`,
      zones: emu.zones,
      log: createLogger('cell-sim', 'silent'),
    });
  });
  after(async () => {
    for (const c of clients) await c.close();
    await sim?.close();
    await emu?.stop();
  });

  it('runs a pod: PUT, long-poll to Running with the VM address, DELETE to a final Succeeded', async () => {
    const ip = await cell('cell-one');
    const a = agent('cell-one');
    assert.equal((await a.healthz()).version, 'v1');
    const pod = {
      metadata: { name: 'p', namespace: 'default', uid: '0f6c3f3e-1111-4222-8333-444455556666' },
      spec: { containers: [{ name: 'c', image: 'example/busybox:1' }] },
    };
    assert.deepEqual(await a.putPod({ pod }), { uid: pod.metadata.uid, unchanged: false });
    assert.deepEqual(await a.putPod({ pod }), { uid: pod.metadata.uid, unchanged: true });
    let s: PodStatusReply = await a.getStatus();
    while (s.phase !== 'Running') s = await a.getStatus({ after: s.version, wait: 5 });
    assert.equal(s.podIP, ip);
    assert.equal(s.containerStatuses[0]!.ready, true);
    assert.equal(s.qosClass, 'BestEffort');
    const other = { ...pod, metadata: { ...pod.metadata, uid: '99999999-1111-4222-8333-444455556666' } };
    await assert.rejects(a.putPod({ pod: other }), /409|running on this cell/);
    await a.deletePod(0);
    s = await a.getStatus({ after: s.version, wait: 5 });
    assert.equal(s.phase, 'Succeeded');
    assert.equal(s.deleted, true);
    assert.equal(s.containerStatuses[0]!.state.terminated!.exitCode, 0);
    assert.equal(sim.cellCount(), 1);
  });

  it('refuses a bad pod with a 400 naming the field', async () => {
    await cell('cell-two');
    await assert.rejects(
      agent('cell-two').putPod({ pod: { metadata: { name: 'x' }, spec: { containers: [] } } }),
      /pod\.metadata\.uid/,
    );
  });

  it('refuses a client certificate from another CA, and an unknown cell name', async () => {
    await cell('cell-three');
    const stranger = await createCA('stranger');
    const creds = await issueCertificate(stranger, { commonName: 'kip-provider', usage: 'client' });
    await assert.rejects(agent('cell-three', creds).healthz(), /401|client certificate/);
    await assert.rejects(agent('cell-nowhere').healthz());
  });
});
