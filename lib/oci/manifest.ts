import { createHash } from 'node:crypto';
import { ImagePullError } from './errors.ts';

/** The media types this client reads. */
export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What a manifest request accepts, best first. */
export const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.dockerManifest,
].join(', ');

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  urls?: string[];
  annotations?: Record<string, string>;
}

export type ParsedManifest =
  | { kind: 'index'; mediaType: string; manifests: Descriptor[] }
  | { kind: 'manifest'; mediaType: string; config: Descriptor; layers: Descriptor[] };

/** The part of an image config the kubelet runs containers from (OCI image-spec `config`). */
export interface ImageConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

/** The image config blob: platform, runtime config, and the uncompressed layer digests. */
export interface ImageConfigBlob {
  architecture?: string;
  os?: string;
  config?: ImageConfig;
  rootfs: { type: string; diff_ids: string[] };
}

export const SHA256_DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function sha256Digest(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function unsupported(image: string, what: string, mediaType: string): ImagePullError {
  return new ImagePullError(
    'UnsupportedMediaType',
    `Failed to pull image "${image}": the ${what} has media type "${mediaType}", which this client does not read; push the image as an OCI or Docker v2 schema 2 image`,
  );
}

function malformed(image: string, what: string, why: string): ImagePullError {
  return new ImagePullError(
    'UnsupportedMediaType',
    `Failed to pull image "${image}": the ${what} is malformed (${why}); push the image again`,
  );
}

function parseDescriptor(image: string, what: string, d: unknown): Descriptor {
  if (!d || typeof d !== 'object') throw malformed(image, what, 'a descriptor is not an object');
  const o = d as Record<string, unknown>;
  if (typeof o.digest !== 'string' || !SHA256_DIGEST_RE.test(o.digest)) {
    throw malformed(image, what, `descriptor digest ${JSON.stringify(o.digest)} is not a sha256 digest`);
  }
  if (typeof o.size !== 'number' || !Number.isSafeInteger(o.size) || o.size < 0) {
    throw malformed(image, what, `descriptor ${o.digest} has no valid size`);
  }
  return {
    mediaType: typeof o.mediaType === 'string' ? o.mediaType : '',
    digest: o.digest,
    size: o.size,
    platform: o.platform as Platform | undefined,
    urls: Array.isArray(o.urls) ? (o.urls as string[]) : undefined,
    annotations: o.annotations as Record<string, string> | undefined,
  };
}

/**
 * Layer media types this client unpacks (gzip, zstd or plain tar). Only the type is checked here:
 * applyLayer takes the compression from the layer's first bytes.
 */
const LAYER_MEDIA_TYPES = new Set([
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.docker.image.rootfs.diff.tar',
]);

/**
 * Reads a manifest or an image index. The media type comes from the document, else from the
 * Content-Type the registry sent, else from its shape. Docker schema 1 and anything else unknown
 * is refused with UnsupportedMediaType.
 */
export function parseManifest(body: Buffer, contentType: string | undefined, image: string): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    throw malformed(image, 'manifest', `not JSON: ${(err as Error).message}`);
  }
  if (!doc || typeof doc !== 'object') throw malformed(image, 'manifest', 'not a JSON object');
  const header = contentType?.split(';')[0]?.trim();
  let mediaType = typeof doc.mediaType === 'string' ? doc.mediaType : header || '';
  if (
    doc.schemaVersion === 1 ||
    mediaType === MediaType.dockerSchema1 ||
    mediaType === MediaType.dockerSchema1Signed
  ) {
    throw new ImagePullError(
      'UnsupportedMediaType',
      `Failed to pull image "${image}": the registry serves it as a Docker schema 1 manifest, which is deprecated and not supported; push the image again with a current client`,
    );
  }
  if (mediaType === '' || mediaType === 'application/json' || mediaType === 'application/octet-stream') {
    mediaType = Array.isArray(doc.manifests) ? MediaType.ociIndex : MediaType.ociManifest;
  }
  if (mediaType === MediaType.ociIndex || mediaType === MediaType.dockerManifestList) {
    if (!Array.isArray(doc.manifests)) throw malformed(image, 'image index', 'no manifests list');
    return {
      kind: 'index',
      mediaType,
      manifests: doc.manifests.map((d) => parseDescriptor(image, 'image index', d)),
    };
  }
  if (mediaType === MediaType.ociManifest || mediaType === MediaType.dockerManifest) {
    if (!Array.isArray(doc.layers)) throw malformed(image, 'manifest', 'no layers list');
    const config = parseDescriptor(image, 'manifest', doc.config);
    if (config.mediaType !== MediaType.ociConfig && config.mediaType !== MediaType.dockerConfig) {
      throw unsupported(image, 'image config', config.mediaType || '(none)');
    }
    const layers = doc.layers.map((d) => parseDescriptor(image, 'manifest', d));
    for (const l of layers) {
      if (!LAYER_MEDIA_TYPES.has(l.mediaType)) throw unsupported(image, `layer ${l.digest}`, l.mediaType);
    }
    return { kind: 'manifest', mediaType, config, layers };
  }
  throw unsupported(image, 'manifest', mediaType);
}

/**
 * Picks the entry for `want` from an image index: same os and architecture, and the same
 * variant when both name one; an entry without a variant is preferred for amd64.
 */
export function selectPlatform(
  manifests: Descriptor[],
  want: Platform = { os: 'linux', architecture: 'amd64' },
): Descriptor | undefined {
  const candidates = manifests.filter(
    (m) =>
      m.platform?.os === want.os &&
      m.platform?.architecture === want.architecture &&
      (!want.variant || !m.platform.variant || m.platform.variant === want.variant),
  );
  return candidates.find((m) => !m.platform?.variant) ?? candidates[0];
}

/** Reads the image config blob, checking the fields the store relies on. */
export function parseImageConfig(body: Buffer, image: string): ImageConfigBlob {
  let doc: ImageConfigBlob;
  try {
    doc = JSON.parse(body.toString('utf8')) as ImageConfigBlob;
  } catch (err) {
    throw malformed(image, 'image config', `not JSON: ${(err as Error).message}`);
  }
  const ids = doc?.rootfs?.diff_ids;
  if (!Array.isArray(ids) || ids.some((d) => typeof d !== 'string' || !SHA256_DIGEST_RE.test(d))) {
    throw malformed(image, 'image config', 'rootfs.diff_ids is not a list of sha256 digests');
  }
  return doc;
}

/** The OCI ChainID of a layer stack: it names the filesystem the layers produce, whatever their compression. */
export function chainId(diffIds: string[]): string {
  let chain = diffIds[0] ?? sha256Digest('');
  for (const d of diffIds.slice(1)) chain = sha256Digest(`${chain} ${d}`);
  return chain;
}
