import type { protos } from '@google-cloud/compute';

/** What a Compute API failure means for Kip. */
export type FailureKind =
  'notFound' | 'alreadyExists' | 'rateLimited' | 'unavailable' | 'capacity' | 'quota' | 'invalid' | 'other';

export interface Failure {
  kind: FailureKind;
  message: string;
  /** GCE's error code, when the failure came inside an operation (ZONE_RESOURCE_POOL_EXHAUSTED, ...). */
  code?: string;
}

// gRPC codes the REST fallback maps HTTP statuses to.
const NOT_FOUND = 5;
const ALREADY_EXISTS = 6;
const PERMISSION_DENIED = 7;
const RESOURCE_EXHAUSTED = 8;
const ABORTED = 10; // HTTP 409
const INVALID_ARGUMENT = 3;
const UNAVAILABLE = 14;
const DEADLINE_EXCEEDED = 4;
const INTERNAL = 13;

const CAPACITY_CODES = /ZONE_RESOURCE_POOL_EXHAUSTED|STOCKOUT|RESOURCE_POOL_EXHAUSTED/;
const RATE_TEXT = /rate ?limit|RATE_LIMIT_EXCEEDED|Quota exceeded for quota metric/i;

/** Classifies an error thrown by a @google-cloud/compute call (an HTTP error turned GoogleError). */
export function classifyApiError(err: unknown): Failure {
  const e = err as { code?: number | string; message?: string; reason?: string };
  const message = e?.message ?? String(err);
  const code = typeof e?.code === 'number' ? e.code : undefined;
  if (CAPACITY_CODES.test(message)) return { kind: 'capacity', message };
  if (code === NOT_FOUND) return { kind: 'notFound', message };
  if (code === ALREADY_EXISTS || (code === ABORTED && /already exists/i.test(message))) {
    return { kind: 'alreadyExists', message };
  }
  if (code === RESOURCE_EXHAUSTED) return { kind: 'rateLimited', message };
  if (code === PERMISSION_DENIED && (RATE_TEXT.test(message) || e.reason === 'RATE_LIMIT_EXCEEDED')) {
    return { kind: 'rateLimited', message };
  }
  if (/Quota '.*' exceeded|QUOTA_EXCEEDED/.test(message)) return { kind: 'quota', message };
  if (code === UNAVAILABLE || code === DEADLINE_EXCEEDED || code === INTERNAL)
    return { kind: 'unavailable', message };
  // Network-level failures (connection reset, refused) carry string codes: worth a retry too.
  if (typeof e?.code === 'string' && /^E[A-Z]+/.test(e.code)) return { kind: 'unavailable', message };
  if (code === INVALID_ARGUMENT) return { kind: 'invalid', message };
  return { kind: 'other', message };
}

/** Classifies the error inside a DONE operation, or undefined when it succeeded. */
export function classifyOperation(op: protos.google.cloud.compute.v1.IOperation): Failure | undefined {
  const errors = op.error?.errors ?? [];
  if (errors.length === 0) return undefined;
  const first = errors[0]!;
  const code = first.code ?? '';
  const message = errors.map((x) => `${x.code ?? ''}: ${x.message ?? ''}`).join('; ');
  if (CAPACITY_CODES.test(code)) return { kind: 'capacity', message, code };
  if (code === 'QUOTA_EXCEEDED') return { kind: 'quota', message, code };
  if (code === 'RESOURCE_ALREADY_EXISTS') return { kind: 'alreadyExists', message, code };
  if (code === 'RESOURCE_NOT_FOUND') return { kind: 'notFound', message, code };
  if (/RATE_LIMIT/.test(code)) return { kind: 'rateLimited', message, code };
  if (/^INVALID|^BAD_REQUEST|^UNSUPPORTED/.test(code) || Number(op.httpErrorStatusCode) === 400) {
    return { kind: 'invalid', message, code };
  }
  if (code === 'INTERNAL_ERROR' || Number(op.httpErrorStatusCode) >= 500)
    return { kind: 'unavailable', message, code };
  return { kind: 'other', message, code };
}
