import { createServer, type AddressInfo } from 'node:net';

/** A port that was free on `host` a moment ago, for servers that cannot report a port-0 choice. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, host, resolve);
  });
  const { port } = srv.address() as AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Whether `host:port` can be listened on now. */
export async function portFree(host: string, port: number): Promise<boolean> {
  const srv = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, host, resolve);
    });
    await new Promise((r) => srv.close(r));
    return true;
  } catch {
    return false;
  }
}
