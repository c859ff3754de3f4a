import { loadConfigFile, validateConfig } from '../../lib/config-file.ts';

/** A zone and machine family (optionally one provisioning model) that has no capacity. */
export interface Stockout {
  zone: string;
  /** Machine family such as `n2`, `e2`, `a2`; `*` for every family. */
  family: string;
  /** Only this provisioning model runs out; both when absent. */
  provisioningModel?: 'STANDARD' | 'SPOT';
}

/** Which injected error a failing call gets. */
export type FaultKind = 'rateLimitExceeded' | '429' | '503';

export interface Faults {
  /** Fraction (0..1) of Compute API calls that fail before they take effect. */
  errorRate: number;
  /** The errors drawn at random for failing calls. */
  errorKinds: FaultKind[];
  /** Fraction (0..1) of mutating calls that take effect but answer 503 (a lost response). */
  lostResponseRate: number;
  /** Only these API methods (`compute.instances.insert`) are subject to errorRate/lostResponseRate; all when empty. */
  methods: string[];
  stockouts: Stockout[];
  /** Extra time between STAGING and RUNNING, on top of delays.stagingMs. */
  bootDelayMs: number;
  /** Attach google.rpc.ErrorInfo (reason RATE_LIMIT_EXCEEDED) to rate-limit errors, as Google does; slow to decode client-side. */
  rateLimitErrorInfo: boolean;
}

export interface Delays {
  /** An operation stays PENDING this long before RUNNING. */
  operationPendingMs: number;
  /** Instance PROVISIONING → STAGING; the insert operation is DONE at STAGING. */
  provisioningMs: number;
  /** Instance STAGING → RUNNING (the cell boots at RUNNING). */
  stagingMs: number;
  /** Instance STOPPING → gone. */
  deleteMs: number;
  /** Disks, snapshots, firewalls, labels and metadata operations. */
  otherMs: number;
  /** How long operations.wait blocks at most before returning a not-yet-DONE operation. */
  waitMaxMs: number;
}

export interface Quotas {
  /** Regional limits by metric (CPUS, N2_CPUS, INSTANCES, NVIDIA_T4_GPUS, ...); unknown metrics are unlimited. */
  limits: Record<string, number>;
  /** Read calls allowed per window (get, list, operations); 0 = unlimited. */
  readRequestsPerMinute: number;
  /** Mutating calls allowed per window; 0 = unlimited. */
  writeRequestsPerMinute: number;
  /** The refill interval; GCE uses synchronized 60 s windows. Shorter only for tests. */
  windowMs: number;
}

export interface ImageSpec {
  project: string;
  name: string;
  family?: string;
  diskSizeGb: number;
}

export interface HypervisorConfig {
  /**
   * Test hook: a command run inside the cell's namespace instead of the cell agent, with `{ip}`,
   * `{name}`, `{dataDir}` and `{zone}` substituted.
   */
  bootCommand: string[];
  /** The cell agent entry point, relative to the repository root. */
  agentEntry: string;
  /** SIGTERM grace before SIGKILL when a cell stops. */
  stopGraceMs: number;
}

export interface EmulatorConfig {
  project: string;
  region: string;
  zones: string[];
  images: ImageSpec[];
  delays: Delays;
  quotas: Quotas;
  faults: Faults;
  hypervisor: HypervisorConfig;
}

export const DEFAULT_QUOTA_LIMITS: Record<string, number> = {
  CPUS: 2400,
  N2_CPUS: 2400,
  N2D_CPUS: 2400,
  T2D_CPUS: 2400,
  A2_CPUS: 96,
  G2_CPUS: 96,
  INSTANCES: 10000,
  DISKS_TOTAL_GB: 409600,
  SSD_TOTAL_GB: 204800,
  IN_USE_ADDRESSES: 10000,
  NVIDIA_T4_GPUS: 16,
  NVIDIA_V100_GPUS: 8,
  NVIDIA_P4_GPUS: 8,
  NVIDIA_A100_GPUS: 16,
  NVIDIA_A100_80GB_GPUS: 8,
  NVIDIA_L4_GPUS: 16,
};

const stockoutSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['zone', 'family'],
  properties: {
    zone: { type: 'string', minLength: 1 },
    family: { type: 'string', minLength: 1 },
    provisioningModel: { type: 'string', enum: ['STANDARD', 'SPOT'] },
  },
};

const faultsProps = {
  errorRate: { type: 'number', minimum: 0, maximum: 1, default: 0 },
  errorKinds: {
    type: 'array',
    items: { type: 'string', enum: ['rateLimitExceeded', '429', '503'] },
    minItems: 1,
    default: ['503'],
  },
  lostResponseRate: { type: 'number', minimum: 0, maximum: 1, default: 0 },
  methods: { type: 'array', items: { type: 'string', pattern: '^compute\\.' }, default: [] },
  stockouts: { type: 'array', items: stockoutSchema, default: [] },
  bootDelayMs: { type: 'integer', minimum: 0, default: 0 },
  rateLimitErrorInfo: { type: 'boolean', default: false },
};

const delaysProps = {
  operationPendingMs: { type: 'integer', minimum: 0, default: 20 },
  provisioningMs: { type: 'integer', minimum: 0, default: 100 },
  stagingMs: { type: 'integer', minimum: 0, default: 100 },
  deleteMs: { type: 'integer', minimum: 0, default: 100 },
  otherMs: { type: 'integer', minimum: 0, default: 20 },
  waitMaxMs: { type: 'integer', minimum: 0, default: 120000 },
};

const quotasProps = {
  limits: {
    type: 'object',
    propertyNames: { pattern: '^[A-Z0-9_]+$' },
    additionalProperties: { type: 'number', minimum: 0 },
    default: {},
  },
  readRequestsPerMinute: { type: 'integer', minimum: 0, default: 0 },
  writeRequestsPerMinute: { type: 'integer', minimum: 0, default: 0 },
  windowMs: { type: 'integer', minimum: 100, default: 60000 },
};

const schema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    project: { type: 'string', pattern: '^[a-z][-a-z0-9]{4,28}[a-z0-9]$', default: 'kip-lab' },
    region: { type: 'string', minLength: 1, default: 'us-central1' },
    zones: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      minItems: 1,
      default: ['us-central1-a', 'us-central1-b'],
    },
    images: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['project', 'name'],
        properties: {
          project: { type: 'string', minLength: 1 },
          name: { type: 'string', pattern: '^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$' },
          family: { type: 'string', minLength: 1 },
          diskSizeGb: { type: 'integer', minimum: 1, default: 10 },
        },
      },
      default: [
        { project: 'kip-cells', name: 'kip-cell-v1', family: 'kip-cell', diskSizeGb: 10 },
        {
          project: 'debian-cloud',
          name: 'debian-12-bookworm-v20250610',
          family: 'debian-12',
          diskSizeGb: 10,
        },
      ],
    },
    delays: { type: 'object', additionalProperties: false, properties: delaysProps, default: {} },
    quotas: { type: 'object', additionalProperties: false, properties: quotasProps, default: {} },
    faults: { type: 'object', additionalProperties: false, properties: faultsProps, default: {} },
    hypervisor: {
      type: 'object',
      additionalProperties: false,
      properties: {
        bootCommand: { type: 'array', items: { type: 'string' }, default: [] },
        agentEntry: { type: 'string', minLength: 1, default: 'cell-agent/main.ts' },
        stopGraceMs: { type: 'integer', minimum: 0, default: 3000 },
      },
      default: {},
    },
  },
};

/** A copy of a schema without `default`s, so a partial update never resets fields it leaves out. */
function withoutDefaults(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutDefaults);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .filter(([k]) => k !== 'default')
        .map(([k, v]) => [k, withoutDefaults(v)]),
    );
  }
  return value;
}

const patchSchema = (props: object) => ({
  type: 'object',
  additionalProperties: false,
  properties: withoutDefaults(props),
});
/** The schema of `PATCH /admin/faults`: any subset of the `faults` section. */
export const faultsPatchSchema = patchSchema(faultsProps);
/** The schema of `PATCH /admin/quotas`. */
export const quotasPatchSchema = patchSchema(quotasProps);
/** The schema of `PATCH /admin/delays`. */
export const delaysPatchSchema = patchSchema(delaysProps);

function finish(cfg: EmulatorConfig): EmulatorConfig {
  cfg.quotas.limits = { ...DEFAULT_QUOTA_LIMITS, ...cfg.quotas.limits };
  return cfg;
}

/** Loads and validates the emulator's YAML config file; every field has a lab default. */
export function loadEmulatorConfig(path: string | undefined): EmulatorConfig {
  const cfg = path
    ? loadConfigFile<EmulatorConfig>(path, schema)
    : validateConfig<EmulatorConfig>({}, schema);
  return finish(cfg);
}
