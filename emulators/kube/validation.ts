/**
 * The validation the real API server does before storing an object, for the fields users get
 * wrong most: names, labels, pod containers, immutable pod spec, service ports, immutable config.
 * Every problem is a field cause so the 422 names the field.
 */
import { fieldError, type StatusCause } from './api-errors.ts';
import { deepEqual, getPath, isPlainObject, type KObject } from './object.ts';

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;

export type NameRule = 'subdomain' | 'label' | 'dns1035' | 'path';

function nameProblem(name: string, rule: NameRule): string | undefined {
  switch (rule) {
    case 'subdomain':
      if (name.length > 253) return 'must be no more than 253 characters';
      return DNS1123_SUBDOMAIN.test(name)
        ? undefined
        : "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    case 'label':
      if (name.length > 63) return 'must be no more than 63 characters';
      return DNS1123_LABEL.test(name)
        ? undefined
        : "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    case 'dns1035':
      if (name.length > 63) return 'must be no more than 63 characters';
      return DNS1035_LABEL.test(name)
        ? undefined
        : "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
    case 'path':
      if (name === '.' || name === '..') return `may not be '${name}'`;
      return /[/%]/.test(name) ? "may not contain '/' or '%'" : undefined;
  }
}

function qualifiedNameProblem(key: string): string | undefined {
  const slash = key.indexOf('/');
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  const prefix = slash >= 0 ? key.slice(0, slash) : '';
  if (slash >= 0 && (prefix === '' || nameProblem(prefix, 'subdomain')))
    return 'prefix part must be a lowercase RFC 1123 subdomain';
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
  }
  return undefined;
}

/** Name, labels and annotations: the ObjectMeta checks every kind shares. */
export function validateMeta(obj: KObject, rule: NameRule): StatusCause[] {
  const causes: StatusCause[] = [];
  const meta = obj.metadata;
  if (!meta.name) {
    causes.push(fieldError('Required', 'metadata.name', 'name or generateName is required'));
  } else {
    const p = nameProblem(meta.name, rule);
    if (p) causes.push(fieldError('Invalid', 'metadata.name', p, meta.name));
  }
  for (const [k, v] of Object.entries(meta.labels ?? {})) {
    const kp = qualifiedNameProblem(k);
    if (kp) causes.push(fieldError('Invalid', 'metadata.labels', kp, k));
    if (v.length > 63 || !LABEL_VALUE.test(v)) {
      causes.push(
        fieldError(
          'Invalid',
          'metadata.labels',
          "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
          v,
        ),
      );
    }
  }
  for (const k of Object.keys(meta.annotations ?? {})) {
    const kp = qualifiedNameProblem(k);
    if (kp) causes.push(fieldError('Invalid', 'metadata.annotations', kp, k));
  }
  return causes;
}

function validateContainers(list: unknown, field: string, required: boolean): StatusCause[] {
  const causes: StatusCause[] = [];
  if (list === undefined || (Array.isArray(list) && list.length === 0)) {
    if (required) causes.push(fieldError('Required', field, ''));
    return causes;
  }
  if (!Array.isArray(list)) return [fieldError('Invalid', field, 'must be a list')];
  const seen = new Set<string>();
  list.forEach((c: unknown, i) => {
    const f = `${field}[${i}]`;
    if (!isPlainObject(c)) {
      causes.push(fieldError('Invalid', f, 'must be an object'));
      return;
    }
    if (typeof c.name !== 'string' || c.name === '') causes.push(fieldError('Required', `${f}.name`, ''));
    else {
      const p = nameProblem(c.name, 'label');
      if (p) causes.push(fieldError('Invalid', `${f}.name`, p, c.name));
      if (seen.has(c.name)) causes.push(fieldError('Duplicate', `${f}.name`, '', c.name));
      seen.add(c.name);
    }
    if (typeof c.image !== 'string' || c.image.trim() === '')
      causes.push(fieldError('Required', `${f}.image`, ''));
  });
  return causes;
}

function validatePodSpec(spec: unknown, field: string): StatusCause[] {
  if (!isPlainObject(spec)) return [fieldError('Required', `${field}.containers`, '')];
  return [
    ...validateContainers(spec.containers, `${field}.containers`, true),
    ...validateContainers(spec.initContainers, `${field}.initContainers`, false),
  ];
}

export function validatePod(pod: KObject, old?: KObject): StatusCause[] {
  const causes = validatePodSpec(pod.spec, 'spec');
  if (old && causes.length === 0) {
    // Pod specs are immutable except for a few fields, exactly as upstream enforces.
    const mask = (spec: unknown, from: unknown) => {
      const s = structuredClone(spec) as Record<string, unknown>;
      const f = from as Record<string, unknown>;
      for (const key of ['containers', 'initContainers']) {
        const a = s[key] as Record<string, unknown>[] | undefined;
        const b = f[key] as Record<string, unknown>[] | undefined;
        a?.forEach((c, i) => {
          if (b?.[i]) c.image = b[i]!.image;
        });
      }
      s.activeDeadlineSeconds = f.activeDeadlineSeconds;
      s.tolerations = f.tolerations;
      s.terminationGracePeriodSeconds = f.terminationGracePeriodSeconds;
      return s;
    };
    const oldSpec = (old.spec ?? {}) as Record<string, unknown>;
    const newSpec = (pod.spec ?? {}) as Record<string, unknown>;
    const oldTol = (oldSpec.tolerations ?? []) as unknown[];
    const newTol = (newSpec.tolerations ?? []) as unknown[];
    const tolerationsOk = oldTol.every((t) => newTol.some((n) => deepEqual(n, t)));
    if (!deepEqual(mask(newSpec, oldSpec), oldSpec) || !tolerationsOk) {
      causes.push(
        fieldError(
          'Forbidden',
          'spec',
          'pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)',
        ),
      );
    }
  }
  return causes;
}

export function validateWorkload(obj: KObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const selector = getPath(obj, 'spec.selector');
  if (!isPlainObject(selector)) causes.push(fieldError('Required', 'spec.selector', ''));
  const replicas = getPath(obj, 'spec.replicas');
  if (replicas !== undefined && (typeof replicas !== 'number' || replicas < 0)) {
    causes.push(fieldError('Invalid', 'spec.replicas', 'must be greater than or equal to 0', replicas));
  }
  const tmplLabels = (getPath(obj, 'spec.template.metadata.labels') ?? {}) as Record<string, string>;
  const matchLabels = (getPath(obj, 'spec.selector.matchLabels') ?? {}) as Record<string, string>;
  if (isPlainObject(selector) && Object.entries(matchLabels).some(([k, v]) => tmplLabels[k] !== v)) {
    causes.push(
      fieldError(
        'Invalid',
        'spec.template.metadata.labels',
        '`selector` does not match template `labels`',
        tmplLabels,
      ),
    );
  }
  causes.push(...validatePodSpec(getPath(obj, 'spec.template.spec'), 'spec.template.spec'));
  return causes;
}

export function validateConfigData(obj: KObject, old?: KObject): StatusCause[] {
  const causes: StatusCause[] = [];
  for (const field of ['data', 'binaryData', 'stringData']) {
    const data = obj[field];
    if (data === undefined) continue;
    if (!isPlainObject(data)) {
      causes.push(fieldError('Invalid', field, 'must be a map of strings'));
      continue;
    }
    for (const [k, v] of Object.entries(data)) {
      if (!CONFIG_KEY.test(k)) {
        causes.push(
          fieldError(
            'Invalid',
            `${field}[${k}]`,
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            k,
          ),
        );
      }
      if (typeof v !== 'string') causes.push(fieldError('Invalid', `${field}[${k}]`, 'must be a string', v));
      else if (
        field !== 'stringData' &&
        (field === 'binaryData' || obj.kind === 'Secret') &&
        !/^[A-Za-z0-9+/]*={0,2}$/.test(v)
      ) {
        causes.push(fieldError('Invalid', `${field}[${k}]`, 'must be base64 encoded', v));
      }
    }
  }
  if (old?.immutable === true) {
    if (!deepEqual(old.data, obj.data) || !deepEqual(old.binaryData, obj.binaryData)) {
      causes.push(fieldError('Forbidden', 'data', 'field is immutable when `immutable` is set'));
    }
    if (obj.immutable !== true)
      causes.push(fieldError('Forbidden', 'immutable', 'field is immutable when `immutable` is set'));
  }
  if (old && obj.kind === 'Secret' && old.type !== obj.type)
    causes.push(fieldError('Invalid', 'type', 'field is immutable', obj.type));
  return causes;
}

export function validateService(svc: KObject, old?: KObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const ports = getPath(svc, 'spec.ports');
  const type = getPath(svc, 'spec.type');
  if (
    type !== 'ExternalName' &&
    (!Array.isArray(ports) || ports.length === 0) &&
    getPath(svc, 'spec.clusterIP') !== 'None'
  ) {
    causes.push(fieldError('Required', 'spec.ports', ''));
  }
  if (Array.isArray(ports)) {
    ports.forEach((p: unknown, i) => {
      const port = isPlainObject(p) ? p.port : undefined;
      if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
        causes.push(
          fieldError('Invalid', `spec.ports[${i}].port`, 'must be between 1 and 65535, inclusive', port),
        );
      }
    });
  }
  if (
    old &&
    getPath(old, 'spec.clusterIP') &&
    getPath(svc, 'spec.clusterIP') !== getPath(old, 'spec.clusterIP')
  ) {
    causes.push(
      fieldError('Invalid', 'spec.clusterIP', 'field is immutable', getPath(svc, 'spec.clusterIP')),
    );
  }
  return causes;
}

export function validateNode(node: KObject): StatusCause[] {
  const causes: StatusCause[] = [];
  const taints = getPath(node, 'spec.taints');
  if (Array.isArray(taints)) {
    taints.forEach((t: unknown, i) => {
      const effect = isPlainObject(t) ? t.effect : undefined;
      if (!isPlainObject(t) || typeof t.key !== 'string' || t.key === '')
        causes.push(fieldError('Required', `spec.taints[${i}].key`, ''));
      if (!['NoSchedule', 'PreferNoSchedule', 'NoExecute'].includes(String(effect))) {
        causes.push(
          fieldError(
            'NotSupported',
            `spec.taints[${i}].effect`,
            'supported values: "NoSchedule", "PreferNoSchedule", "NoExecute"',
            effect,
          ),
        );
      }
    });
  }
  return causes;
}

export function validateLease(lease: KObject): StatusCause[] {
  const d = getPath(lease, 'spec.leaseDurationSeconds');
  if (d !== undefined && (typeof d !== 'number' || d <= 0)) {
    return [fieldError('Invalid', 'spec.leaseDurationSeconds', 'must be greater than 0', d)];
  }
  return [];
}
