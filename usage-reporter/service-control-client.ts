import { servicecontrol, type servicecontrol_v1 } from '@googleapis/servicecontrol';
import { JWT } from 'google-auth-library';
import type { ServiceAccountKey } from './config.ts';
import { PermanentError, TransientError } from './endpoints/endpoint.ts';

export type Operation = servicecontrol_v1.Schema$Operation;
export type CheckResponse = servicecontrol_v1.Schema$CheckResponse;
export type ReportResponse = servicecontrol_v1.Schema$ReportResponse;

/** The two Service Control calls the reporter makes; errors are TransientError or PermanentError. */
export interface ServiceControlApi {
  check(serviceName: string, operation: Operation): Promise<CheckResponse>;
  report(serviceName: string, operations: Operation[]): Promise<ReportResponse>;
}

export interface ServiceControlClientOptions {
  /** An emulator or private endpoint; when set, requests carry no credentials. */
  rootUrl?: string;
  /** Used to sign tokens when `rootUrl` is not set. */
  key?: ServiceAccountKey;
  timeoutMs: number;
  /**
   * The fetch used for token and API requests when authenticating with the key (default: the
   * global fetch). Tests use it to answer Google's endpoints locally; it could route through a proxy.
   */
  fetch?: typeof fetch;
}

export const SERVICE_CONTROL_SCOPE = 'https://www.googleapis.com/auth/servicecontrol';

/**
 * Sorts a failed call: 5xx, 408, 429, auth failures and network errors are retried (auth can be a
 * passing token-endpoint problem and dropping billed usage is worse than waiting); other 4xx are not.
 */
export function classifyError(e: unknown, what: string): Error {
  const err = e as { status?: number; response?: { status?: number }; message?: string; code?: string };
  const status = err.status ?? err.response?.status;
  const msg = `${what}: ${status ? `HTTP ${status}: ` : ''}${err.message ?? String(e)}`;
  if (status === undefined || status >= 500 || [401, 403, 408, 429].includes(status)) {
    return new TransientError(msg);
  }
  return new PermanentError(msg);
}

/** Wraps `@googleapis/servicecontrol` v1 (JWT with the servicecontrol scope, or none with rootUrl). */
export function createServiceControlClient(opts: ServiceControlClientOptions): ServiceControlApi {
  let sc: servicecontrol_v1.Servicecontrol;
  if (opts.rootUrl) {
    sc = servicecontrol({
      version: 'v1',
      rootUrl: opts.rootUrl.endsWith('/') ? opts.rootUrl : `${opts.rootUrl}/`,
    });
  } else {
    if (!opts.key) throw new Error('a service account key is needed when no rootUrl is set');
    const auth = new JWT({
      email: opts.key.client_email,
      key: opts.key.private_key,
      scopes: [SERVICE_CONTROL_SCOPE],
      ...(opts.fetch ? { transporterOptions: { fetchImplementation: opts.fetch } } : {}),
    });
    sc = servicecontrol({ version: 'v1', auth });
  }
  // gaxios does not retry POSTs; the reporter's queue does, with its own backoff.
  const callOpts = { timeout: opts.timeoutMs, retry: false };
  const call = async <T>(what: string, request: () => Promise<{ data: T }>): Promise<T> => {
    try {
      return (await request()).data;
    } catch (e) {
      throw classifyError(e, what);
    }
  };
  return {
    check: (serviceName, operation) =>
      call(`services.check ${serviceName}`, () =>
        sc.services.check({ serviceName, requestBody: { operation } }, callOpts),
      ),
    report: (serviceName, operations) =>
      call(`services.report ${serviceName}`, () =>
        sc.services.report({ serviceName, requestBody: { operations } }, callOpts),
      ),
  };
}
