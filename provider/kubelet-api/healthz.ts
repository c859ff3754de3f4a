import type { ServerResponse } from 'node:http';

/** GET /healthz: `ok` while the server serves. Needs no credentials, so probes can reach it. */
export function serveHealthz(res: ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end('ok');
}
