/**
 * Splits a `host:port` listen address at its last colon, so an IPv6 host keeps its own colons
 * (brackets, as in `[::1]:8080`, are dropped); an empty host becomes `defaultHost` (every
 * interface unless the caller says otherwise).
 */
export function splitHostPort(listen: string, defaultHost = '0.0.0.0'): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host: host || defaultHost, port: Number(listen.slice(i + 1)) };
}
