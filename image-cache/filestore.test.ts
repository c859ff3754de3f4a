import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { protos } from '@google-cloud/filestore';
import { startKubeEmulator, type KubeEmulatorHandle } from '../test/support/kube.ts';
import { CoreV1Api } from '@kubernetes/client-node';
import { readIndex, REF_NAME_ANNOTATION } from '../lib/oci/oci-layout.ts';
import { buildImage, pushImage } from '../test/support/images.ts';
import { startNpmScript, type StartedProcess } from '../test/support/process.ts';
import { startRegistry, type StartedRegistry } from '../test/support/registry.ts';
import { filestoreClient, LAB_SHARE_DIR_LABEL, resolveFilestoreShare } from './filestore-share.ts';

const v1 = protos.google.cloud.filestore.v1;

describe('Filestore emulator and the controller in Filestore mode', function () {
  this.timeout(60_000);
  let emu: StartedProcess;
  let kube: KubeEmulatorHandle;
  let dataDir: string;
  let url: string;
  const parent = 'projects/p1/locations/us-central1-c';
  const name = `${parent}/instances/cache-1`;

  before(async () => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'kip-fs-test-'));
    [emu, kube] = await Promise.all([
      startNpmScript('filestore-emulator', ['--data-dir', dataDir, '--operation-delay-ms', '150']),
      startKubeEmulator(),
    ]);
    url = emu.ready.rootUrl as string;
  });
  after(async () => {
    await Promise.all([emu?.stop(), kube?.stop()]);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('creates, gets, lists and deletes an instance through @google-cloud/filestore', async () => {
    const client = filestoreClient(url);
    try {
      const [op] = await client.createInstance({
        parent,
        instanceId: 'cache-1',
        instance: {
          tier: v1.Instance.Tier.BASIC_HDD,
          labels: { team: 'kip' },
          fileShares: [{ name: 'images', capacityGb: 1024 }],
          networks: [{ network: 'default', modes: [v1.NetworkConfig.AddressMode.MODE_IPV4] }],
        },
      });
      assert.equal(op.done, false);
      const [created] = await op.promise();
      assert.equal(created.name, name);
      assert.equal(created.state, v1.Instance.State.READY);

      const [got] = await client.getInstance({ name });
      assert.equal(got.state, 'READY');
      assert.equal(got.tier, 'BASIC_HDD');
      assert.equal(got.fileShares?.[0]?.name, 'images');
      assert.equal(got.labels?.team, 'kip');
      const shareDir = got.labels?.[LAB_SHARE_DIR_LABEL];
      assert.ok(shareDir && (await fs.stat(shareDir)).isDirectory());

      const [list] = await client.listInstances({ parent });
      assert.deepEqual(
        list.map((i) => i.name),
        [name],
      );

      await assert.rejects(
        client.createInstance({ parent, instanceId: 'cache-1', instance: got }),
        (e: { code?: number }) => e.code === 6,
      );
      await assert.rejects(
        client.createInstance({
          parent,
          instanceId: 'bad',
          instance: {
            tier: v1.Instance.Tier.BASIC_HDD,
            fileShares: [{ name: 'x', capacityGb: 10 }],
            networks: [{ network: 'default' }],
          },
        }),
        /capacityGb/,
      );

      const [share] = [await resolveFilestoreShare(name, url)];
      assert.deepEqual(share, {
        instance: name,
        ipAddress: '127.0.0.1',
        shareName: 'images',
        localDir: shareDir,
      });
      const [del] = await client.deleteInstance({ name });
      await del.promise();
      await assert.rejects(client.getInstance({ name }), (e: { code?: number }) => e.code === 5);
      await assert.rejects(fs.stat(shareDir));
    } finally {
      await client.close();
    }
  });

  it('the controller resolves --filestore-instance to the share and caches there', async () => {
    const client = filestoreClient(url);
    const instance = `${parent}/instances/cache-2`;
    let registry: StartedRegistry | undefined;
    try {
      const [op] = await client.createInstance({
        parent,
        instanceId: 'cache-2',
        instance: {
          tier: v1.Instance.Tier.BASIC_HDD,
          fileShares: [{ name: 'images', capacityGb: 1024 }],
          networks: [{ network: 'default' }],
        },
      });
      await op.promise();
      const [inst] = await client.getInstance({ name: instance });
      const shareDir = inst.labels![LAB_SHARE_DIR_LABEL]!;
      const core = kube.kubeConfig.makeApiClient(CoreV1Api);
      await core.createNamespace({ body: { metadata: { name: 'kip-system' } } });
      registry = await startRegistry();
      const ref = await pushImage(await buildImage({ name: 'kip/fs-mode', tag: '1' }), '1', registry.host);
      const ctl = await startNpmScript('image-cache', [
        '--namespace=kip-system',
        '--lease-name=image-cache',
        '--mount-path=/var/lib/kip/image-cache',
        `--filestore-instance=${instance}`,
        `--filestore-endpoint=${url}`,
        `--kubeconfig=${kube.kubeconfigPath}`,
        '--metrics-host=127.0.0.1',
        '--metrics-port=0',
        '--lease-duration=2s',
        `--insecure-registry=${registry.host}`,
      ]);
      try {
        assert.equal(ctl.ready.root, shareDir);
        await core.createNamespacedPod({
          namespace: 'default',
          body: { metadata: { name: 'fs-mode' }, spec: { containers: [{ name: 'c', image: ref }] } },
        });
        const until = Date.now() + 20_000;
        const cached = async () =>
          (await readIndex(shareDir)).some((d) => d.annotations?.[REF_NAME_ANNOTATION] === ref);
        while (!(await cached())) {
          assert.ok(Date.now() < until, 'the image reached the instance share');
          await new Promise((r) => setTimeout(r, 100));
        }
        const metrics = await (await fetch(ctl.ready.metrics as string)).text();
        assert.match(metrics, /kip_image_cache_images /);
      } finally {
        await ctl.stop();
      }
      // A missing instance: one line naming the flag, non-zero exit.
      const missing = await startNpmScript('image-cache', [
        '--namespace=kip-system',
        '--lease-name=image-cache',
        '--mount-path=/var/lib/kip/image-cache',
        `--filestore-instance=${parent}/instances/nope`,
        `--filestore-endpoint=${url}`,
        `--kubeconfig=${kube.kubeconfigPath}`,
      ]).then(
        () => assert.fail('started without its instance'),
        (e: Error) => e.message,
      );
      assert.match(missing, /exited with [1-9]/);
      assert.match(missing, /image-cache: --filestore-instance .*nope does not exist/);
    } finally {
      await client.close();
      await registry?.stop();
    }
  });
});
