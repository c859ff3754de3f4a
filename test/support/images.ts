import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import * as tar from 'tar-stream';

const execFileP = promisify(execFile);
const BUSYBOX = '/usr/bin/busybox';

/** Files by absolute path in the image; a string is written as UTF-8. */
export type FileMap = Record<string, string | Buffer>;

/**
 * A layer on top of the base layer:
 * - `{ files, remove }`: adds or replaces files and deletes paths (the layer carries `.wh.<name>` whiteouts);
 * - `{ opaqueDir, files }`: replaces the directory `opaqueDir` entirely (`.wh..wh..opq`) by `files`,
 *   given relative to it.
 */
export type LayerSpec = { files?: FileMap; remove?: string[] } | { opaqueDir: string; files: FileMap };

export interface ImageSpec {
  /** Repository name the image is pushed under by default. */
  name: string;
  tag: string;
  entrypoint?: string[];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  user?: string;
  labels?: Record<string, string>;
  exposedPorts?: string[];
  /** Extra files in the base layer (beside /bin/busybox and its applet links). */
  files?: FileMap;
  /** Layers after the base one, in order. */
  layers?: LayerSpec[];
  /** Adds /padding.bin of this many MiB of random (incompressible) bytes to the base layer. */
  paddingMB?: number;
  /** Config platform (default linux/amd64). */
  architecture?: string;
  os?: string;
}

let workRoot: string | undefined;
const built = new Map<string, Promise<string>>();
const layoutNames = new Map<string, string>();

function root(): string {
  if (!workRoot) {
    workRoot = mkdtempSync(path.join(os.tmpdir(), 'kip-test-images-'));
    const dir = workRoot;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return workRoot;
}

/** Removes every layout built so far (they are removed at exit anyway). */
export function removeBuiltImages(): void {
  if (workRoot) rmSync(workRoot, { recursive: true, force: true });
  workRoot = undefined;
  built.clear();
  layoutNames.clear();
}

async function run(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr || e.message}`, { cause: err });
  }
}

async function writeFiles(base: string, files: FileMap): Promise<void> {
  for (const [p, content] of Object.entries(files)) {
    const dest = path.join(base, p.replace(/^\/+/, ''));
    await fs.mkdir(path.dirname(dest), { recursive: true });
    await fs.rm(dest, { force: true, recursive: true });
    await fs.writeFile(dest, content, { mode: 0o755 });
  }
}

/** Unpacks `layout:tag`, lets `edit` change the rootfs, and repacks the difference as one new layer. */
async function editLayer(
  layout: string,
  tag: string,
  edit: (rootfs: string) => Promise<void>,
): Promise<void> {
  const bundle = await fs.mkdtemp(path.join(root(), 'bundle-'));
  await fs.rm(bundle, { recursive: true });
  try {
    await run('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle]);
    await edit(path.join(bundle, 'rootfs'));
    await run('umoci', ['repack', '--image', `${layout}:${tag}`, bundle]);
  } finally {
    await fs.rm(bundle, { recursive: true, force: true });
  }
}

async function baseFiles(rootfs: string, spec: ImageSpec): Promise<void> {
  for (const d of ['bin', 'dev', 'etc', 'proc', 'sys', 'root', 'var', 'tmp']) {
    await fs.mkdir(path.join(rootfs, d), { recursive: true });
  }
  await fs.chmod(path.join(rootfs, 'tmp'), 0o1777);
  await fs.copyFile(BUSYBOX, path.join(rootfs, 'bin', 'busybox'));
  await fs.chmod(path.join(rootfs, 'bin', 'busybox'), 0o755);
  const applets = (await run(BUSYBOX, ['--list'])).split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) await fs.symlink('busybox', path.join(rootfs, 'bin', a));
  await fs.writeFile(
    path.join(rootfs, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
  );
  await fs.writeFile(path.join(rootfs, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  if (spec.files) await writeFiles(rootfs, spec.files);
  if (spec.paddingMB) {
    const fh = await fs.open(path.join(rootfs, 'padding.bin'), 'w');
    try {
      for (let i = 0; i < spec.paddingMB; i++) await fh.write(randomBytes(1024 * 1024));
    } finally {
      await fh.close();
    }
  }
}

/** An uncompressed tar archive of the entries `fill` adds (tar-stream's pack, collected). */
export async function packTar(fill: (pack: tar.Pack) => void): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer));
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  fill(pack);
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** An uncompressed layer replacing directory `dir` by `files`: parents, the opaque marker, then the files. */
function opaqueLayerTar(dir: string, files: FileMap): Promise<Buffer> {
  return packTar((pack) => {
    const mtime = new Date();
    const rel = dir.replace(/^\/+|\/+$/g, '');
    const dirs = new Set<string>();
    const addDirs = (p: string) => {
      const parts = p.split('/');
      for (let i = 1; i <= parts.length; i++) {
        const d = parts.slice(0, i).join('/');
        if (d && !dirs.has(d)) {
          dirs.add(d);
          pack.entry({ name: `${d}/`, type: 'directory', mode: 0o755, mtime });
        }
      }
    };
    addDirs(rel);
    pack.entry({ name: `${rel}/.wh..wh..opq`, type: 'file', mode: 0o600, mtime }, '');
    for (const [name, content] of Object.entries(files)) {
      const full = `${rel}/${name.replace(/^\/+/, '')}`;
      addDirs(path.posix.dirname(full));
      pack.entry({ name: full, type: 'file', mode: 0o644, mtime }, Buffer.from(content));
    }
  });
}

/** Builds `spec` into `layout` under `tag`. */
async function buildInto(layout: string, tag: string, spec: ImageSpec): Promise<void> {
  await run('umoci', ['new', '--image', `${layout}:${tag}`]);
  await editLayer(layout, tag, (rootfs) => baseFiles(rootfs, spec));
  for (const layer of spec.layers ?? []) {
    if ('opaqueDir' in layer) {
      // Written by hand: umoci 0.4.7's `insert --opaque` leaves its tar without the end-of-archive blocks.
      const tarPath = path.join(await fs.mkdtemp(path.join(root(), 'opaque-')), 'layer.tar');
      await fs.writeFile(tarPath, await opaqueLayerTar(layer.opaqueDir, layer.files));
      await run('umoci', ['raw', 'add-layer', '--image', `${layout}:${tag}`, tarPath]);
      await fs.rm(path.dirname(tarPath), { recursive: true, force: true });
    } else {
      await editLayer(layout, tag, async (rootfs) => {
        for (const p of layer.remove ?? [])
          await fs.rm(path.join(rootfs, p.replace(/^\/+/, '')), { recursive: true });
        if (layer.files) await writeFiles(rootfs, layer.files);
      });
    }
  }
  const args = ['config', '--image', `${layout}:${tag}`, '--no-history'];
  for (const e of spec.entrypoint ?? []) args.push('--config.entrypoint', e);
  for (const c of spec.cmd ?? []) args.push('--config.cmd', c);
  for (const e of spec.env ?? []) args.push('--config.env', e);
  if (spec.workingDir) args.push('--config.workingdir', spec.workingDir);
  if (spec.user) args.push('--config.user', spec.user);
  for (const [k, v] of Object.entries(spec.labels ?? {})) args.push('--config.label', `${k}=${v}`);
  for (const p of spec.exposedPorts ?? []) args.push('--config.exposedports', p);
  args.push('--architecture', spec.architecture ?? 'amd64', '--os', spec.os ?? 'linux');
  await run('umoci', args);
  await run('umoci', ['gc', '--layout', layout]);
}

/**
 * Builds an image from /usr/bin/busybox (busybox-static) with umoci: a base layer holding
 * /bin/busybox, its applet links, /etc/passwd and `files`, then `layers`, then the config.
 * Identical specs are built once per process. Resolves to an OCI layout directory holding the
 * image under `spec.tag`.
 */
export function buildImage(spec: ImageSpec): Promise<string> {
  const key = JSON.stringify(spec, (_k, v: unknown) =>
    Buffer.isBuffer(v) ? createHash('sha256').update(v).digest('hex') : v,
  );
  let p = built.get(key);
  if (!p) {
    p = (async () => {
      const layout = path.join(await fs.mkdtemp(path.join(root(), 'layout-')), 'oci');
      await run('umoci', ['init', '--layout', layout]);
      await buildInto(layout, spec.tag, spec);
      layoutNames.set(layout, spec.name);
      return layout;
    })();
    built.set(key, p);
    p.catch(() => built.delete(key));
  }
  return p;
}

/**
 * Builds an OCI image index named `tag` over one image per platform (each built like
 * buildImage, architecture taken from the entry), in one layout.
 */
export async function buildIndex(opts: {
  name: string;
  tag: string;
  images: { os?: string; architecture: string; variant?: string; spec: Omit<ImageSpec, 'name' | 'tag'> }[];
}): Promise<string> {
  const layout = path.join(await fs.mkdtemp(path.join(root(), 'index-')), 'oci');
  await run('umoci', ['init', '--layout', layout]);
  const manifests = [];
  for (const [i, img] of opts.images.entries()) {
    const subTag = `${opts.tag}-${i}`;
    await buildInto(layout, subTag, {
      ...img.spec,
      name: opts.name,
      tag: subTag,
      architecture: img.architecture,
      os: img.os ?? 'linux',
    });
    const index = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')) as {
      manifests: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
    };
    const d = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === subTag)!;
    manifests.push({
      mediaType: d.mediaType,
      digest: d.digest,
      size: d.size,
      platform: {
        os: img.os ?? 'linux',
        architecture: img.architecture,
        ...(img.variant ? { variant: img.variant } : {}),
      },
    });
  }
  const body = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests }),
  );
  const hex = createHash('sha256').update(body).digest('hex');
  await fs.writeFile(path.join(layout, 'blobs', 'sha256', hex), body);
  const indexPath = path.join(layout, 'index.json');
  const index = JSON.parse(await fs.readFile(indexPath, 'utf8')) as { manifests: unknown[] };
  index.manifests.push({
    mediaType: 'application/vnd.oci.image.index.v1+json',
    digest: `sha256:${hex}`,
    size: body.length,
    annotations: { 'org.opencontainers.image.ref.name': opts.tag },
  });
  await fs.writeFile(indexPath, JSON.stringify(index));
  layoutNames.set(layout, opts.name);
  return layout;
}

export interface PushOptions {
  /** Repository to push to (default: the name the image was built with). */
  repository?: string;
  /** Tag in the registry (default: the layout tag). */
  destTag?: string;
  /** `oci` (default, as built) or `v2s2` (Docker v2 schema 2). */
  format?: 'oci' | 'v2s2';
  /** Recompress layers on the way (zstd needs the OCI format). */
  compression?: 'gzip' | 'zstd';
}

/**
 * Pushes `layout:tag` to `registryHost` with skopeo (TLS verification off, so plain http and
 * self-signed registries both work). Resolves to the pushed reference `host/repo:tag`.
 */
export async function pushImage(
  layout: string,
  tag: string,
  registryHost: string,
  creds?: { username: string; password: string },
  opts: PushOptions = {},
): Promise<string> {
  const repo = opts.repository ?? layoutNames.get(layout);
  if (!repo) throw new Error(`pushImage: no repository known for ${layout}; pass opts.repository`);
  const dest = `${registryHost}/${repo}:${opts.destTag ?? tag}`;
  const args = ['--insecure-policy', 'copy', '--quiet', '--all', '--dest-tls-verify=false'];
  if (creds) args.push('--dest-creds', `${creds.username}:${creds.password}`);
  if (opts.format) args.push('--format', opts.format);
  let src = `oci:${layout}:${tag}`;
  let recompressed: string | undefined;
  if (opts.compression) {
    // skopeo 1.9 keeps the source compression when pushing; recompressing into a layout first works.
    recompressed = await fs.mkdtemp(path.join(root(), 'recompressed-'));
    await run('skopeo', [
      '--insecure-policy',
      'copy',
      '--quiet',
      '--all',
      '--dest-compress-format',
      opts.compression,
      src,
      `oci:${recompressed}:${tag}`,
    ]);
    src = `oci:${recompressed}:${tag}`;
  }
  args.push(src, `docker://${dest}`);
  try {
    await run('skopeo', args);
  } finally {
    if (recompressed) await fs.rm(recompressed, { recursive: true, force: true });
  }
  return dest;
}
