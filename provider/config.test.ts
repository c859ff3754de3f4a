import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../lib/config-file.ts';
import { loadProviderConfig, validateProviderConfig } from './config.ts';

describe('provider config', () => {
  it('needs only a project; everything else has a lab default', () => {
    const cfg = validateProviderConfig({ cloud: { project: 'kip-lab-project' } });
    assert.equal(cfg.nodeName, 'kip');
    assert.deepEqual(cfg.node.taints, [
      { key: 'virtual-kubelet.io/provider', value: 'kip', effect: 'NoSchedule' },
    ]);
    assert.equal(cfg.node.capacity.pods, '1000');
    assert.deepEqual(cfg.cloud.zones, ['us-central1-a', 'us-central1-b']);
    assert.equal(cfg.cells.defaultMachineType, 'e2-small');
    assert.deepEqual([cfg.cells.finishedLogBytes, cfg.cells.finishedLogBudgetBytes], [1 << 20, 256 << 20]);
    assert.deepEqual(cfg.etcd.endpoints, ['http://127.0.0.1:2379']);
    assert.equal(cfg.kubeletApi.listen, '0.0.0.0:10250');
    assert.equal(cfg.kubeletApi.authentication, 'webhook');
    assert.equal(cfg.usageReporter.intervalSeconds, 60);
    // A client CA alone is fine: the serving certificate then comes from Kip's CA.
    const caOnly = validateProviderConfig({
      cloud: { project: 'kip-lab-project' },
      kubeletApi: { tls: { clientCAFile: '/etc/kip/client-ca.crt' } },
    });
    assert.equal(caOnly.kubeletApi.tls?.certFile, undefined);
  });

  const rejects = (doc: unknown, field: string, message: RegExp) =>
    assert.throws(
      () => validateProviderConfig(doc),
      (e: unknown) => e instanceof ConfigError && e.field === field && message.test(e.message),
    );

  it('names the field of every mistake', () => {
    rejects({}, 'cloud', /required property 'cloud'/);
    rejects({ cloud: { project: 'Bad_Project' } }, 'cloud.project', /must match pattern/);
    rejects(
      { cloud: { project: 'kip-lab-project', zones: ['europe-west1-b'] } },
      'cloud.zones[0]',
      /not in region/,
    );
    rejects({ cloud: { project: 'kip-lab-project' }, cells: { diskSizeGb: 5 } }, 'cells.diskSizeGb', />= 10/);
    rejects(
      { cloud: { project: 'kip-lab-project' }, cells: { finishedLogBudgetBytes: '1Gi' } },
      'cells.finishedLogBudgetBytes',
      /integer/,
    );
    rejects(
      { cloud: { project: 'kip-lab-project' }, kubeletApi: { listen: '10250' } },
      'kubeletApi.listen',
      /pattern/,
    );
    rejects(
      { cloud: { project: 'kip-lab-project' }, node: { taints: [{ key: 'a', effect: 'Sometimes' }] } },
      'node.taints[0].effect',
      /allowed values/,
    );
    rejects(
      { cloud: { project: 'kip-lab-project' }, etcd: { endpoint: 'x' } },
      'etcd.endpoint',
      /not a known field/,
    );
    rejects(
      { cloud: { project: 'kip-lab-project' }, kubeletApi: { tls: { certFile: '/etc/kip/tls.crt' } } },
      'kubeletApi.tls.keyFile',
      /with the other/,
    );
    rejects(
      { cloud: { project: 'kip-lab-project' }, imageCache: { nfsServer: '10.0.0.2' } },
      'imageCache.nfsPath',
      /with the other/,
    );
  });

  it('loads a YAML file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kip-provider-config-'));
    const path = join(dir, 'provider.yaml');
    writeFileSync(
      path,
      'nodeName: kip-lab\ncloud:\n  project: kip-lab-project\n  endpoint: {host: 127.0.0.1, port: 8443}\n',
    );
    const cfg = loadProviderConfig(path);
    rmSync(dir, { recursive: true, force: true });
    assert.equal(cfg.nodeName, 'kip-lab');
    assert.deepEqual(cfg.cloud.endpoint, { host: '127.0.0.1', port: 8443, protocol: 'http' });
  });
});
