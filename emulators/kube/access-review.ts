/**
 * Authorization answers for SubjectAccessReview (and the self/local variants): everything is
 * allowed unless a deny rule matches. Rules come from `--authz-config <file>` and can be replaced
 * at runtime through `/emulator/v1/authz/deny-rules`, so a test can take a permission away.
 */
import { badRequest, invalid, fieldError } from './api-errors.ts';
import { validateConfig } from '../../lib/config-file.ts';
import { isPlainObject } from './object.ts';
import type { UserInfo } from './tokens.ts';

/** One deny rule: every field given must match; `*` or an absent field matches anything. */
export interface DenyRule {
  user?: string;
  group?: string;
  verb?: string;
  apiGroup?: string;
  resource?: string;
  subresource?: string;
  namespace?: string;
  name?: string;
  /** For non-resource requests (`/healthz`, `/metrics`). */
  path?: string;
}

export interface AuthzConfig {
  deny: DenyRule[];
}

const ruleSchema = {
  type: 'object',
  additionalProperties: false,
  properties: Object.fromEntries(
    ['user', 'group', 'verb', 'apiGroup', 'resource', 'subresource', 'namespace', 'name', 'path'].map((k) => [
      k,
      { type: 'string' },
    ]),
  ),
};

export const authzConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { deny: { type: 'array', items: ruleSchema, default: [] } },
};

export interface AccessAttributes {
  user: string;
  groups: string[];
  verb: string;
  apiGroup: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
  path?: string;
}

const fieldMatches = (want: string | undefined, have: string) =>
  want === undefined || want === '*' || want === have;

export class AccessRules {
  private rules: DenyRule[];

  constructor(config: AuthzConfig = { deny: [] }) {
    this.rules = config.deny;
  }

  list(): DenyRule[] {
    return this.rules;
  }

  /** Replaces every rule; the body is validated like the config file (a 400 names the field). */
  replace(rules: unknown): void {
    try {
      this.rules = validateConfig<AuthzConfig>({ deny: rules }, authzConfigSchema, 'deny rules').deny;
    } catch (e) {
      throw badRequest((e as Error).message);
    }
  }

  evaluate(a: AccessAttributes): { allowed: boolean; denied?: boolean; reason: string } {
    const idx = this.rules.findIndex(
      (r) =>
        (r.user === undefined || r.user === '*' || r.user === a.user) &&
        (r.group === undefined || r.group === '*' || a.groups.includes(r.group)) &&
        fieldMatches(r.verb, a.verb) &&
        (a.path !== undefined
          ? fieldMatches(r.path, a.path) && r.resource === undefined
          : r.path === undefined &&
            fieldMatches(r.apiGroup, a.apiGroup) &&
            fieldMatches(r.resource, a.resource) &&
            fieldMatches(r.subresource, a.subresource) &&
            fieldMatches(r.namespace, a.namespace) &&
            fieldMatches(r.name, a.name)),
    );
    if (idx >= 0) return { allowed: false, denied: true, reason: `denied by emulator deny rule ${idx}` };
    return { allowed: true, reason: 'allowed: no emulator deny rule matches' };
  }
}

interface ReviewSpec {
  user?: string;
  groups?: string[];
  uid?: string;
  resourceAttributes?: Record<string, string>;
  nonResourceAttributes?: { path?: string; verb?: string };
}

/**
 * Answers a (Self|Local)SubjectAccessReview body: fills `status` on the object it returns.
 * `self` is the requesting user for the self variant; `namespace` is the URL's for the local one.
 */
export function reviewAccess(
  rules: AccessRules,
  kind: string,
  body: Record<string, unknown>,
  self?: UserInfo,
  namespace?: string,
): Record<string, unknown> {
  const spec = (isPlainObject(body.spec) ? body.spec : {}) as ReviewSpec;
  const ra = spec.resourceAttributes;
  const nra = spec.nonResourceAttributes;
  const causes = [];
  if (!ra && !nra) {
    causes.push(
      fieldError(
        'Invalid',
        'spec.resourceAttributes',
        'exactly one of nonResourceAttributes or resourceAttributes must be specified',
        null,
      ),
    );
  }
  if (kind === 'SubjectAccessReview' && !spec.user && !(spec.groups ?? []).length) {
    causes.push(fieldError('Invalid', 'spec.user', 'at least one of user or group must be specified', ''));
  }
  if (kind === 'LocalSubjectAccessReview' && ra && ra.namespace !== namespace) {
    causes.push(
      fieldError(
        'Invalid',
        'spec.resourceAttributes.namespace',
        'must match metadata.namespace',
        ra.namespace ?? '',
      ),
    );
  }
  if (causes.length) throw invalid(kind, 'authorization.k8s.io', '', causes);
  const user = self?.username ?? spec.user ?? '';
  const groups = self?.groups ?? spec.groups ?? [];
  const verdict = rules.evaluate(
    nra
      ? {
          user,
          groups,
          verb: nra.verb ?? '',
          apiGroup: '',
          resource: '',
          subresource: '',
          namespace: '',
          name: '',
          path: nra.path ?? '',
        }
      : {
          user,
          groups,
          verb: ra!.verb ?? '',
          apiGroup: ra!.group ?? '',
          resource: ra!.resource ?? '',
          subresource: ra!.subresource ?? '',
          namespace: ra!.namespace ?? '',
          name: ra!.name ?? '',
        },
  );
  return {
    ...body,
    metadata: { ...((body.metadata as object) ?? {}), creationTimestamp: null },
    status: verdict,
  };
}
