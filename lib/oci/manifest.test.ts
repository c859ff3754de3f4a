import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ImagePullError } from './errors.ts';
import {
  chainId,
  MediaType,
  parseImageConfig,
  parseManifest,
  selectPlatform,
  type Descriptor,
} from './manifest.ts';

const d = (c: string) => `sha256:${c.repeat(64)}`;
const unsupported = (re: RegExp) => (err: unknown) =>
  err instanceof ImagePullError && err.reason === 'UnsupportedMediaType' && re.test(err.message);

describe('manifests and image indexes', () => {
  it('reads OCI and Docker manifests, taking the media type from the body, the header or the shape', () => {
    const body = {
      schemaVersion: 2,
      config: { mediaType: MediaType.dockerConfig, digest: d('a'), size: 10 },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: d('b'), size: 20 }],
    };
    const fromHeader = parseManifest(
      Buffer.from(JSON.stringify(body)),
      `${MediaType.dockerManifest}; charset=utf-8`,
      'x',
    );
    assert.equal(fromHeader.mediaType, MediaType.dockerManifest);
    assert.equal(fromHeader.kind, 'manifest');
    const fromShape = parseManifest(
      Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] })),
      undefined,
      'x',
    );
    assert.equal(fromShape.kind, 'index');
  });

  it('refuses schema 1, unknown types, odd layers and malformed descriptors with UnsupportedMediaType', () => {
    assert.throws(
      () => parseManifest(Buffer.from('{"schemaVersion":1,"fsLayers":[]}'), undefined, 'img'),
      unsupported(/schema 1/),
    );
    assert.throws(
      () => parseManifest(Buffer.from('{"mediaType":"application/vnd.example+json"}'), undefined, 'img'),
      unsupported(/"application\/vnd.example\+json"/),
    );
    const odd = {
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: d('a'), size: 1 },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+lz4', digest: d('b'), size: 1 }],
    };
    assert.throws(
      () => parseManifest(Buffer.from(JSON.stringify(odd)), undefined, 'img'),
      unsupported(/tar\+lz4/),
    );
    const bad = {
      ...odd,
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: 'md5:x', size: 1 }],
    };
    assert.throws(
      () => parseManifest(Buffer.from(JSON.stringify(bad)), undefined, 'img'),
      unsupported(/not a sha256 digest/),
    );
    assert.throws(() => parseManifest(Buffer.from('not json'), undefined, 'img'), unsupported(/not JSON/));
    assert.throws(() => parseImageConfig(Buffer.from('{"rootfs":{}}'), 'img'), unsupported(/diff_ids/));
  });

  it('picks the platform: os and architecture, variant when both name one, no variant preferred', () => {
    const m = (architecture: string, variant?: string, digest = d('c')): Descriptor => ({
      mediaType: MediaType.ociManifest,
      digest,
      size: 1,
      platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
    });
    const list = [
      m('arm', 'v7', d('1')),
      m('arm64', 'v8', d('2')),
      m('amd64', 'v3', d('3')),
      m('amd64', undefined, d('4')),
    ];
    assert.equal(selectPlatform(list)?.digest, d('4'));
    assert.equal(selectPlatform(list, { os: 'linux', architecture: 'arm64' })?.digest, d('2'));
    assert.equal(selectPlatform(list, { os: 'linux', architecture: 'arm', variant: 'v6' }), undefined);
    assert.equal(selectPlatform(list, { os: 'windows', architecture: 'amd64' }), undefined);
  });

  it('computes the OCI ChainID', () => {
    const [a, b, c] = [d('1'), d('2'), d('3')];
    const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
    assert.equal(chainId([a]), a);
    assert.equal(chainId([a, b]), sha(`${a} ${b}`));
    assert.equal(chainId([a, b, c]), sha(`${sha(`${a} ${b}`)} ${c}`));
  });
});
