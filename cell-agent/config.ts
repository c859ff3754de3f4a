import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { ConfigError, loadConfigFile, validateConfig } from '../lib/config-file.ts';

/** The cell agent's settings, from `--config <file>` (YAML) overridden by flags. See docs/cell-agent.md. */
export interface CellAgentConfig {
  listen: string;
  dataDir: string;
  imageCacheDir?: string;
  insecureRegistries: string[];
  /** PEM CA certificates trusted for registries, in addition to the system's. */
  registryCaPems: string[];
  tls: {
    certFile?: string;
    keyFile?: string;
    clientCaFile?: string;
    certPem?: string;
    keyPem?: string;
    clientCaPem?: string;
  };
  /** The pod's IP; default: the first non-loopback IPv4 address of the agent's network namespace. */
  podIP?: string;
  /** Names the agent's runc containers and cgroups; default derived from dataDir. */
  cellId?: string;
  runc: string;
  restartBackoff: { initialSeconds: number; maxSeconds: number; resetSeconds: number };
  imagePullBackoff: { initialSeconds: number; maxSeconds: number };
  logs: { maxFileBytes: number };
  statsIntervalSeconds: number;
  /** Upper bound of `wait` on the status long-poll. */
  maxStatusWaitSeconds: number;
}

/** TLS material ready for https.createServer. */
export interface TlsMaterial {
  cert: string;
  key: string;
  ca: string;
}

const seconds = { type: 'number', minimum: 0 };
export const configSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    listen: { type: 'string', pattern: '^(\\[[0-9a-fA-F:]+\\]|[^:\\s]+):\\d{1,5}$', default: '0.0.0.0:6421' },
    dataDir: { type: 'string', minLength: 1 },
    imageCacheDir: { type: 'string', minLength: 1 },
    insecureRegistries: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
    registryCaPems: { type: 'array', items: { type: 'string', minLength: 1 }, default: [] },
    tls: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        certFile: { type: 'string' },
        keyFile: { type: 'string' },
        clientCaFile: { type: 'string' },
        certPem: { type: 'string', pattern: 'BEGIN CERTIFICATE' },
        keyPem: { type: 'string', pattern: 'PRIVATE KEY' },
        clientCaPem: { type: 'string', pattern: 'BEGIN CERTIFICATE' },
      },
    },
    podIP: { type: 'string', pattern: '^\\d+\\.\\d+\\.\\d+\\.\\d+$' },
    cellId: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,30}$' },
    runc: { type: 'string', default: 'runc' },
    restartBackoff: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        initialSeconds: { ...seconds, default: 10 },
        maxSeconds: { ...seconds, default: 300 },
        resetSeconds: { ...seconds, default: 600 },
      },
    },
    imagePullBackoff: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { initialSeconds: { ...seconds, default: 10 }, maxSeconds: { ...seconds, default: 300 } },
    },
    logs: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { maxFileBytes: { type: 'integer', minimum: 4096, default: 10 * 1024 * 1024 } },
    },
    statsIntervalSeconds: { type: 'number', minimum: 0.1, default: 10 },
    maxStatusWaitSeconds: { type: 'number', minimum: 0, default: 300 },
  },
};

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * Parses the command line (`argv` without node and script) and the optional config file into a
 * validated config. Throws ConfigError with one readable line on any problem.
 */
export function loadCellAgentConfig(argv: string[]): CellAgentConfig {
  const program = new Command('cell-agent')
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: () => undefined })
    .option('--config <file>', 'YAML config file')
    .option('--listen <host:port>', 'HTTPS listen address')
    .option('--tls-cert <file>', 'server certificate (PEM)')
    .option('--tls-key <file>', 'server private key (PEM)')
    .option('--client-ca <file>', 'CA that signs accepted client certificates (PEM)')
    .option('--data-dir <dir>', 'directory for images, bundles, volumes and logs')
    .option('--image-cache-dir <dir>', 'read-only image cache consulted before registries')
    .option('--insecure-registry <host:port>', 'registry reached over plain HTTP (repeatable)', collect, []);
  try {
    program.parse(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) throw new ConfigError(e.message.replace(/^error: /, ''));
    throw e;
  }
  const o = program.opts<{
    config?: string;
    listen?: string;
    tlsCert?: string;
    tlsKey?: string;
    clientCa?: string;
    dataDir?: string;
    imageCacheDir?: string;
    insecureRegistry: string[];
  }>();
  const file: Record<string, unknown> = o.config
    ? { ...loadConfigFile<Record<string, unknown>>(o.config, configSchema) }
    : {};
  const tls = { ...((file.tls as Record<string, string> | undefined) ?? {}) };
  // A file given by flag replaces whatever the config file said for that item, inline or not.
  for (const [flag, fileKey, pemKey] of [
    [o.tlsCert, 'certFile', 'certPem'],
    [o.tlsKey, 'keyFile', 'keyPem'],
    [o.clientCa, 'clientCaFile', 'clientCaPem'],
  ] as const) {
    if (!flag) continue;
    delete tls[pemKey];
    tls[fileKey] = flag;
  }
  const merged: Record<string, unknown> = { ...file, tls };
  if (o.listen) merged.listen = o.listen;
  if (o.dataDir) merged.dataDir = o.dataDir;
  if (o.imageCacheDir) merged.imageCacheDir = o.imageCacheDir;
  if (o.insecureRegistry.length > 0) merged.insecureRegistries = o.insecureRegistry;
  const cfg = validateConfig<CellAgentConfig>(
    merged,
    configSchema,
    o.config ? `config ${o.config}` : 'config',
  );
  if (!cfg.dataDir) throw new ConfigError('config: --data-dir (or dataDir) is required', 'dataDir');
  for (const [pem, file, flag] of [
    ['certPem', 'certFile', '--tls-cert'],
    ['keyPem', 'keyFile', '--tls-key'],
    ['clientCaPem', 'clientCaFile', '--client-ca'],
  ] as const) {
    if (!cfg.tls[pem] && !cfg.tls[file])
      throw new ConfigError(`config: ${flag} (or tls.${file} / tls.${pem}) is required`, `tls.${file}`);
  }
  cfg.dataDir = resolve(cfg.dataDir);
  return cfg;
}

/** Reads the TLS PEMs, from the inline config or from files. */
export function readTlsMaterial(cfg: CellAgentConfig): TlsMaterial {
  const read = (pem: string | undefined, file: string | undefined, field: string) => {
    if (pem) return pem;
    try {
      return readFileSync(file!, 'utf8');
    } catch (e) {
      throw new ConfigError(
        `config: tls.${field}: cannot read ${file}: ${(e as Error).message}`,
        `tls.${field}`,
      );
    }
  };
  return {
    cert: read(cfg.tls.certPem, cfg.tls.certFile, 'certFile'),
    key: read(cfg.tls.keyPem, cfg.tls.keyFile, 'keyFile'),
    ca: read(cfg.tls.clientCaPem, cfg.tls.clientCaFile, 'clientCaFile'),
  };
}

/** A short stable id for this agent, so several cells on one host never share runc or cgroup names. */
export function cellIdOf(cfg: CellAgentConfig): string {
  return cfg.cellId ?? `c${createHash('sha256').update(cfg.dataDir).digest('hex').slice(0, 10)}`;
}
