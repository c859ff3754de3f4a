import { memoryBytes, QuantityError } from '../../lib/quantity.ts';
import type { CellPlacement } from './cloud-provider.ts';
import { InvalidRequestError } from './errors.ts';

/** Kip's pod annotations, kept from Kip on AWS with their GCE meaning. */
export const ANNOTATIONS = {
  /** An exact machine type (`n2-standard-4`, `e2-custom-4-8192`) or a glob (`n2-*`). */
  instanceType: 'pod.elotl.co/instance-type',
  /** `spot` or `on-demand`. */
  launchType: 'pod.elotl.co/launch-type',
  /** `true`: no external IP on the VM; `false`: an ephemeral external IP. */
  privateIpOnly: 'pod.elotl.co/private-ip-only',
  /** Boot disk size as a quantity (`20Gi`, `50G`); GCE's minimum of 10 GB applies. */
  volumeSize: 'pod.elotl.co/volume-size',
  /** Comma-separated GCE network tags, so firewall rules can target the pod's VM. */
  securityGroups: 'pod.elotl.co/security-groups',
  /** The e-mail of the service account the VM runs as. */
  instanceProfile: 'pod.elotl.co/instance-profile',
} as const;

export interface ParsedAnnotations {
  instanceType?: string;
  spot: boolean;
  placement: CellPlacement;
}

/** GCE's rule for network tags and resource names: lower case, digits, dashes; 1-63 characters. */
export const GCE_NAME = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
const GLOB = /^[a-z0-9*?][-a-z0-9*?]{0,62}$/;
const EMAIL = /^[a-z0-9][-a-z0-9._+]*@[a-z0-9][-a-z0-9.]*\.[a-z]{2,}$/i;
const MIN_DISK_GB = 10;
const MAX_DISK_GB = 65536;

function bad(key: string, value: string, why: string): InvalidRequestError {
  return new InvalidRequestError(`annotation ${key}: "${value}" ${why}`, key);
}

function bool(key: string, value: string): boolean {
  const v = value.trim().toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  throw bad(key, value, 'must be true or false');
}

/**
 * Reads Kip's annotations from a pod's metadata.annotations. Unknown annotations are ignored;
 * a known one with a bad value throws InvalidRequestError naming the annotation.
 */
export function parseAnnotations(annotations: Record<string, string> | undefined): ParsedAnnotations {
  const a = annotations ?? {};
  const out: ParsedAnnotations = { spot: false, placement: { networkTags: [] } };

  const type = a[ANNOTATIONS.instanceType]?.trim();
  if (type !== undefined && type !== '') {
    if (!GLOB.test(type))
      throw bad(
        ANNOTATIONS.instanceType,
        type,
        'is not a machine type name or glob (e.g. n2-standard-4, e2-*)',
      );
    out.instanceType = type;
  }

  const launch = a[ANNOTATIONS.launchType];
  if (launch !== undefined) {
    const v = launch.trim().toLowerCase();
    if (v === 'spot') out.spot = true;
    else if (v !== 'on-demand' && v !== 'ondemand' && v !== '') {
      throw bad(ANNOTATIONS.launchType, launch, 'must be spot or on-demand');
    }
  }

  const priv = a[ANNOTATIONS.privateIpOnly];
  if (priv !== undefined) out.placement.privateIpOnly = bool(ANNOTATIONS.privateIpOnly, priv);

  const vol = a[ANNOTATIONS.volumeSize];
  if (vol !== undefined) {
    let bytes: number;
    try {
      bytes = memoryBytes(vol);
    } catch (e) {
      if (e instanceof QuantityError)
        throw bad(ANNOTATIONS.volumeSize, vol, 'is not a size (e.g. 20Gi, 50G)');
      throw e;
    }
    const gb = Math.max(MIN_DISK_GB, Math.ceil(bytes / 2 ** 30));
    if (gb > MAX_DISK_GB)
      throw bad(ANNOTATIONS.volumeSize, vol, `is over GCE's ${MAX_DISK_GB} GB boot disk limit`);
    out.placement.volumeSizeGb = gb;
  }

  const tags = a[ANNOTATIONS.securityGroups];
  if (tags !== undefined) {
    const list = tags
      .split(/[,\s]+/)
      .map((t) => t.trim())
      .filter(Boolean);
    for (const t of list) {
      if (!GCE_NAME.test(t)) {
        throw bad(
          ANNOTATIONS.securityGroups,
          tags,
          `contains "${t}", not a GCE network tag (lower case, digits, dashes; 1-63 characters)`,
        );
      }
    }
    if (list.length > 60) throw bad(ANNOTATIONS.securityGroups, tags, 'has more than 60 tags');
    out.placement.networkTags = [...new Set(list)];
  }

  const profile = a[ANNOTATIONS.instanceProfile]?.trim();
  if (profile !== undefined && profile !== '') {
    if (!EMAIL.test(profile))
      throw bad(ANNOTATIONS.instanceProfile, profile, 'is not a service account e-mail');
    out.placement.serviceAccount = profile;
  }
  return out;
}

/** Parses `k=v` pairs from the command line into an annotation map; throws on a pair without `=`. */
export function annotationPairs(pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    if (i <= 0) throw new InvalidRequestError(`annotation "${p}" must be key=value`, 'annotation');
    out[p.slice(0, i).trim()] = p.slice(i + 1);
  }
  return out;
}
