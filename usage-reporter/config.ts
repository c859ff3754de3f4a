import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { ConfigError, validateConfig } from '../lib/config-file.ts';

/** A Google service account key, as downloaded (the fields the JWT client needs). */
export interface ServiceAccountKey {
  client_email: string;
  private_key: string;
  [k: string]: unknown;
}

export interface GcpIdentity {
  /** base64 of the service account JSON key (the reporting secret's `reporting-key`). */
  encodedServiceAccountKey?: string;
  /** The service account JSON key itself, as a string or a mapping. */
  serviceAccountKey?: string | Record<string, unknown>;
}

export interface IdentityConfig {
  name: string;
  gcp: GcpIdentity;
}

export type MetricType = 'int' | 'double';

export interface MetricConfig {
  name: string;
  type: MetricType;
  endpoints: Array<{ name: string }>;
  aggregation?: { bufferSeconds: number };
  passthrough?: Record<string, never>;
}

export interface ServiceControlEndpointConfig {
  identity: string;
  serviceName: string;
  consumerId: string;
  /** Kip's addition: send to this Service Control root URL (an emulator) without fetching tokens. */
  rootUrl?: string;
}

export interface DiskEndpointConfig {
  reportDir: string;
  expireSeconds: number;
}

export interface EndpointConfig {
  name: string;
  servicecontrol?: ServiceControlEndpointConfig;
  disk?: DiskEndpointConfig;
}

export interface ConfigValue {
  int64Value?: number | string;
  doubleValue?: number;
}

export interface HeartbeatConfig {
  metric: string;
  intervalSeconds: number;
  value: ConfigValue;
  labels?: Record<string, string>;
}

export interface SourceConfig {
  name: string;
  heartbeat: HeartbeatConfig;
}

export interface AddLabelsConfig {
  labels: Record<string, string>;
  omitEmpty?: boolean;
}

export interface FilterConfig {
  addLabels: AddLabelsConfig;
}

/** ubbagent's config file, plus `servicecontrol.rootUrl`. */
export interface AgentConfig {
  identities: IdentityConfig[];
  metrics: MetricConfig[];
  endpoints: EndpointConfig[];
  sources: SourceConfig[];
  filters: FilterConfig[];
}

// Names become state file names, so they are kept to safe characters.
const NAME = { type: 'string', pattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]*$', maxLength: 200 } as const;
const LABELS = { type: 'object', additionalProperties: { type: 'string' } } as const;
const VALUE = {
  type: 'object',
  additionalProperties: false,
  properties: {
    int64Value: { type: ['integer', 'string'] },
    doubleValue: { type: 'number' },
  },
} as const;

const schema = {
  type: 'object',
  additionalProperties: false,
  required: ['metrics', 'endpoints'],
  properties: {
    identities: {
      type: 'array',
      default: [],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'gcp'],
        properties: {
          name: { type: 'string', minLength: 1 },
          gcp: {
            type: 'object',
            additionalProperties: false,
            properties: {
              encodedServiceAccountKey: { type: 'string', minLength: 1 },
              serviceAccountKey: { type: ['string', 'object'] },
            },
          },
        },
      },
    },
    metrics: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'type', 'endpoints'],
        properties: {
          name: NAME,
          type: { type: 'string', enum: ['int', 'double'] },
          endpoints: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['name'],
              properties: { name: { type: 'string' } },
            },
          },
          aggregation: {
            type: 'object',
            additionalProperties: false,
            required: ['bufferSeconds'],
            properties: { bufferSeconds: { type: 'number', exclusiveMinimum: 0 } },
          },
          passthrough: { type: 'object', additionalProperties: false },
        },
      },
    },
    endpoints: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: {
          name: NAME,
          servicecontrol: {
            type: 'object',
            additionalProperties: false,
            required: ['identity', 'serviceName', 'consumerId'],
            properties: {
              identity: { type: 'string', minLength: 1 },
              serviceName: { type: 'string', minLength: 1 },
              consumerId: { type: 'string' },
              rootUrl: { type: 'string', pattern: '^https?://' },
            },
          },
          disk: {
            type: 'object',
            additionalProperties: false,
            required: ['reportDir', 'expireSeconds'],
            properties: {
              reportDir: { type: 'string', minLength: 1 },
              expireSeconds: { type: 'integer', minimum: 0 },
            },
          },
          pubsub: { type: 'object' },
        },
      },
    },
    sources: {
      type: 'array',
      default: [],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'heartbeat'],
        properties: {
          name: { type: 'string', minLength: 1 },
          heartbeat: {
            type: 'object',
            additionalProperties: false,
            required: ['metric', 'intervalSeconds', 'value'],
            properties: {
              metric: { type: 'string' },
              intervalSeconds: { type: 'number', exclusiveMinimum: 0 },
              value: VALUE,
              labels: LABELS,
            },
          },
        },
      },
    },
    filters: {
      type: 'array',
      default: [],
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['addLabels'],
        properties: {
          addLabels: {
            type: 'object',
            additionalProperties: false,
            required: ['labels'],
            properties: { labels: LABELS, omitEmpty: { type: 'boolean' } },
          },
        },
      },
    },
  },
} as const;

/**
 * Replaces `$VAR` and `${VAR}` with the environment's values, as ubbagent's start script does with
 * envsubst. An unset variable is an error rather than an empty string, so a missing secret is
 * named at start instead of surfacing as a malformed field.
 */
export function substituteEnv(text: string, env: NodeJS.ProcessEnv, source: string): string {
  return text.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_m, braced, bare) => {
    const name = (braced ?? bare) as string;
    const value = env[name];
    if (value === undefined)
      throw new ConfigError(`${source}: environment variable ${name} is not set`, name);
    return value;
  });
}

/** Decodes and checks an identity's key; throws ConfigError naming `field`. */
export function decodeServiceAccountKey(gcp: GcpIdentity, field: string, source: string): ServiceAccountKey {
  let key: unknown;
  try {
    if (gcp.encodedServiceAccountKey !== undefined) {
      const json = Buffer.from(gcp.encodedServiceAccountKey, 'base64').toString('utf8');
      key = JSON.parse(json);
    } else if (typeof gcp.serviceAccountKey === 'string') {
      key = JSON.parse(gcp.serviceAccountKey);
    } else {
      key = gcp.serviceAccountKey;
    }
  } catch {
    const f = gcp.encodedServiceAccountKey !== undefined ? 'encodedServiceAccountKey' : 'serviceAccountKey';
    throw new ConfigError(
      `${source}: field "${field}.${f}" is not ${f === 'encodedServiceAccountKey' ? 'base64 of ' : ''}a JSON service account key`,
      `${field}.${f}`,
    );
  }
  const k = key as Partial<ServiceAccountKey> | null;
  if (!k || typeof k.client_email !== 'string' || typeof k.private_key !== 'string') {
    throw new ConfigError(
      `${source}: field "${field}" key lacks client_email or private_key (is it a service account key?)`,
      field,
    );
  }
  return k as ServiceAccountKey;
}

/** Checks what a schema cannot: references between sections, uniqueness, one-of choices. */
function crossCheck(cfg: AgentConfig, source: string): void {
  const fail = (field: string, detail: string): never => {
    throw new ConfigError(`${source}: field "${field}" ${detail}`, field);
  };
  // Names must be unique within each section: references and state files go by name.
  for (const section of ['identities', 'metrics', 'endpoints'] as const) {
    const seen = new Set<string>();
    cfg[section].forEach(({ name: n }, i) => {
      if (seen.has(n)) fail(`${section}[${i}].name`, `"${n}" is defined twice`);
      seen.add(n);
    });
  }
  const identities = new Map(cfg.identities.map((i) => [i.name, i]));
  cfg.identities.forEach((id, i) => {
    const n =
      Number(id.gcp.encodedServiceAccountKey !== undefined) + Number(id.gcp.serviceAccountKey !== undefined);
    if (n !== 1)
      fail(`identities[${i}].gcp`, 'needs exactly one of encodedServiceAccountKey or serviceAccountKey');
  });
  cfg.endpoints.forEach((ep, i) => {
    const kinds = ['servicecontrol', 'disk', 'pubsub'].filter((k) => k in ep);
    if (kinds.length !== 1) fail(`endpoints[${i}]`, 'needs exactly one of servicecontrol or disk');
    if (kinds[0] === 'pubsub')
      fail(`endpoints[${i}].pubsub`, 'is not supported (use servicecontrol or disk)');
    const sc = ep.servicecontrol;
    if (sc) {
      const id = identities.get(sc.identity);
      if (!id) fail(`endpoints[${i}].servicecontrol.identity`, `names no identity "${sc.identity}"`);
      if (!/^(project|project_number|apiKey):\S+$/.test(sc.consumerId)) {
        fail(
          `endpoints[${i}].servicecontrol.consumerId`,
          'must start with project:, project_number: or apiKey:',
        );
      }
      // With rootUrl no token is fetched, so a placeholder key is fine.
      if (!sc.rootUrl)
        decodeServiceAccountKey(id!.gcp, `identities[${cfg.identities.indexOf(id!)}].gcp`, source);
    }
  });
  const endpoints = new Set(cfg.endpoints.map((e) => e.name));
  const metrics = new Map(cfg.metrics.map((m) => [m.name, m]));
  cfg.metrics.forEach((m, i) => {
    if ((m.aggregation === undefined) === (m.passthrough === undefined)) {
      fail(`metrics[${i}]`, 'needs exactly one of aggregation or passthrough');
    }
    const seen = new Set<string>();
    m.endpoints.forEach((e, j) => {
      if (!endpoints.has(e.name)) fail(`metrics[${i}].endpoints[${j}].name`, `names no endpoint "${e.name}"`);
      if (seen.has(e.name)) fail(`metrics[${i}].endpoints[${j}].name`, `"${e.name}" is listed twice`);
      seen.add(e.name);
    });
  });
  cfg.sources.forEach((s, i) => {
    const hb = s.heartbeat;
    const m = metrics.get(hb.metric);
    if (!m) fail(`sources[${i}].heartbeat.metric`, `names no metric "${hb.metric}"`);
    const want = m!.type === 'int' ? 'int64Value' : 'doubleValue';
    const keys = Object.keys(hb.value);
    if (keys.length !== 1 || keys[0] !== want) {
      fail(`sources[${i}].heartbeat.value`, `must be {${want}: ...} for ${m!.type} metric "${m!.name}"`);
    }
    if (want === 'int64Value' && !/^\d+$/.test(String(hb.value.int64Value))) {
      fail(`sources[${i}].heartbeat.value.int64Value`, 'must be a non-negative integer');
    }
    if (want === 'doubleValue' && hb.value.doubleValue! < 0) {
      fail(`sources[${i}].heartbeat.value.doubleValue`, 'must not be negative');
    }
  });
}

/** Parses and validates config text (after environment substitution); throws one-line ConfigErrors. */
export function parseAgentConfig(
  text: string,
  source = 'config',
  env: NodeJS.ProcessEnv = process.env,
): AgentConfig {
  const substituted = substituteEnv(text, env, source);
  let doc: unknown;
  try {
    doc = parseYaml(substituted) ?? {};
  } catch (e) {
    throw new ConfigError(`${source}: not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const cfg = validateConfig<AgentConfig>(doc, schema, source);
  crossCheck(cfg, source);
  return cfg;
}

/** Reads the agent config file (`--config` / AGENT_CONFIG_FILE). */
export function loadAgentConfig(path: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`config ${path}: cannot read: ${(e as Error).message}`);
  }
  return parseAgentConfig(text, `config ${path}`, env);
}
