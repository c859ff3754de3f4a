import type { ServiceControlEndpointConfig } from '../config.ts';
import type { StampedReport } from '../report.ts';
import type { Operation, ServiceControlApi } from '../service-control-client.ts';
import { BlockedError, PermanentError, TransientError, type Endpoint } from './endpoint.ts';

/** Check errors after which Service Control must not be sent usage until they clear. */
export const BLOCKING_CHECK_ERRORS = ['BILLING_DISABLED', 'SERVICE_NOT_ACTIVATED', 'PROJECT_DELETED'];

/** google.rpc codes in reportErrors that mean "try again later". */
const TRANSIENT_RPC_CODES = new Set([1, 4, 7, 8, 10, 13, 14]);

export const AGENT_ID_LABEL = 'goog-ubb-agent-id';

export interface ServiceControlEndpointOptions {
  name: string;
  config: ServiceControlEndpointConfig;
  client: ServiceControlApi;
  agentId: string;
  /** How long a check result is reused (and how long a blocked consumer waits); 60 s by default. */
  checkIntervalMs: number;
}

/** The Service Control operation for a report, as ubbagent builds it. */
export function toOperation(
  r: StampedReport,
  cfg: Pick<ServiceControlEndpointConfig, 'serviceName' | 'consumerId'>,
  agentId: string,
): Operation {
  return {
    // The report's id never changes across retries, so the service bills it once.
    operationId: r.id,
    operationName: `${cfg.serviceName}/report`,
    consumerId: cfg.consumerId,
    startTime: r.startTime,
    endTime: r.endTime,
    userLabels: { ...r.labels, [AGENT_ID_LABEL]: agentId },
    metricValueSets: [
      {
        metricName: `${cfg.serviceName}/${r.name}`,
        metricValues: [{ startTime: r.startTime, endTime: r.endTime, ...r.value }],
      },
    ],
  };
}

/** Sends each report as one `services.report` operation, after a `services.check` at most once per interval. */
export class ServiceControlEndpoint implements Endpoint {
  readonly name: string;
  private checkedUntil = 0;
  private blocked: { code: string; until: number } | undefined;

  constructor(private readonly opts: ServiceControlEndpointOptions) {
    this.name = opts.name;
  }

  private async ensureChecked(op: Operation): Promise<void> {
    const now = Date.now();
    if (this.blocked && now < this.blocked.until) {
      throw new BlockedError(
        this.blocked.code,
        `services.check: ${this.blocked.code}`,
        this.blocked.until - now,
      );
    }
    if (now < this.checkedUntil) return;
    const { userLabels: _omit, ...checkOp } = op;
    const res = await this.opts.client.check(this.opts.config.serviceName, checkOp);
    const errors = res.checkErrors ?? [];
    if (errors.length > 0) {
      const codes = errors.map((e) => e.code ?? 'UNKNOWN');
      const stop = codes.find((c) => BLOCKING_CHECK_ERRORS.includes(c));
      if (stop) {
        this.blocked = { code: stop, until: now + this.opts.checkIntervalMs };
        this.checkedUntil = 0;
        throw new BlockedError(stop, `services.check: ${codes.join(', ')}`, this.opts.checkIntervalMs);
      }
      throw new TransientError(`services.check: ${codes.join(', ')}`);
    }
    this.blocked = undefined;
    this.checkedUntil = now + this.opts.checkIntervalMs;
  }

  async send(report: StampedReport): Promise<void> {
    const op = toOperation(report, this.opts.config, this.opts.agentId);
    await this.ensureChecked(op);
    const res = await this.opts.client.report(this.opts.config.serviceName, [op]);
    const errors = res.reportErrors ?? [];
    if (errors.length > 0) {
      const detail = errors
        .map((e) => `${e.status?.code ?? '?'} ${e.status?.message ?? ''}`.trim())
        .join('; ');
      if (errors.every((e) => TRANSIENT_RPC_CODES.has(e.status?.code ?? 13))) {
        // The consumer's state may have changed: check again before the next attempt.
        this.checkedUntil = 0;
        throw new TransientError(`services.report: ${detail}`);
      }
      throw new PermanentError(`services.report rejected the operation: ${detail}`);
    }
  }
}
