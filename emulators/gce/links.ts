import { randomBytes } from 'node:crypto';

/** Self links use the real service's base, so code that parses them behaves as in production. */
export const API_BASE = 'https://www.googleapis.com/compute/v1/';

export const zonePath = (p: string, z: string) => `projects/${p}/zones/${z}`;
export const regionPath = (p: string, r: string) => `projects/${p}/regions/${r}`;
export const globalPath = (p: string) => `projects/${p}/global`;
export const link = (path: string) => `${API_BASE}${path}`;

/**
 * Reads a resource reference as GCE accepts it: a full URL, `projects/P/zones/Z/<collection>/N`,
 * `zones/Z/<collection>/N` or `global/<collection>/N`. Returns the parts, or undefined when it is
 * not a reference to `collection` (a bare name is not a reference).
 */
export function parseRef(
  ref: string,
  collection: string,
): { project?: string; zone?: string; region?: string; name: string } | undefined {
  const path = ref.replace(/^https?:\/\/[^/]+\/compute\/(?:v1|beta|alpha)\//, '');
  const re = new RegExp(
    `^(?:projects/([^/]+)/)?(?:(?:zones/([^/]+))|(?:regions/([^/]+))|global)/${collection}/([^/]+)$`,
  );
  const m = re.exec(path);
  if (!m) return undefined;
  return { project: m[1], zone: m[2], region: m[3], name: m[4]! };
}

/** A 19-digit numeric id, as GCE gives every resource (int64 on the wire, so a string). */
export function newId(): string {
  return (
    BigInt('1000000000000000000') +
    (BigInt(`0x${randomBytes(8).toString('hex')}`) % BigInt('8000000000000000000'))
  ).toString();
}

/** An opaque fingerprint for optimistic concurrency (labels, metadata, firewalls). */
export function newFingerprint(): string {
  return randomBytes(8).toString('base64');
}

/** RFC 3339 with an explicit offset, as GCE writes timestamps. */
export function timestamp(d = new Date()): string {
  return d.toISOString().replace('Z', '+00:00');
}

/** GCE's resource name rule (RFC 1035 label, 1-63 chars). */
export const NAME_RE = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
/** GCE's wording when a name breaks that rule. */
export const NAME_RULE = "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'";
