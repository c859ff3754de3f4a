import { ImagePullError } from './errors.ts';

/** An image reference split into its parts, with Docker's defaults applied. */
export interface ImageReference {
  /** Registry host (and port), e.g. `docker.io`, `gcr.io`, `127.0.0.1:5000`. */
  registry: string;
  /** Repository path inside the registry, e.g. `library/busybox`. */
  repository: string;
  /** Tag, when the reference has one (`latest` when it has neither tag nor digest). */
  tag?: string;
  /** `sha256:<hex>` when the reference pins a digest. */
  digest?: string;
  /** The fully qualified form: `docker.io/library/busybox:latest`, `host/repo@sha256:...`. */
  normalized: string;
  /** `<registry>/<repository>`, the prefix of the kubelet's imageID. */
  name: string;
}

export const DOCKER_HUB = 'docker.io';

// Grammar of distribution/reference, restricted to what registries accept.
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(
  `^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`,
);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const SHA256_RE = /^sha256:[a-f0-9]{64}$/;

function invalid(ref: string, why: string): ImagePullError {
  return new ImagePullError(
    'InvalidReference',
    `Failed to pull image "${ref}": invalid image reference: ${why}; use the form [registry/]repository[:tag][@sha256:digest]`,
  );
}

/**
 * Parses an image reference the way Docker and the kubelet do: a first path component with a
 * dot or a colon, or `localhost`, is the registry; otherwise the image is on Docker Hub, where a
 * one-component name lives under `library/`. Without tag or digest the tag is `latest`.
 * Only sha256 digests are accepted. Throws ImagePullError('InvalidReference').
 */
export function parseReference(ref: string): ImageReference {
  if (typeof ref !== 'string' || ref.trim() === '') throw invalid(String(ref), 'the image name is empty');
  if (ref !== ref.trim() || /\s/.test(ref)) throw invalid(ref, 'it contains whitespace');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!SHA256_RE.test(digest)) {
      throw invalid(ref, `the digest "${digest}" is not sha256:<64 lowercase hex digits>`);
    }
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) {
      throw invalid(
        ref,
        `the tag "${tag}" must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'`,
      );
    }
  }
  if (rest === '') throw invalid(ref, 'the repository name is empty');
  const parts = rest.split('/');
  let registry = DOCKER_HUB;
  const first = parts[0]!;
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    if (!DOMAIN_RE.test(first)) throw invalid(ref, `"${first}" is not a valid registry host`);
    registry = first;
    parts.shift();
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  for (const p of parts) {
    if (!PATH_COMPONENT_RE.test(p)) {
      const why =
        p.toLowerCase() !== p
          ? 'must be lowercase'
          : 'may hold only lowercase letters, digits and separators';
      throw invalid(ref, `the repository path component "${p}" ${why}`);
    }
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  const repository = parts.join('/');
  if (registry.length + 1 + repository.length > 255)
    throw invalid(ref, 'the name is longer than 255 characters');
  if (!tag && !digest) tag = 'latest';
  const name = `${registry}/${repository}`;
  const normalized = `${name}${tag ? `:${tag}` : ''}${digest ? `@${digest}` : ''}`;
  return { registry, repository, tag, digest, normalized, name };
}

/** The host (and port) to contact for `registry`: Docker Hub's API lives on registry-1.docker.io. */
export function registryEndpoint(registry: string): string {
  return registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
}
