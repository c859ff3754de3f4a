import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { ImageStore } from '../lib/oci/image-store.ts';
import { readIndex, REF_NAME_ANNOTATION } from '../lib/oci/oci-layout.ts';
import { buildImage, pushImage } from '../test/support/images.ts';
import { startKubeEmulator, type KubeEmulatorHandle } from '../test/support/kube.ts';
import { startNpmScript, type StartedProcess } from '../test/support/process.ts';
import { startRegistry, type StartedRegistry } from '../test/support/registry.ts';

const NS = 'kip-system';
const LEASE = `image-cache-${process.pid}`;

async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function metric(proc: StartedProcess, name: string): Promise<number | undefined> {
  const text = await (await fetch(proc.ready.metrics as string)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : undefined;
}

async function cachedRefs(dir: string): Promise<string[]> {
  return (await readIndex(dir)).map((d) => d.annotations?.[REF_NAME_ANNOTATION] ?? '').sort();
}

describe('image cache controller', function () {
  this.timeout(120_000);
  let kube: KubeEmulatorHandle;
  let core: CoreV1Api;
  let open: StartedRegistry;
  let once: StartedRegistry;
  let auth: StartedRegistry;
  let cacheDir: string;
  let work: string;
  const controllers = new Map<string, StartedProcess>();
  const refs: Record<string, string> = {};
  const creds = { username: 'kip', password: 's3cret' };

  const startController = (identity: string) =>
    startNpmScript('image-cache', [
      `--namespace=${NS}`,
      `--lease-name=${LEASE}`,
      `--mount-path=${cacheDir}`,
      '--nfs-server=10.0.0.2',
      '--nfs-path=/cache',
      `--kubeconfig=${kube.kubeconfigPath}`,
      '--metrics-host=127.0.0.1',
      '--metrics-port=0',
      '--prune-after=3s',
      '--prune-interval=500ms',
      '--lease-duration=2s',
      `--identity=${identity}`,
      `--insecure-registry=${open.host}`,
      `--insecure-registry=${once.host}`,
      `--insecure-registry=${auth.host}`,
    ]).then((p) => (controllers.set(identity, p), p));

  const createPod = (name: string, image: string, pullSecret?: string) =>
    core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name },
        spec: {
          containers: [{ name: 'main', image }],
          ...(pullSecret ? { imagePullSecrets: [{ name: pullSecret }] } : {}),
        },
      },
    });

  const leader = async (): Promise<[string, StartedProcess]> =>
    waitFor('one leader', async () => {
      const leading: [string, StartedProcess][] = [];
      for (const [id, p] of controllers)
        if ((await metric(p, 'kip_image_cache_leader')) === 1) leading.push([id, p]);
      return leading.length === 1 ? leading[0] : undefined;
    });

  before(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'kip-image-cache-test-'));
    cacheDir = path.join(work, 'share');
    await fs.mkdir(cacheDir);
    [kube, open, once, auth] = await Promise.all([
      startKubeEmulator(),
      startRegistry(),
      startRegistry(),
      startRegistry({ htpasswd: creds }),
    ]);
    core = kube.kubeConfig.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: NS } } }).catch(() => undefined);
    const [a, b, c, d, e] = await Promise.all(
      ['alpha', 'beta', 'gamma', 'delta', 'epsilon'].map((name) =>
        buildImage({ name: `kip/${name}`, tag: 'v1', files: { [`/${name}.txt`]: `${name}\n` } }),
      ),
    );
    [refs.once, refs.private, refs.keep, refs.drop, refs.late] = await Promise.all([
      pushImage(a!, 'v1', once.host),
      pushImage(b!, 'v1', auth.host, creds),
      pushImage(c!, 'v1', open.host),
      pushImage(d!, 'v1', open.host),
      pushImage(e!, 'v1', open.host),
    ]);
    await Promise.all([startController('replica-a'), startController('replica-b')]);
  });

  after(async () => {
    await Promise.all([...controllers.values()].map((p) => p.stop()));
    await Promise.all([kube?.stop(), open?.stop(), once?.stop(), auth?.stop()]);
    rmSync(work, { recursive: true, force: true });
  });

  it('two controllers: one leader, named in the Lease', async () => {
    const [id] = await leader();
    const lease = await kube.kubeConfig
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ name: LEASE, namespace: NS });
    assert.equal(lease.spec?.holderIdentity, id);
  });

  it('caches the image a pod uses; a cell store then pulls it with the registry stopped and zero downloads', async () => {
    await createPod('uses-once', refs.once!);
    await waitFor('the image in the cache', async () => (await cachedRefs(cacheDir)).includes(refs.once!));
    // Only the leader wrote.
    const [leaderId] = await leader();
    for (const [id, p] of controllers) {
      const wrote = p.stderr().includes('"image cached"');
      assert.equal(wrote, id === leaderId, `${id} wrote the cache: ${wrote}`);
    }
    await once.stop();
    const cell = new ImageStore({ root: path.join(work, 'cell'), cacheDir, insecureRegistries: [once.host] });
    try {
      const img = await cell.pull(refs.once!);
      assert.equal(img.source, 'cache');
      assert.equal(cell.downloadCount, 0);
      assert.equal(img.downloadedBytes, 0);
      assert.equal((await fs.readFile(path.join(img.rootfs, 'alpha.txt'), 'utf8')).trim(), 'alpha');
    } finally {
      await cell.close();
    }
  });

  it("honours the pod's imagePullSecrets for a registry with basic auth", async () => {
    await createPod('no-secret', refs.private!);
    const [, lp] = await leader();
    await waitFor('an Unauthorized pull', async () => lp.stderr().includes('"reason":"Unauthorized"'));
    assert.ok(!(await cachedRefs(cacheDir)).includes(refs.private!));

    const dockerconfig = {
      auths: { [auth.host]: { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') } },
    };
    await core.createNamespacedSecret({
      namespace: 'default',
      body: {
        metadata: { name: 'regcred' },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': Buffer.from(JSON.stringify(dockerconfig)).toString('base64') },
      },
    });
    await createPod('with-secret', refs.private!, 'regcred');
    await waitFor('the private image in the cache', async () =>
      (await cachedRefs(cacheDir)).includes(refs.private!),
    );
  });

  it('prunes an image no pod has used past the age, keeps those in use', async () => {
    await createPod('keeper', refs.keep!);
    await createPod('dropper', refs.drop!);
    await waitFor('both images cached', async () => {
      const have = await cachedRefs(cacheDir);
      return have.includes(refs.keep!) && have.includes(refs.drop!);
    });
    const usage = JSON.parse(await fs.readFile(path.join(cacheDir, 'kip-image-usage.json'), 'utf8')) as {
      images: Record<string, string>;
    };
    assert.ok(usage.images[refs.drop!], 'the usage record names the image');
    const deletedAt = Date.now();
    await core.deleteNamespacedPod({ name: 'dropper', namespace: 'default' });
    await waitFor(
      'the unused image pruned',
      async () => !(await cachedRefs(cacheDir)).includes(refs.drop!),
      20_000,
    );
    assert.ok(Date.now() - deletedAt >= 2500, 'pruned only once unused for the age');
    const have = await cachedRefs(cacheDir);
    for (const r of [refs.keep!, refs.once!, refs.private!]) assert.ok(have.includes(r), `${r} kept`);
    // What is left still pulls from the cache alone, and the dropped image's tree is gone.
    const cell = new ImageStore({
      root: path.join(work, 'cell2'),
      cacheDir,
      insecureRegistries: [open.host],
    });
    try {
      const kept = await cell.pull(refs.keep!, { pullPolicy: 'Never' });
      assert.equal(kept.source, 'cache');
      await assert.rejects(cell.pull(refs.drop!, { pullPolicy: 'Never' }), /NotFound|not/i);
    } finally {
      await cell.close();
    }
    // The tree goes right after the index entry: three remain (once, private, keep).
    await waitFor(
      'the pruned tree deleted',
      async () =>
        (await fs.readdir(path.join(cacheDir, 'rootfs'))).filter((t) => !t.startsWith('.')).length === 3,
      5000,
    );
  });

  it('when the leader stops, the other replica takes over and writes', async () => {
    const [id, p] = await leader();
    await p.stop();
    controllers.delete(id);
    const [next, np] = await leader();
    assert.notEqual(next, id);
    await createPod('late', refs.late!);
    await waitFor('the image cached by the new leader', async () =>
      (await cachedRefs(cacheDir)).includes(refs.late!),
    );
    assert.ok(np.stderr().includes('"image cached"'));
  });

  it('bad flags: one line naming the flag, non-zero exit', async () => {
    const tsx = path.join(process.cwd(), 'node_modules', '.bin', 'tsx');
    const cases: [string[], RegExp][] = [
      [['--lease-name=x', '--mount-path=/c', '--nfs-server=h', '--nfs-path=/p'], /--namespace is required/],
      [
        ['--namespace=n', '--lease-name=x', '--mount-path=/c'],
        /--nfs-server .*or --filestore-instance is required/,
      ],
      [['--namespace=n', '--lease-name=x', '--mount-path=/c', '--nfs-server=h'], /--nfs-path is required/],
      [
        ['--namespace=n', '--lease-name=x', '--mount-path=/c', '--filestore-instance=cache'],
        /--filestore-instance "cache"/,
      ],
      [
        [
          '--namespace=n',
          '--lease-name=x',
          '--mount-path=/c',
          '--nfs-server=h',
          '--nfs-path=/p',
          '--prune-after=soon',
        ],
        /--prune-after.*"soon" is not a duration/,
      ],
    ];
    const runs = cases.map(
      ([args]) =>
        new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
          const child = execFile(
            tsx,
            ['image-cache/main.ts', ...args],
            { timeout: 30_000 },
            (_err, stdout, stderr) => resolve({ status: child.exitCode, stdout, stderr }),
          );
        }),
    );
    const results = await Promise.all(runs);
    for (const [i, [, want]] of cases.entries()) {
      const r = results[i]!;
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, want);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.equal(r.stdout, '');
    }
  });
});
