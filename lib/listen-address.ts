/**
 * Splits a `host:port` listen address at its last colon, so an IPv6 host keeps its own colons; an
 * empty host listens on every interface (`0.0.0.0`).
 */
export function splitHostPort(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  return { host: listen.slice(0, i) || '0.0.0.0', port: Number(listen.slice(i + 1)) };
}
