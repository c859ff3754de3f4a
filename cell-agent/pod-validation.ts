import { ConfigError, validateConfig } from '../lib/config-file.ts';
import type { PutPodRequest } from '../lib/cell-agent-api.ts';
import { parseQuantity } from '../lib/quantity.ts';
import { SUPPORTED_VOLUME_KINDS } from './volumes.ts';

/** The PUT body is not a pod the agent can run; `field` names the offending field. */
export class PodValidationError extends Error {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
    this.name = 'PodValidationError';
  }
}

const str = { type: 'string' };
const int = { type: 'integer' };
const intOrString = { type: ['integer', 'string'] };
const strArray = { type: 'array', items: str };
const quantity = { type: ['string', 'number'] };
const probe = {
  type: 'object',
  properties: {
    exec: { type: 'object', required: ['command'], properties: { command: strArray } },
    httpGet: {
      type: 'object',
      required: ['port'],
      properties: {
        path: str,
        port: intOrString,
        host: str,
        scheme: { enum: ['HTTP', 'HTTPS'] },
        httpHeaders: {
          type: 'array',
          items: { type: 'object', required: ['name', 'value'], properties: { name: str, value: str } },
        },
      },
    },
    tcpSocket: { type: 'object', required: ['port'], properties: { port: intOrString, host: str } },
    initialDelaySeconds: { type: 'integer', minimum: 0 },
    periodSeconds: { type: 'integer', minimum: 1 },
    timeoutSeconds: { type: 'integer', minimum: 1 },
    successThreshold: { type: 'integer', minimum: 1 },
    failureThreshold: { type: 'integer', minimum: 1 },
    terminationGracePeriodSeconds: { type: 'integer', minimum: 0 },
  },
};
const container = {
  type: 'object',
  required: ['name', 'image'],
  properties: {
    name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' },
    image: { type: 'string', minLength: 1 },
    command: strArray,
    args: strArray,
    workingDir: str,
    env: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name'],
        properties: {
          name: { type: 'string', minLength: 1 },
          value: str,
          valueFrom: {
            type: 'object',
            properties: {
              fieldRef: { type: 'object', required: ['fieldPath'], properties: { fieldPath: str } },
              resourceFieldRef: {
                type: 'object',
                required: ['resource'],
                properties: { resource: str, containerName: str, divisor: quantity },
              },
            },
          },
        },
      },
    },
    ports: {
      type: 'array',
      items: {
        type: 'object',
        required: ['containerPort'],
        properties: { containerPort: { type: 'integer', minimum: 1, maximum: 65535 }, name: str },
      },
    },
    resources: {
      type: 'object',
      properties: {
        limits: { type: 'object', additionalProperties: quantity },
        requests: { type: 'object', additionalProperties: quantity },
      },
    },
    volumeMounts: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name', 'mountPath'],
        properties: {
          name: str,
          mountPath: { type: 'string', pattern: '^/' },
          readOnly: { type: 'boolean' },
          subPath: str,
        },
      },
    },
    livenessProbe: probe,
    readinessProbe: probe,
    startupProbe: probe,
    terminationMessagePath: { type: 'string', pattern: '^/' },
    terminationMessagePolicy: { enum: ['File', 'FallbackToLogsOnError'] },
    imagePullPolicy: { enum: ['Always', 'IfNotPresent', 'Never'] },
    securityContext: {
      type: 'object',
      properties: {
        runAsUser: { type: 'integer', minimum: 0 },
        runAsGroup: { type: 'integer', minimum: 0 },
        privileged: { type: 'boolean' },
        readOnlyRootFilesystem: { type: 'boolean' },
        allowPrivilegeEscalation: { type: 'boolean' },
        capabilities: { type: 'object', properties: { add: strArray, drop: strArray } },
      },
    },
  },
};
const requestSchema = {
  type: 'object',
  required: ['pod'],
  additionalProperties: false,
  properties: {
    pod: {
      type: 'object',
      required: ['metadata', 'spec'],
      properties: {
        metadata: {
          type: 'object',
          required: ['name', 'uid'],
          properties: {
            name: { type: 'string', minLength: 1 },
            namespace: str,
            uid: { type: 'string', pattern: '^[A-Za-z0-9-]{8,}$' },
          },
        },
        spec: {
          type: 'object',
          required: ['containers'],
          properties: {
            containers: { type: 'array', minItems: 1, items: container },
            initContainers: { type: 'array', items: container },
            restartPolicy: { enum: ['Always', 'OnFailure', 'Never'] },
            terminationGracePeriodSeconds: { type: 'integer', minimum: 0 },
            activeDeadlineSeconds: { type: 'integer', minimum: 1 },
            hostname: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' },
            subdomain: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' },
            dnsPolicy: str,
            volumes: {
              type: 'array',
              items: {
                type: 'object',
                required: ['name'],
                properties: { name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' } },
              },
            },
            securityContext: {
              type: 'object',
              properties: {
                runAsUser: int,
                runAsGroup: int,
                fsGroup: int,
                supplementalGroups: { type: 'array', items: int },
              },
            },
            hostAliases: {
              type: 'array',
              items: { type: 'object', required: ['ip'], properties: { ip: str, hostnames: strArray } },
            },
          },
        },
      },
    },
    volumes: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        required: ['files'],
        properties: {
          files: {
            type: 'object',
            additionalProperties: { type: 'string', pattern: '^[A-Za-z0-9+/=\\s]*$' },
          },
        },
      },
    },
    imagePullSecrets: { type: 'array', items: { type: ['string', 'object'] } },
    dns: {
      type: 'object',
      required: ['nameservers'],
      properties: {
        nameservers: strArray,
        searches: strArray,
        options: {
          type: 'array',
          items: { type: 'object', required: ['name'], properties: { name: str, value: str } },
        },
      },
    },
    hostname: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$' },
  },
};

const FIELD_PATHS =
  /^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['.+'\]|spec\.(nodeName|serviceAccountName)|status\.(podIP|podIPs|hostIP|hostIPs))$/;

function safeRelative(p: string): boolean {
  return !p.startsWith('/') && !p.split('/').includes('..');
}

/** Validates a PUT /v1/pod body; throws PodValidationError naming the first bad field. */
export function validatePutPod(body: unknown): PutPodRequest {
  let req: PutPodRequest;
  try {
    req = validateConfig<PutPodRequest>(body, requestSchema, 'body');
  } catch (e) {
    if (e instanceof ConfigError)
      throw new PodValidationError(e.message.replace(/^body: /, ''), e.field ?? '(root)');
    throw e;
  }
  const spec = req.pod.spec!;
  const fail = (field: string, msg: string): never => {
    throw new PodValidationError(`field "${field}" ${msg}`, field);
  };
  const volumeNames = new Set<string>();
  (spec.volumes ?? []).forEach((v, i) => {
    const f = `pod.spec.volumes[${i}]`;
    if (volumeNames.has(v.name)) fail(`${f}.name`, `duplicates volume "${v.name}"`);
    volumeNames.add(v.name);
    const kinds = Object.keys(v).filter((k) => k !== 'name');
    if (kinds.length !== 1) fail(f, 'must set exactly one volume source');
    if (!(SUPPORTED_VOLUME_KINDS as readonly string[]).includes(kinds[0]!))
      fail(
        `${f}.${kinds[0]}`,
        `is not supported on a cell (supported: ${SUPPORTED_VOLUME_KINDS.join(', ')})`,
      );
    if (v.hostPath && !v.hostPath.path?.startsWith('/'))
      fail(`${f}.hostPath.path`, 'must be an absolute path');
    if (v.emptyDir?.sizeLimit !== undefined) {
      try {
        parseQuantity(v.emptyDir.sizeLimit);
      } catch {
        fail(`${f}.emptyDir.sizeLimit`, 'is not a quantity');
      }
    }
  });
  for (const [name, vf] of Object.entries(req.volumes ?? {})) {
    if (!volumeNames.has(name)) fail(`volumes.${name}`, 'names no volume of the pod');
    for (const rel of Object.keys(vf.files))
      if (!safeRelative(rel) || rel === '')
        fail(`volumes.${name}.files.${rel}`, 'must be a relative path inside the volume');
  }
  const names = new Set<string>();
  const check = (list: typeof spec.containers, key: 'containers' | 'initContainers') =>
    list.forEach((c, i) => {
      const f = `pod.spec.${key}[${i}]`;
      if (names.has(c.name)) fail(`${f}.name`, `duplicates container name "${c.name}"`);
      names.add(c.name);
      (c.env ?? []).forEach((e, j) => {
        const ef = `${f}.env[${j}]`;
        const from = e.valueFrom;
        if (from && e.value !== undefined) fail(`${ef}.valueFrom`, 'may not be set together with value');
        if (from) {
          const kinds = Object.keys(from);
          if (kinds.length !== 1 || !['fieldRef', 'resourceFieldRef'].includes(kinds[0]!))
            fail(
              `${ef}.valueFrom.${kinds[0] ?? ''}`,
              'must be resolved into value by the provider (only fieldRef and resourceFieldRef are resolved on the cell)',
            );
          if (from.fieldRef && !FIELD_PATHS.test(from.fieldRef.fieldPath))
            fail(
              `${ef}.valueFrom.fieldRef.fieldPath`,
              `"${from.fieldRef.fieldPath}" is not a supported field path`,
            );
          if (
            from.resourceFieldRef &&
            !/^(limits|requests)\.(cpu|memory|ephemeral-storage)$/.test(from.resourceFieldRef.resource)
          )
            fail(
              `${ef}.valueFrom.resourceFieldRef.resource`,
              `"${from.resourceFieldRef.resource}" is not supported`,
            );
        }
      });
      if (c.envFrom && c.envFrom.length > 0)
        fail(`${f}.envFrom`, 'must be resolved into env by the provider');
      for (const kind of ['limits', 'requests'] as const) {
        for (const [r, q] of Object.entries(c.resources?.[kind] ?? {})) {
          try {
            parseQuantity(q);
          } catch {
            fail(`${f}.resources.${kind}.${r}`, `"${q}" is not a quantity`);
          }
        }
      }
      (c.volumeMounts ?? []).forEach((m, j) => {
        if (!volumeNames.has(m.name))
          fail(`${f}.volumeMounts[${j}].name`, `names no volume of the pod ("${m.name}")`);
        if (m.subPath && !safeRelative(m.subPath))
          fail(`${f}.volumeMounts[${j}].subPath`, 'must be a relative path without ".."');
      });
      for (const p of ['livenessProbe', 'readinessProbe', 'startupProbe'] as const) {
        const pr = c[p];
        if (!pr) continue;
        const handlers = (['exec', 'httpGet', 'tcpSocket', 'grpc'] as const).filter(
          (h) => pr[h] !== undefined,
        );
        if (handlers.length !== 1) fail(`${f}.${p}`, 'must set exactly one of exec, httpGet, tcpSocket');
        if (handlers[0] === 'grpc') fail(`${f}.${p}.grpc`, 'is not supported on a cell');
        if (key === 'initContainers' && p !== 'startupProbe')
          fail(`${f}.${p}`, 'may not be set on an init container');
      }
      for (const h of ['postStart', 'preStop'] as const) {
        const hook = c.lifecycle?.[h];
        if (!hook) continue;
        const kinds = (['exec', 'httpGet', 'tcpSocket', 'sleep'] as const).filter(
          (k) => hook[k] !== undefined,
        );
        if (kinds.length !== 1)
          fail(`${f}.lifecycle.${h}`, 'must set exactly one of exec, httpGet, tcpSocket, sleep');
      }
      // stdin is a pipe the agent holds for attach; a terminal there is not.
      if (c.tty) fail(`${f}.tty`, 'is not supported on a cell');
    });
  check(spec.containers, 'containers');
  check(spec.initContainers ?? [], 'initContainers');
  if ((spec.ephemeralContainers ?? []).length > 0)
    fail('pod.spec.ephemeralContainers', 'are not supported on a cell');
  if (spec.hostNetwork)
    fail('pod.spec.hostNetwork', "is not supported: the pod already owns the cell's network");
  if (spec.shareProcessNamespace) fail('pod.spec.shareProcessNamespace', 'is not supported on a cell');
  return req;
}
