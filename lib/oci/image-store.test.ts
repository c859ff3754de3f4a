import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { buildImage, buildIndex, pushImage } from '../../test/support/images.ts';
import { freePort } from '../free-port.ts';
import { startRegistry, startRegistryProxy, type StartedRegistry } from '../../test/support/registry.ts';
import { zstdImplementation } from './decompress.ts';
import { ImagePullError, ImageStore, type PulledImage } from './image-store.ts';

const execFileP = promisify(execFile);

async function sha256File(p: string): Promise<string> {
  return createHash('sha256')
    .update(await fs.readFile(p))
    .digest('hex');
}

async function pathExists(p: string): Promise<boolean> {
  return fs.lstat(p).then(
    () => true,
    () => false,
  );
}

/** The digest the registry itself reports for a tag. */
async function registryDigest(host: string, repo: string, tag: string, accept: string): Promise<string> {
  const res = await fetch(`http://${host}/v2/${repo}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { accept },
  });
  assert.equal(res.status, 200);
  return res.headers.get('docker-content-digest')!;
}

async function expectPullError(
  p: Promise<unknown>,
  reason: ImagePullError['reason'],
): Promise<ImagePullError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ImagePullError, `expected ImagePullError, got ${String(err)}`);
    assert.equal(err.reason, reason, err.message);
    return err;
  }
  assert.fail(`expected ImagePullError ${reason}, the pull succeeded`);
}

function dockerConfig(host: string, username: string, password: string): string {
  return JSON.stringify({
    auths: { [host]: { auth: Buffer.from(`${username}:${password}`).toString('base64') } },
  });
}

describe('ImageStore against the real docker-registry', function () {
  this.timeout(60_000);
  let reg: StartedRegistry;
  let tmp: string;
  let busyboxRef: string;
  let stores: ImageStore[] = [];

  const newStore = (opts: Partial<ConstructorParameters<typeof ImageStore>[0]> = {}) => {
    const s = new ImageStore({
      root: mkdtempSync(path.join(tmp, 'store-')),
      insecureRegistries: [reg.host],
      ...opts,
    });
    stores.push(s);
    return s;
  };

  const busyboxSpec = {
    name: 'kip/busybox',
    tag: 'v1',
    entrypoint: ['/bin/sh', '-c'],
    cmd: ['echo hello from the image'],
    env: ['PATH=/bin', 'GREETING=hello'],
    workingDir: '/srv',
    user: '65534:65534',
    labels: { 'org.example.team': 'cells' },
    exposedPorts: ['8080/tcp'],
    files: { '/srv/index.html': '<h1>kip</h1>\n' },
  };

  before(async function () {
    this.timeout(120_000);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'kip-oci-test-'));
    reg = await startRegistry();
    busyboxRef = await pushImage(await buildImage(busyboxSpec), 'v1', reg.host);
  });

  afterEach(async () => {
    await Promise.all(stores.map((s) => s.close()));
    stores = [];
  });

  after(async () => {
    await reg?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('pulls an OCI image into a runnable rootfs with its config', async () => {
    const store = newStore();
    const progress: { completedBytes: number; totalBytes: number }[] = [];
    const img = await store.pull(busyboxRef, { onProgress: (p) => progress.push(p) });

    const digest = await registryDigest(
      reg.host,
      'kip/busybox',
      'v1',
      'application/vnd.oci.image.manifest.v1+json',
    );
    assert.equal(img.reference, `${reg.host}/kip/busybox:v1`);
    assert.equal(img.digest, digest);
    assert.equal(img.imageId, `${reg.host}/kip/busybox@${digest}`);
    assert.equal(img.source, 'registry');
    assert.deepEqual(img.config.Entrypoint, ['/bin/sh', '-c']);
    assert.deepEqual(img.config.Cmd, ['echo hello from the image']);
    assert.deepEqual(img.config.Env, ['PATH=/bin', 'GREETING=hello']);
    assert.equal(img.config.WorkingDir, '/srv');
    assert.equal(img.config.User, '65534:65534');
    assert.deepEqual(img.config.Labels, { 'org.example.team': 'cells' });
    assert.deepEqual(Object.keys(img.config.ExposedPorts ?? {}), ['8080/tcp']);

    assert.ok(path.isAbsolute(img.rootfs));
    assert.equal(
      await sha256File(path.join(img.rootfs, 'bin/busybox')),
      await sha256File('/usr/bin/busybox'),
    );
    assert.equal(await fs.readlink(path.join(img.rootfs, 'bin/sh')), 'busybox');
    assert.equal(await fs.readFile(path.join(img.rootfs, 'srv/index.html'), 'utf8'), '<h1>kip</h1>\n');
    assert.equal((await fs.stat(path.join(img.rootfs, 'tmp'))).mode & 0o7777, 0o1777);
    // The rootfs runs: the image's own shell, chrooted.
    const { stdout } = await execFileP('chroot', [
      img.rootfs,
      '/bin/sh',
      '-c',
      'cat /srv/index.html; echo $((6*7))',
    ]);
    assert.equal(stdout, '<h1>kip</h1>\n42\n');

    assert.ok(img.sizeBytes > 500_000 && img.sizeBytes < 5_000_000, `sizeBytes ${img.sizeBytes}`);
    assert.equal(img.downloadedBytes, img.sizeBytes);
    assert.equal((await store.pull(busyboxRef)).downloadedBytes, 0);
    const last = progress.at(-1)!;
    assert.deepEqual(last, { completedBytes: img.sizeBytes, totalBytes: img.sizeBytes });
    assert.deepEqual(await fs.readdir(path.join(store.root, 'tmp')), []);
  });

  it('pulls a Docker v2 schema 2 manifest and shares the rootfs with the OCI pull of the same layers', async () => {
    const v2Ref = await pushImage(await buildImage(busyboxSpec), 'v1', reg.host, undefined, {
      repository: 'kip/busybox-docker',
      format: 'v2s2',
    });
    const digest = await registryDigest(
      reg.host,
      'kip/busybox-docker',
      'v1',
      'application/vnd.docker.distribution.manifest.v2+json',
    );
    const store = newStore();
    const oci = await store.pull(busyboxRef);
    const docker = await store.pull(v2Ref);
    assert.equal(docker.digest, digest);
    assert.notEqual(docker.digest, oci.digest);
    assert.deepEqual(docker.config.Cmd, ['echo hello from the image']);
    // Content-addressed: the same layers unpack once, whatever the manifest format.
    assert.equal(docker.rootfs, oci.rootfs);
    assert.equal((await fs.readdir(path.join(store.root, 'rootfs'))).length, 1);
    const index = JSON.parse(await fs.readFile(path.join(store.root, 'index.json'), 'utf8')) as {
      manifests: { mediaType: string; annotations: Record<string, string> }[];
    };
    const entry = index.manifests.find(
      (m) => m.annotations['org.opencontainers.image.ref.name'] === docker.reference,
    );
    assert.equal(entry?.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  });

  it('picks linux/amd64 from an image index', async () => {
    const layout = await buildIndex({
      name: 'kip/multiarch',
      tag: 'v1',
      images: [
        { architecture: 'arm64', variant: 'v8', spec: { files: { '/platform.txt': 'arm64' } } },
        { architecture: 'amd64', spec: { files: { '/platform.txt': 'amd64' }, cmd: ['amd64-cmd'] } },
        { architecture: 's390x', spec: { files: { '/platform.txt': 's390x' } } },
      ],
    });
    const ref = await pushImage(layout, 'v1', reg.host);
    const indexDigest = await registryDigest(
      reg.host,
      'kip/multiarch',
      'v1',
      'application/vnd.oci.image.index.v1+json',
    );
    const img = await newStore().pull(ref);
    assert.equal(await fs.readFile(path.join(img.rootfs, 'platform.txt'), 'utf8'), 'amd64');
    assert.deepEqual(img.config.Cmd, ['amd64-cmd']);
    // The kubelet reports the digest the tag resolves to: the index's.
    assert.equal(img.digest, indexDigest);

    // The same index as a Docker manifest list.
    const listRef = await pushImage(layout, 'v1', reg.host, undefined, {
      repository: 'kip/multiarch-docker',
      format: 'v2s2',
    });
    const listRes = await fetch(`http://${reg.host}/v2/kip/multiarch-docker/manifests/v1`, {
      headers: { accept: 'application/vnd.docker.distribution.manifest.list.v2+json' },
    });
    assert.equal(
      listRes.headers.get('content-type'),
      'application/vnd.docker.distribution.manifest.list.v2+json',
    );
    const fromList = await newStore().pull(listRef);
    assert.equal(await fs.readFile(path.join(fromList.rootfs, 'platform.txt'), 'utf8'), 'amd64');
    assert.equal(fromList.digest, listRes.headers.get('docker-content-digest'));

    const arm = await newStore({ platform: { os: 'linux', architecture: 'arm64' } }).pull(ref);
    assert.equal(await fs.readFile(path.join(arm.rootfs, 'platform.txt'), 'utf8'), 'arm64');
    const err = await expectPullError(
      newStore({ platform: { os: 'linux', architecture: 'riscv64' } }).pull(ref),
      'NotFound',
    );
    assert.match(
      err.message,
      /no linux\/riscv64 image \(it has: linux\/arm64\/v8, linux\/amd64, linux\/s390x\)/,
    );
  });

  it(`unpacks zstd layers (with ${zstdImplementation})`, async () => {
    const ref = await pushImage(await buildImage(busyboxSpec), 'v1', reg.host, undefined, {
      repository: 'kip/busybox-zstd',
      compression: 'zstd',
    });
    const manifest = (await (
      await fetch(`http://${ref.replace(':v1', '').replace(reg.host, `${reg.host}/v2`)}/manifests/v1`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      })
    ).json()) as { layers: { mediaType: string }[] };
    assert.equal(manifest.layers[0]!.mediaType, 'application/vnd.oci.image.layer.v1.tar+zstd');
    const store = newStore();
    const img = await store.pull(ref);
    assert.equal(
      await sha256File(path.join(img.rootfs, 'bin/busybox')),
      await sha256File('/usr/bin/busybox'),
    );
    // Same uncompressed layers as the gzip image: same rootfs identity.
    const gz = await store.pull(busyboxRef);
    assert.equal(img.rootfs, gz.rootfs);
  });

  it('applies whiteouts and opaque directories across layers', async () => {
    const layout = await buildImage({
      name: 'kip/layered',
      tag: 'v1',
      files: {
        '/etc/app/a.conf': 'a',
        '/etc/app/b.conf': 'b',
        '/data/keep.txt': 'keep',
        '/data/old/x.txt': 'x',
        '/opt/lower/l1': 'l1',
        '/opt/lower/sub/l2': 'l2',
      },
      layers: [
        { remove: ['/etc/app/b.conf', '/data/old'], files: { '/data/new.txt': 'new' } },
        { opaqueDir: '/opt/lower', files: { 'fresh.txt': 'fresh', 'sub/again.txt': 'again' } },
      ],
    });
    const ref = await pushImage(layout, 'v1', reg.host);
    const store = newStore();
    const img = await store.pull(ref);

    // The layers really carry whiteout entries (otherwise this test proves nothing).
    const manifest = JSON.parse(
      await fs.readFile(path.join(store.root, 'blobs/sha256', img.digest.slice(7)), 'utf8'),
    ) as { layers: { digest: string }[] };
    assert.equal(manifest.layers.length, 3);
    const listing = async (i: number) =>
      (
        await execFileP('tar', [
          '-tzf',
          path.join(store.root, 'blobs/sha256', manifest.layers[i]!.digest.slice(7)),
        ])
      ).stdout;
    assert.match(await listing(1), /etc\/app\/\.wh\.b\.conf/);
    assert.match(await listing(1), /data\/\.wh\.old/);
    assert.match(await listing(2), /opt\/lower\/\.wh\.\.wh\.\.opq/);

    const r = (p: string) => path.join(img.rootfs, p);
    assert.equal(await fs.readFile(r('etc/app/a.conf'), 'utf8'), 'a');
    assert.equal(await pathExists(r('etc/app/b.conf')), false);
    assert.equal(await pathExists(r('data/old')), false);
    assert.equal(await fs.readFile(r('data/keep.txt'), 'utf8'), 'keep');
    assert.equal(await fs.readFile(r('data/new.txt'), 'utf8'), 'new');
    assert.deepEqual((await fs.readdir(r('opt/lower'))).sort(), ['fresh.txt', 'sub']);
    assert.deepEqual(await fs.readdir(r('opt/lower/sub')), ['again.txt']);
    // No whiteout marker survives in the rootfs.
    const { stdout } = await execFileP('find', [img.rootfs, '-name', '.wh.*']);
    assert.equal(stdout, '');
  });

  it('refuses a blob whose digest does not match and keeps nothing of it', async () => {
    const manifest = (await (
      await fetch(`http://${reg.host}/v2/kip/busybox/manifests/v1`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      })
    ).json()) as { layers: { digest: string }[] };
    const layer = manifest.layers[0]!.digest;
    const proxy = await startRegistryProxy(reg.host, { corrupt: new RegExp(`/blobs/${layer}$`) });
    try {
      const store = newStore({ insecureRegistries: [proxy.host] });
      const err = await expectPullError(store.pull(`${proxy.host}/kip/busybox:v1`), 'DigestMismatch');
      assert.match(err.message, new RegExp(`${proxy.host}/kip/busybox:v1`));
      assert.match(err.message, new RegExp(`not the ${layer}`));
      assert.match(err.message, /refused and discarded/);
      assert.equal(await pathExists(path.join(store.root, 'blobs/sha256', layer.slice(7))), false);
      assert.deepEqual(await fs.readdir(path.join(store.root, 'tmp')), []);
      assert.deepEqual(await fs.readdir(path.join(store.root, 'rootfs')), []);
    } finally {
      await proxy.stop();
    }
  });

  it('refuses a layer the registry serves with other valid content, though it unpacked cleanly', async () => {
    const ref = await pushImage(
      await buildImage({ name: 'kip/rotten', tag: 'v1', files: { '/rotten.txt': 'original' } }),
      'v1',
      reg.host,
    );
    const manifest = (await (
      await fetch(`http://${reg.host}/v2/kip/rotten/manifests/v1`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      })
    ).json()) as { layers: { digest: string }[] };
    const hex = manifest.layers[0]!.digest.slice(7);
    // Swap the blob in the registry's storage for a different, well-formed layer.
    const data = path.join(reg.storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
    const other = path.join(tmp, 'other-layer');
    await fs.mkdir(path.join(other, 'etc'), { recursive: true });
    await fs.writeFile(path.join(other, 'etc/planted'), 'planted');
    await execFileP('tar', ['-czf', data, '-C', other, 'etc']);

    const store = newStore();
    const err = await expectPullError(store.pull(ref), 'DigestMismatch');
    assert.match(
      err.detail,
      /^the layer 1\/1 sha256:[a-f0-9]{64} from registry .* has digest sha256:[a-f0-9]{64} \(\d+ bytes, \d+ named\)/,
    );
    assert.deepEqual(await fs.readdir(path.join(store.root, 'rootfs')), []);
    assert.deepEqual(await fs.readdir(path.join(store.root, 'tmp')), []);
    assert.equal(await pathExists(path.join(store.root, 'blobs/sha256', hex)), false);
    const { stdout } = await execFileP('find', [store.root, '-name', 'planted']);
    assert.equal(stdout, '');
  });

  it('reports a missing image or tag as NotFound with the registry and status', async () => {
    const store = newStore();
    const err = await expectPullError(store.pull(`${reg.host}/kip/does-not-exist:v1`), 'NotFound');
    assert.equal(err.status, 404);
    assert.match(err.message, new RegExp(`Failed to pull image "${reg.host}/kip/does-not-exist:v1"`));
    assert.match(err.message, new RegExp(`registry ${reg.host} answered 404 Not Found`));
    assert.match(err.message, /check the image name and tag/);
    const tagErr = await expectPullError(store.pull(`${reg.host}/kip/busybox:no-such-tag`), 'NotFound');
    assert.match(tagErr.message, /manifest "no-such-tag"/);
  });

  it('reports an unreachable registry as Unavailable and a malformed reference as InvalidReference', async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const store = newStore({ insecureRegistries: [dead], requestAttempts: 2 });
    const err = await expectPullError(store.pull(`${dead}/kip/busybox:v1`), 'Unavailable');
    assert.match(err.message, /cannot reach registry 127\.0\.0\.1:\d+ .*ECONNREFUSED/);
    const bad = await expectPullError(store.pull('kip/BusyBox:v1'), 'InvalidReference');
    assert.match(bad.message, /"BusyBox" must be lowercase/);
  });

  it('retries a registry answering 503 and reports it when it keeps failing', async () => {
    const flaky = await startRegistryProxy(reg.host, { failFirst: 2 });
    const down = await startRegistryProxy(reg.host, { failFirst: 1000 });
    try {
      const img = await newStore({ insecureRegistries: [flaky.host] }).pull(`${flaky.host}/kip/busybox:v1`);
      assert.ok(await pathExists(path.join(img.rootfs, 'bin/busybox')));
      assert.equal(flaky.requests.filter((r) => r.includes('/manifests/')).length, 3);

      const store = newStore({ insecureRegistries: [down.host], requestAttempts: 2 });
      const err = await expectPullError(store.pull(`${down.host}/kip/busybox:v1`), 'Unavailable');
      assert.equal(err.status, 503);
      assert.match(
        err.message,
        /answered 503 Service Unavailable .*\(UNAVAILABLE: try later\); the registry is failing, try again later/,
      );
      assert.equal(down.requests.length, 2);
    } finally {
      await flaky.stop();
      await down.stop();
    }
  });

  it('shares one download among concurrent pulls of the same image', async () => {
    const proxy = await startRegistryProxy(reg.host);
    try {
      const store = newStore({ insecureRegistries: [proxy.host] });
      const ref = `${proxy.host}/kip/busybox:v1`;
      const seen: number[] = [];
      const results = await Promise.all(
        Array.from({ length: 5 }, () => store.pull(ref, { onProgress: (p) => seen.push(p.completedBytes) })),
      );
      assert.equal(new Set(results.map((r) => r.rootfs)).size, 1);
      assert.equal(new Set(results.map((r) => r.digest)).size, 1);
      const blobGets = proxy.requests.filter((r) => r.startsWith('GET ') && r.includes('/blobs/'));
      assert.equal(blobGets.length, 2, proxy.requests.join('\n')); // one config, one layer
      assert.equal(new Set(blobGets).size, 2);
      assert.equal(proxy.requests.filter((r) => r.includes('/manifests/')).length, 1);
      assert.equal(store.downloadCount, 2);
      assert.ok(seen.length >= 5);

      // Two names for the same content, pulled at once: each blob still travels once.
      const layout = await buildImage({ name: 'kip/twin', tag: 'v1', files: { '/twin': 'same' } });
      await pushImage(layout, 'v1', reg.host, undefined, { repository: 'kip/twin-a' });
      await pushImage(layout, 'v1', reg.host, undefined, { repository: 'kip/twin-b' });
      const twinStart = proxy.requests.length;
      const [a, b] = await Promise.all([
        store.pull(`${proxy.host}/kip/twin-a:v1`),
        store.pull(`${proxy.host}/kip/twin-b:v1`),
      ]);
      assert.equal(a.rootfs, b.rootfs);
      assert.notEqual(a.imageId, b.imageId);
      const twinBlobs = proxy.requests.slice(twinStart).filter((r) => r.includes('/blobs/'));
      assert.equal(twinBlobs.length, 2, twinBlobs.join('\n'));
      assert.equal(a.downloadedBytes + b.downloadedBytes >= a.sizeBytes, true);

      // Held now: IfNotPresent asks nothing; Always asks for the manifest only.
      const before = proxy.requests.length;
      assert.equal((await store.pull(ref)).source, 'store');
      assert.equal(proxy.requests.length, before);
      const again = await store.pull(ref, { pullPolicy: 'Always' });
      assert.equal(again.source, 'registry');
      assert.deepEqual(
        proxy.requests.slice(before).map((r) => r.split(' ')[1]),
        ['/v2/kip/busybox/manifests/v1'],
      );
    } finally {
      await proxy.stop();
    }
  });

  it('lets one caller abort without failing the others', async () => {
    const ref = await pushImage(
      await buildImage({ name: 'kip/big', tag: 'v1', paddingMB: 24 }),
      'v1',
      reg.host,
    );
    const store = newStore();
    const ac = new AbortController();
    const first = store.pull(ref, { signal: ac.signal });
    const second = store.pull(ref);
    setTimeout(() => ac.abort(new Error('pod deleted')), 20);
    await assert.rejects(first, /pod deleted/);
    const img = await second;
    assert.equal((await fs.stat(path.join(img.rootfs, 'padding.bin'))).size, 24 * 1024 * 1024);

    // Alone, an abort stops the pull and leaves nothing half-written.
    const lone = newStore();
    const ac2 = new AbortController();
    const p = lone.pull(ref, {
      signal: ac2.signal,
      onProgress: (x) => x.completedBytes > 0 && ac2.abort(new Error('stop')),
    });
    await assert.rejects(p, /stop/);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(await fs.readdir(path.join(lone.root, 'tmp')), []);
    assert.deepEqual(await fs.readdir(path.join(lone.root, 'rootfs')), []);
  });
});

describe('ImageStore with registry authentication', function () {
  this.timeout(60_000);
  let tmp: string;
  const stores: ImageStore[] = [];
  const creds = { username: 'alice', password: 'correct horse' };

  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'kip-oci-auth-'));
  });
  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    rmSync(tmp, { recursive: true, force: true });
  });
  const storeFor = (host: string, extra: Partial<ConstructorParameters<typeof ImageStore>[0]> = {}) => {
    const s = new ImageStore({
      root: mkdtempSync(path.join(tmp, 'store-')),
      insecureRegistries: [host],
      ...extra,
    });
    stores.push(s);
    return s;
  };

  it('basic auth (htpasswd): no credentials → Unauthorized, right ones from a dockerconfigjson → pulled', async () => {
    const reg = await startRegistry({ htpasswd: creds });
    try {
      const ref = await pushImage(
        await buildImage({ name: 'kip/private', tag: 'v1', cmd: ['true'] }),
        'v1',
        reg.host,
        creds,
      );
      const none = await expectPullError(storeFor(reg.host).pull(ref), 'Unauthorized');
      assert.equal(none.status, 401);
      assert.match(none.message, new RegExp(`registry ${reg.host} answered 401 Unauthorized`));
      assert.match(none.message, /add an imagePullSecret/);

      const wrong = await expectPullError(
        storeFor(reg.host).pull(ref, { dockerConfigs: [dockerConfig(reg.host, 'alice', 'wrong')] }),
        'Unauthorized',
      );
      assert.match(wrong.message, new RegExp(`imagePullSecret entry "${reg.host}"`));

      const other = JSON.stringify({ auths: { 'other.example:5000': { username: 'x', password: 'y' } } });
      const img = await storeFor(reg.host).pull(ref, {
        dockerConfigs: [
          'not json',
          other,
          dockerConfig(`http://${reg.host}/`, creds.username, creds.password),
        ],
      });
      assert.deepEqual(img.config.Cmd, ['true']);
      assert.ok(await pathExists(path.join(img.rootfs, 'bin/busybox')));
    } finally {
      await reg.stop();
    }
  });

  it('token auth: anonymous token refused for a private repository, credentials exchanged for a token', async () => {
    const reg = await startRegistry({ token: { users: { alice: creds.password } } });
    try {
      const ref = await pushImage(
        await buildImage({ name: 'kip/tokened', tag: 'v1', cmd: ['tok'] }),
        'v1',
        reg.host,
        creds,
      );
      const err = await expectPullError(storeFor(reg.host).pull(ref), 'Unauthorized');
      assert.match(err.message, /add an imagePullSecret/);
      assert.ok(
        reg.tokenRequests.some((r) => r.user === undefined && r.scope === 'repository:kip/tokened:pull'),
      );

      const img = await storeFor(reg.host).pull(ref, {
        dockerConfigs: [dockerConfig(reg.host, creds.username, creds.password)],
      });
      assert.deepEqual(img.config.Cmd, ['tok']);
      assert.ok(
        reg.tokenRequests.some((r) => r.user === 'alice' && r.scope === 'repository:kip/tokened:pull'),
      );
    } finally {
      await reg.stop();
    }
  });

  it('token auth: an anonymous token pulls a public repository', async () => {
    const reg = await startRegistry({ token: { users: { alice: creds.password }, anonymousPull: true } });
    try {
      const ref = await pushImage(
        await buildImage({ name: 'kip/public', tag: 'v1', cmd: ['pub'] }),
        'v1',
        reg.host,
        creds,
      );
      const img = await storeFor(reg.host).pull(ref);
      assert.deepEqual(img.config.Cmd, ['pub']);
      assert.ok(
        reg.tokenRequests.some((r) => r.user === undefined && r.scope === 'repository:kip/public:pull'),
      );
    } finally {
      await reg.stop();
    }
  });

  it('https with a private CA given in caCerts', async () => {
    const reg = await startRegistry({ tls: true });
    try {
      const ref = await pushImage(
        await buildImage({ name: 'kip/tls', tag: 'v1', cmd: ['tls'] }),
        'v1',
        reg.host,
      );
      const untrusted = new ImageStore({ root: mkdtempSync(path.join(tmp, 'store-')), requestAttempts: 1 });
      stores.push(untrusted);
      const err = await expectPullError(untrusted.pull(ref), 'Unavailable');
      assert.match(err.message, /trust its CA/);
      const trusted = new ImageStore({ root: mkdtempSync(path.join(tmp, 'store-')), caCerts: [reg.caCert!] });
      stores.push(trusted);
      assert.deepEqual((await trusted.pull(ref)).config.Cmd, ['tls']);
    } finally {
      await reg.stop();
    }
  });
});

describe('ImageStore with a read-only image cache', function () {
  this.timeout(60_000);
  let tmp: string;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'kip-oci-cache-'));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('serves pulls from the cache directory with the registry stopped', async () => {
    const reg = await startRegistry();
    let filled: PulledImage;
    let ref: string;
    const cacheDir = path.join(tmp, 'cache');
    const layoutCache = path.join(tmp, 'oci-layout-cache');
    try {
      ref = await pushImage(
        await buildImage({ name: 'kip/cached', tag: 'v1', cmd: ['cached'] }),
        'v1',
        reg.host,
      );
      // The image cache controller's way: a store whose root is the cache directory.
      const filler = new ImageStore({ root: cacheDir, insecureRegistries: [reg.host] });
      filled = await filler.pull(ref);
      await filler.close();
      // Or a plain OCI layout, as `skopeo copy docker://... oci:<dir>:<full reference>` writes it.
      await execFileP('skopeo', [
        '--insecure-policy',
        'copy',
        '--quiet',
        '--src-tls-verify=false',
        `docker://${ref}`,
        `oci:${layoutCache}:${ref}`,
      ]);
    } finally {
      await reg.stop();
    }
    await execFileP('chmod', ['-R', 'a-w', cacheDir]);
    try {
      const store = new ImageStore({
        root: path.join(tmp, 'cell'),
        cacheDir,
        insecureRegistries: [reg.host],
      });
      const img = await store.pull(ref);
      assert.equal(img.source, 'cache');
      assert.equal(img.digest, filled.digest);
      assert.deepEqual(img.config.Cmd, ['cached']);
      // The cache's unpacked tree is used in place: nothing copied, nothing downloaded.
      assert.equal(img.rootfs, filled.rootfs);
      assert.ok(img.rootfs.startsWith(cacheDir));
      assert.equal(store.downloadCount, 0);
      assert.equal(img.downloadedBytes, 0);
      // Always still works from the cache while the registry is down.
      assert.equal((await store.pull(ref, { pullPolicy: 'Always' })).source, 'cache');
      // An image in neither place fails as the kubelet would.
      await expectPullError(store.pull(`${reg.host}/kip/absent:v1`, { pullPolicy: 'Never' }), 'NotFound');
      await store.close();

      const fromLayout = new ImageStore({ root: path.join(tmp, 'cell2'), cacheDir: layoutCache });
      const img2 = await fromLayout.pull(ref);
      assert.equal(img2.source, 'cache');
      assert.equal(img2.digest, filled.digest);
      assert.ok(img2.rootfs.startsWith(path.join(tmp, 'cell2')));
      assert.ok(await pathExists(path.join(img2.rootfs, 'bin/busybox')));
      assert.equal(fromLayout.downloadCount, 0);
      await fromLayout.close();
    } finally {
      await execFileP('chmod', ['-R', 'u+w', cacheDir]);
    }
  });
});
