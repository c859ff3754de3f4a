/** Why a pull failed, in the words the caller acts on. */
export type ImagePullReason =
  | 'NotFound'
  | 'Unauthorized'
  | 'DigestMismatch'
  | 'Unavailable'
  | 'InvalidReference'
  | 'UnsupportedMediaType';

/**
 * A failed pull. The message is written for `kubectl describe pod`: it names the image, the
 * registry, the HTTP status when there was one, and what to do next.
 */
export class ImagePullError extends Error {
  readonly reason: ImagePullReason;
  /** HTTP status of the registry answer that decided the failure, when there was one. */
  readonly status?: number;
  /** The message without its leading `Failed to pull image "<image>": `, for callers that add their own. */
  readonly detail: string;

  constructor(reason: ImagePullReason, message: string, opts: { status?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ImagePullError';
    this.reason = reason;
    this.status = opts.status;
    this.detail = message.replace(/^Failed to pull image "[^"]*": /, '');
  }
}

/** Whether `err` is an abort caused by the caller's AbortSignal. */
export function isAbort(err: unknown): boolean {
  return (
    err instanceof Error && (err.name === 'AbortError' || (err as { code?: string }).code === 'ABORT_ERR')
  );
}
