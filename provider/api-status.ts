/** HTTP status of a client-node ApiException, if it is one. */
export function apiStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}
