import { loadConfigFile } from '../../lib/config-file.ts';
import { faultSchema, type Fault } from './faults.ts';

/** The check errors Service Control reports for a consumer that may not be billed. */
export const CHECK_ERROR_CODES = [
  'BILLING_DISABLED',
  'SERVICE_NOT_ACTIVATED',
  'PROJECT_DELETED',
  'PROJECT_INVALID',
  'CONSUMER_INVALID',
] as const;
export type CheckErrorCode = (typeof CHECK_ERROR_CODES)[number];

/** The emulator's optional YAML config (`--config`). */
export interface EmulatorConfig {
  /** When set, only these service names exist; others answer 404 like an unknown service. */
  services?: string[];
  /** Consumers whose check fails, e.g. `{"project:acme": "BILLING_DISABLED"}`. */
  consumers?: Record<string, CheckErrorCode>;
  /** Faults armed at start (same shape as `PUT /admin/faults`). */
  faults?: Fault[];
}

export const emulatorConfigSchema = {
  type: 'object',
  additionalProperties: false,
  properties: {
    services: { type: 'array', items: { type: 'string', minLength: 1 } },
    consumers: {
      type: 'object',
      additionalProperties: { type: 'string', enum: [...CHECK_ERROR_CODES] },
    },
    faults: { type: 'array', items: faultSchema },
  },
} as const;

export function loadEmulatorConfig(path: string | undefined): EmulatorConfig {
  if (!path) return {};
  return loadConfigFile<EmulatorConfig>(path, emulatorConfigSchema);
}
