import { ConfigError, loadConfigFile, validateConfig } from '../lib/config-file.ts';

/** A node taint, as on a v1 Node. */
export interface TaintConfig {
  key: string;
  value?: string;
  effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
}

/** Warm cells kept booted for a machine shape so a pod of that shape starts without waiting for a VM. */
export interface StandbyConfig {
  machineType: string;
  count: number;
  spot?: boolean;
}

/** The provider's configuration file. Every field is documented in docs/provider-config.md. */
export interface ProviderConfig {
  nodeName: string;
  clusterId?: string;
  kubeconfig?: string;
  node: {
    capacity: Record<string, string>;
    labels: Record<string, string>;
    taints: TaintConfig[];
    internalIP?: string;
  };
  cloud: {
    project: string;
    region: string;
    zones: string[];
    network: string;
    subnetwork?: string;
    privateIpOnly: boolean;
    cellServiceAccount?: string;
    networkTags: string[];
    endpoint?: { host: string; port: number; protocol: 'http' | 'https' };
    readRequestsPerMinute: number;
    writeRequestsPerMinute: number;
    listIntervalSeconds: number;
  };
  cells: {
    imageProject: string;
    imageFamily: string;
    defaultMachineType: string;
    diskSizeGb: number;
    agentPort: number;
    agentImage?: string;
    insecureRegistries: string[];
    standby: StandbyConfig[];
    finishedLogBytes: number;
    finishedLogBudgetBytes: number;
  };
  etcd: {
    endpoints: string[];
    prefix: string;
  };
  kubeletApi: {
    listen: string;
    tls?: { certFile?: string; keyFile?: string; clientCAFile?: string };
    authentication: 'webhook' | 'none';
  };
  metrics: { listen: string };
  usageReporter: { url?: string; intervalSeconds: number };
  imageCache: { nfsServer?: string; nfsPath?: string; mountPath: string };
  volumes: { tokenRefreshFraction: number; tokenMaxAgeSeconds: number; configRefreshSeconds: number };
}

const stringMap = { type: 'object', additionalProperties: { type: 'string' }, default: {} } as const;
const hostPort = { type: 'string', pattern: '^[^:\\s]*:\\d{1,5}$' } as const;
const k8sName = { type: 'string', pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$', maxLength: 253 } as const;

/** JSON schema of the provider config; defaults here are the lab's. */
export const providerConfigSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['cloud'],
  properties: {
    nodeName: { ...k8sName, default: 'kip' },
    clusterId: { type: 'string', pattern: '^[a-z]([-a-z0-9]{0,30}[a-z0-9])?$' },
    kubeconfig: { type: 'string' },
    node: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        capacity: {
          ...stringMap,
          default: {
            cpu: '1000',
            memory: '4Ti',
            pods: '1000',
            'nvidia.com/gpu': '0',
            'ephemeral-storage': '10Ti',
          },
        },
        labels: stringMap,
        taints: {
          type: 'array',
          default: [{ key: 'virtual-kubelet.io/provider', value: 'kip', effect: 'NoSchedule' }],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['key', 'effect'],
            properties: {
              key: { type: 'string', minLength: 1 },
              value: { type: 'string' },
              effect: { enum: ['NoSchedule', 'PreferNoSchedule', 'NoExecute'] },
            },
          },
        },
        internalIP: { type: 'string' },
      },
    },
    cloud: {
      type: 'object',
      additionalProperties: false,
      required: ['project'],
      properties: {
        project: { type: 'string', pattern: '^[a-z][-a-z0-9]{4,28}[a-z0-9]$' },
        region: { type: 'string', default: 'us-central1' },
        zones: {
          type: 'array',
          items: { type: 'string' },
          minItems: 1,
          default: ['us-central1-a', 'us-central1-b'],
        },
        network: { type: 'string', default: 'default' },
        subnetwork: { type: 'string' },
        privateIpOnly: { type: 'boolean', default: true },
        cellServiceAccount: { type: 'string' },
        networkTags: { type: 'array', items: { type: 'string' }, default: ['kip-cell'] },
        endpoint: {
          type: 'object',
          additionalProperties: false,
          required: ['host', 'port'],
          properties: {
            host: { type: 'string', minLength: 1 },
            port: { type: 'integer', minimum: 1, maximum: 65535 },
            protocol: { enum: ['http', 'https'], default: 'http' },
          },
        },
        readRequestsPerMinute: { type: 'integer', minimum: 1, default: 1500 },
        writeRequestsPerMinute: { type: 'integer', minimum: 1, default: 1500 },
        listIntervalSeconds: { type: 'number', minimum: 0.1, default: 5 },
      },
    },
    cells: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        imageProject: { type: 'string', default: 'kip-cells' },
        imageFamily: { type: 'string', default: 'kip-cell' },
        defaultMachineType: { type: 'string', default: 'e2-small' },
        diskSizeGb: { type: 'integer', minimum: 10, maximum: 65536, default: 10 },
        agentPort: { type: 'integer', minimum: 1, maximum: 65535, default: 6421 },
        agentImage: { type: 'string' },
        insecureRegistries: { type: 'array', items: hostPort, default: [] },
        standby: {
          type: 'array',
          default: [],
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['machineType', 'count'],
            properties: {
              machineType: { type: 'string', minLength: 1 },
              count: { type: 'integer', minimum: 0, maximum: 1000 },
              spot: { type: 'boolean', default: false },
            },
          },
        },
        finishedLogBytes: { type: 'integer', minimum: 0, maximum: 1073741824, default: 1048576 },
        finishedLogBudgetBytes: { type: 'integer', minimum: 0, default: 268435456 },
      },
    },
    etcd: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        endpoints: {
          type: 'array',
          items: { type: 'string', pattern: '^https?://' },
          minItems: 1,
          default: ['http://127.0.0.1:2379'],
        },
        prefix: { type: 'string', pattern: '^/.*/$', default: '/kip/' },
      },
    },
    kubeletApi: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        listen: { ...hostPort, default: '0.0.0.0:10250' },
        tls: {
          type: 'object',
          additionalProperties: false,
          properties: {
            certFile: { type: 'string', minLength: 1 },
            keyFile: { type: 'string', minLength: 1 },
            clientCAFile: { type: 'string' },
          },
        },
        authentication: { enum: ['webhook', 'none'], default: 'webhook' },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { listen: { ...hostPort, default: '0.0.0.0:9090' } },
    },
    usageReporter: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        url: { type: 'string', pattern: '^https?://' },
        intervalSeconds: { type: 'number', minimum: 1, default: 60 },
      },
    },
    imageCache: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        nfsServer: { type: 'string' },
        nfsPath: { type: 'string' },
        mountPath: { type: 'string', default: '/var/lib/kip/image-cache' },
      },
    },
    volumes: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        tokenRefreshFraction: { type: 'number', exclusiveMinimum: 0, maximum: 1, default: 0.8 },
        tokenMaxAgeSeconds: { type: 'integer', minimum: 60, default: 86400 },
        configRefreshSeconds: { type: 'number', minimum: 0, default: 60 },
      },
    },
  },
} as const;

/** Validates a parsed provider config (filling defaults); throws ConfigError naming the field. */
export function validateProviderConfig(doc: unknown, source = 'provider config'): ProviderConfig {
  const cfg = validateConfig<ProviderConfig>(doc, providerConfigSchema, source);
  return checkCrossFields(cfg, source);
}

/** Reads and validates the provider's YAML config file. */
export function loadProviderConfig(path: string): ProviderConfig {
  return checkCrossFields(loadConfigFile<ProviderConfig>(path, providerConfigSchema), `config ${path}`);
}

// Rules a JSON schema cannot say simply.
function checkCrossFields(cfg: ProviderConfig, source: string): ProviderConfig {
  const bad = (field: string, msg: string): never => {
    throw new ConfigError(`${source}: field "${field}" ${msg}`, field);
  };
  cfg.cloud.zones.forEach((z, i) => {
    if (!z.startsWith(`${cfg.cloud.region}-`))
      bad(`cloud.zones[${i}]`, `"${z}" is not in region ${cfg.cloud.region}`);
  });
  const tls = cfg.kubeletApi.tls;
  if (tls && Boolean(tls.certFile) !== Boolean(tls.keyFile)) {
    bad(tls.certFile ? 'kubeletApi.tls.keyFile' : 'kubeletApi.tls.certFile', 'must be set with the other');
  }
  if (Boolean(cfg.imageCache.nfsServer) !== Boolean(cfg.imageCache.nfsPath)) {
    bad(
      cfg.imageCache.nfsServer ? 'imageCache.nfsPath' : 'imageCache.nfsServer',
      'must be set with the other',
    );
  }
  return cfg;
}
