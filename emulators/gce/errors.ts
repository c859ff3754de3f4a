/** An API error the emulator answers with, in Compute Engine's JSON error shape. */
export class GceError extends Error {
  constructor(
    readonly httpStatus: number,
    readonly reason: string,
    message: string,
    readonly extra: { domain?: string; status?: string; details?: unknown[] } = {},
  ) {
    super(message);
    this.name = 'GceError';
  }

  /** The response body: `{error: {code, message, errors: [{message, domain, reason}]}}`. */
  body(): Record<string, unknown> {
    const error: Record<string, unknown> = {
      code: this.httpStatus,
      message: this.message,
      errors: [{ message: this.message, domain: this.extra.domain ?? 'global', reason: this.reason }],
    };
    if (this.extra.status) error.status = this.extra.status;
    if (this.extra.details) error.details = this.extra.details;
    return { error };
  }
}

export const notFound = (resource: string) =>
  new GceError(404, 'notFound', `The resource '${resource}' was not found`);

export const alreadyExists = (resource: string) =>
  new GceError(409, 'alreadyExists', `The resource '${resource}' already exists`);

/** GCE's wording for a bad field: `Invalid value for field 'resource.x': 'v'. Why.` */
export const invalidField = (field: string, value: unknown, why: string) =>
  new GceError(400, 'invalid', `Invalid value for field '${field}': '${String(value)}'. ${why}`);

export const required = (field: string) =>
  new GceError(400, 'required', `Required field '${field}' not specified`);

export const conditionNotMet = (message: string) => new GceError(412, 'conditionNotMet', message);

export const resourceInUse = (message: string) =>
  new GceError(400, 'resourceInUseByAnotherResource', message);

export const parseError = (why: string) =>
  new GceError(400, 'parseError', `Invalid JSON payload received. ${why}`, { status: 'INVALID_ARGUMENT' });

/**
 * 403 (or 429) rateLimitExceeded; with `errorInfo`, also the ErrorInfo detail Google's front end
 * attaches (the client then sets `reason: RATE_LIMIT_EXCEEDED`, but decoding it costs the client
 * one to three seconds of CPU per error, so it is off unless asked for).
 */
export function rateLimited(
  httpStatus: 403 | 429,
  metric: string,
  limit: string,
  project: string,
  errorInfo = false,
): GceError {
  const message = `Quota exceeded for quota metric '${metric}' and limit '${limit}' of service 'compute.googleapis.com' for consumer 'project_number:${project}'.`;
  return new GceError(httpStatus, 'rateLimitExceeded', message, {
    domain: 'usageLimits',
    status: httpStatus === 429 ? 'RESOURCE_EXHAUSTED' : 'PERMISSION_DENIED',
    details: !errorInfo
      ? undefined
      : [
          {
            '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
            reason: 'RATE_LIMIT_EXCEEDED',
            domain: 'googleapis.com',
            metadata: { service: 'compute.googleapis.com', quota_metric: metric, quota_limit: limit },
          },
        ],
  });
}

export const backendError = () =>
  new GceError(503, 'backendError', 'Internal error. Please try again or contact Google Support.', {
    status: 'UNAVAILABLE',
  });

/** An error carried inside a DONE operation (`operation.error.errors[]`), not as an HTTP status. */
export class OperationFailure extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** What the operation reports as httpErrorStatusCode. */
    readonly httpStatus: number,
    readonly errorDetails?: unknown[],
  ) {
    super(message);
    this.name = 'OperationFailure';
  }
}
