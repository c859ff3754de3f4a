/**
 * Kubernetes `Status` failure bodies, shaped exactly like the real API server's so that kubectl and
 * client libraries recognise them (NotFound, AlreadyExists, Conflict, Invalid, Expired, ...).
 */

export interface StatusCause {
  reason: string;
  message: string;
  field?: string;
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: StatusCause[];
  retryAfterSeconds?: number;
}

/** A failure the API answers with a `Status` body and the matching HTTP code. */
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: StatusDetails,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The JSON `Status` object the real server sends for this failure. */
  toStatus(): Record<string, unknown> {
    const body: Record<string, unknown> = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
    };
    if (this.details) body.details = this.details;
    else if (this.reason === 'NotFound' || this.reason === 'MethodNotAllowed') body.details = {};
    body.code = this.code;
    return body;
  }
}

/** `<resource>.<group>` as the real server writes it in messages (`pods`, `deployments.apps`). */
function qualifiedResource(plural: string, group: string): string {
  return group ? `${plural}.${group}` : plural;
}

/** The details of an error about one named object: the group only when it has one. */
function objectDetails(kind: string, group: string, name: string): StatusDetails {
  return { name, ...(group ? { group } : {}), kind };
}

export function notFound(plural: string, group: string, name: string): ApiError {
  return new ApiError(
    404,
    'NotFound',
    `${qualifiedResource(plural, group)} "${name}" not found`,
    objectDetails(plural, group, name),
  );
}

export function resourceNotFound(): ApiError {
  return new ApiError(404, 'NotFound', 'the server could not find the requested resource');
}

export function alreadyExists(plural: string, group: string, name: string): ApiError {
  return new ApiError(
    409,
    'AlreadyExists',
    `${qualifiedResource(plural, group)} "${name}" already exists`,
    objectDetails(plural, group, name),
  );
}

export function conflict(plural: string, group: string, name: string, why: string): ApiError {
  return new ApiError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${qualifiedResource(plural, group)} "${name}": ${why}`,
    objectDetails(plural, group, name),
  );
}

export const STALE_OBJECT =
  'the object has been modified; please apply your changes to the latest version and try again';

/** 422 Invalid: `<Kind> "<name>" is invalid: <field>: <problem>`, one cause per bad field. */
export function invalid(kind: string, group: string, name: string, causes: StatusCause[]): ApiError {
  const text = causes.map((c) => `${c.field}: ${c.message}`);
  const joined = text.length === 1 ? text[0]! : `[${text.join(', ')}]`;
  return new ApiError(422, 'Invalid', `${qualifiedResource(kind, group)} "${name}" is invalid: ${joined}`, {
    ...objectDetails(kind, group, name),
    causes,
  });
}

/** A `field.ErrorList` entry: the cause reason strings match the real server's. */
export function fieldError(
  type: 'Required' | 'Invalid' | 'Forbidden' | 'Duplicate' | 'NotSupported',
  field: string,
  detail: string,
  value?: unknown,
): StatusCause {
  const reasons = {
    Required: 'FieldValueRequired',
    Invalid: 'FieldValueInvalid',
    Forbidden: 'FieldValueForbidden',
    Duplicate: 'FieldValueDuplicate',
    NotSupported: 'FieldValueNotSupported',
  } as const;
  const label = {
    Required: 'Required value',
    Invalid: 'Invalid value',
    Forbidden: 'Forbidden',
    Duplicate: 'Duplicate value',
    NotSupported: 'Unsupported value',
  }[type];
  let message = label;
  if (value !== undefined && (type === 'Invalid' || type === 'Duplicate' || type === 'NotSupported')) {
    message += `: ${JSON.stringify(value)}`;
  }
  if (detail) message += `: ${detail}`;
  return { reason: reasons[type], message, field };
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, 'BadRequest', message);
}

export function expired(message: string): ApiError {
  return new ApiError(410, 'Expired', message);
}

export function methodNotAllowed(): ApiError {
  return new ApiError(
    405,
    'MethodNotAllowed',
    'the server does not allow this method on the requested resource',
  );
}

export function unsupportedMediaType(contentType: string): ApiError {
  return new ApiError(
    415,
    'UnsupportedMediaType',
    `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml${contentType ? ` (got ${contentType})` : ''}`,
  );
}

export function forbidden(message: string): ApiError {
  return new ApiError(403, 'Forbidden', message);
}

export function internalError(message: string): ApiError {
  return new ApiError(500, 'InternalError', `Internal error occurred: ${message}`);
}
